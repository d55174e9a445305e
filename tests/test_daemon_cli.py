"""The create/start split and attach for the nsprim command: `nsprim create`,
`start -a [-i]`, `run -dit` + `attach` (the pieces the daemon's API uses)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from .conftest import cli_at, need


def test_create_then_start_attached(private_root: str, images: dict[str, str]) -> None:
    base = images["base"]
    assert cli_at(private_root, "pull", base).returncode == 0
    r = cli_at(private_root, "create", "--name", "c1", base, "sh", "-c",
               "echo out; echo err >&2; exit 6")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64, r.stderr
    rows = [json.loads(line) for line in
            cli_at(private_root, "ps", "-a", "--format", "json").stdout.splitlines()]
    assert [(r["Names"], r["State"]) for r in rows] == [("c1", "created")]
    r = cli_at(private_root, "start", "-a", "c1")
    assert (r.returncode, r.stdout, r.stderr) == (6, "out\n", "err\n")
    assert cli_at(private_root, "rm", "c1").returncode == 0  # not running any more
    r = cli_at(private_root, "create", "-i", "--name", "c2", base, "tr", "a-z", "A-Z")
    assert r.returncode == 0, r.stderr
    r = cli_at(private_root, "start", "-a", "-i", "c2", input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n"), r.stderr
    r = cli_at(private_root, "start", "-a", "nope")
    assert r.returncode == 1 and "No such container: nope" in r.stderr


def test_run_dit_then_attach(private_root: str, images: dict[str, str]) -> None:
    need(shutil.which("script") is not None, "needs script (bsdutils)")
    base = images["base"]
    assert cli_at(private_root, "pull", base).returncode == 0
    r = cli_at(private_root, "run", "-dit", "--name", "t1", base, "sh")
    assert r.returncode == 0, r.stderr
    cmd = f"{sys.executable} -m nsprim --root {private_root} attach t1"
    a = subprocess.run(["script", "-qec", cmd, "/dev/null"], input="echo via-$((6*7))\nexit 9\n",
                       capture_output=True, text=True, timeout=60)
    assert a.returncode == 9, a.stdout + a.stderr
    assert "via-42" in a.stdout
    st = cli_at(private_root, "inspect", "t1").stdout
    assert '"Status": "exited"' in st and '"ExitCode": 9' in st
    r = cli_at(private_root, "attach", "t1")
    assert r.returncode == 1 and "cannot attach to a stopped container" in r.stderr
    assert cli_at(private_root, "rm", "t1").returncode == 0
