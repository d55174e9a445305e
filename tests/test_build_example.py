"""The README's build walk-through, step by step with the CLI: a Python app
built FROM a base with a real interpreter, run detached with a published
port, a bind mount and a name, asked with a real HTTP client, logged,
stopped, removed, rebuilt as 2.0 with one source file changed (the cache
proven), and run again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import cli_at, need

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed"


@pytest.fixture(scope="session")
def python_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    need(os.geteuid() == 0, "needs root")
    need(os.path.exists("/usr/bin/python3") and shutil.which("ldd") is not None,
         "needs Debian's python3 and ldd")
    sys.path.insert(0, str(SEED))
    try:
        import make_base  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SEED))
    from nsprim.images.build import build

    ctx = make_base.make_context(str(tmp_path_factory.mktemp("pybase")))
    build(ctx, tags=["nsprim-example/python:3"], network="none")
    return "nsprim-example/python:3"


def _get(port: int, path: str) -> dict[str, str]:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_walkthrough(python_base: str, private_root: str, tmp_path: Path) -> None:
    from .registry import free_port

    # the private root gets the base image by save | load (no registry needed)
    arch = tmp_path / "base.tar"
    r = subprocess.run([sys.executable, "-m", "nsprim", "save", "-o", str(arch), python_base],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert cli_at(private_root, "load", "-i", str(arch)).returncode == 0
    app = tmp_path / "myapp"
    shutil.copytree(SEED, app, ignore=shutil.ignore_patterns("__pycache__"))
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()

    def nsprim(*args: str) -> subprocess.CompletedProcess[str]:
        r = cli_at(private_root, *args, timeout=180)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    out = nsprim("build", "-t", "myapp:1.0", str(app)).stdout
    assert "Successfully tagged myapp:1.0" in out and "Running in" in out
    nsprim("run", "-d", "-p", f"{port}:8000", "-v", f"{data}:/app/data", "--name", "myapp",
           "myapp:1.0")
    try:
        assert _get(port, "/hello") == {"app": "myapp", "version": "1.0", "path": "/hello"}
        assert "myapp" in nsprim("ps").stdout
        assert "myapp 1.0 listening on :8000" in nsprim("logs", "myapp").stdout
        assert "/hello" in (data / "hits.log").read_text()   # the bind mount
    finally:
        nsprim("stop", "myapp")
        nsprim("rm", "myapp")
    assert "myapp" not in nsprim("ps", "-a").stdout
    # one source file changed: only COPY . . and what follows it run again
    src = (app / "app.py").read_text()
    (app / "app.py").write_text(src.replace('VERSION = "1.0"', 'VERSION = "2.0"'))
    out = nsprim("build", "-t", "myapp:2.0", str(app)).stdout
    assert out.count(" ---> Using cache") == 3          # WORKDIR, COPY requirements, RUN
    assert "Running in" not in out
    step5 = out[out.index("Step 5/7 : COPY . ."):]
    assert not re.match(r"Step 5/7 : COPY \. \.\n ---> Using cache", step5)
    nsprim("run", "-d", "-p", f"{port}:8000", "--name", "myapp2", "myapp:2.0")
    try:
        assert _get(port, "/")["version"] == "2.0"
    finally:
        nsprim("rm", "-f", "myapp2")
    # the two images share every layer below the changed one
    imgs = {n: json.loads(line) for line in nsprim("images", "--format", "json").stdout
            .splitlines() for n in [json.loads(line)["Tag"]]}
    assert imgs["1.0"]["ID"] != imgs["2.0"]["ID"]
    from nsprim.images.store import ImageStore

    store = ImageStore(os.path.join(private_root, "images"))
    one, two = store.get("myapp:1.0"), store.get("myapp:2.0")
    assert one.diff_ids[:-1] == two.diff_ids[:-1] and one.diff_ids[-1] != two.diff_ids[-1]
