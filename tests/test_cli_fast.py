"""The fast path of `nsprim run` (issue 11): a foreground container without
limits skips the v1 accounting cgroups on a hybrid host, and stats, update,
kill and the leak checks still work; generated names do not collide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import cli_at


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _dirs(cid: str) -> dict[str, str]:
    """hierarchy -> this container's cgroup directory that exists now (the
    test process's state root is the session's; the CLI's is private_root,
    so the leaf name is found by the container id)."""
    from nsprim.cgroup import PARENT, host_layout

    lay = host_layout()
    out = {}
    for name, mnt in [("v2", lay.v2), *lay.v1.items()]:
        if not mnt:
            continue
        base = os.path.join(mnt, PARENT)
        try:
            for e in os.scandir(base):
                if e.name.endswith("-" + cid[:16]):
                    out[name] = e.path
        except OSError:
            continue
    return out


def _start_waiting(root: str, rootfs: str, name: str) -> tuple[subprocess.Popen[str], str]:
    """A foreground `run --rm` whose container waits for /tmp/go; its id."""
    p = subprocess.Popen(
        [sys.executable, "-m", "nsprim", "--root", root, "run", "--rm", "--name", name,
         "--network", "none", "--rootfs", rootfs, "sh", "-c",
         "cat /proc/self/cgroup > /tmp/cg; touch /tmp/up; "
         "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(Path(rootfs) / "tmp" / "up")
    cid = cli_at(root, "ps", "-q", "--no-trunc", "--filter", f"name={name}").stdout.strip()
    assert len(cid) == 64, cid
    return p, cid


def test_foreground_run_cgroups_stats_update(private_root: str, fresh_rootfs: str) -> None:
    from nsprim.cgroup import host_layout

    lay = host_layout()
    hybrid = lay.v2 is not None and "memory" in lay.v1
    p, cid = _start_waiting(private_root, fresh_rootfs, "fg")
    try:
        dirs = _dirs(cid)
        if hybrid:  # born in its v2 cgroup; no v1 cgroup joined for accounting
            assert set(dirs) == {"v2"}, dirs
        else:  # pure v2 (or v1): the hierarchy that accounts for it
            assert dirs, "no cgroup for the container"
        # the container sees its own cgroup as the root, as with docker
        lines = (Path(fresh_rootfs) / "tmp" / "cg").read_text().splitlines()
        assert lines and all(line.endswith(":/") for line in lines), lines
        # stats: memory counted from its processes, the pids from its cgroup
        r = cli_at(private_root, "stats", "--no-stream", "--format", "json", "fg")
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout)
        assert row["PIDs"] in ("1", "2"), row  # sh and (nearly always) its sleep
        assert not row["MemUsage"].startswith("0B"), row
        # update: the limit lands in a cgroup the container's processes are in
        r = cli_at(private_root, "update", "--memory", "96m", "--pids-limit", "40", "fg")
        assert (r.returncode, r.stdout) == (0, "fg\n"), r.stderr
        dirs = _dirs(cid)
        mem = dirs.get("memory") or dirs["v2"]
        limit_file = "memory.limit_in_bytes" if "memory" in dirs else "memory.max"
        assert Path(mem, limit_file).read_text().strip() == str(96 << 20)
        pids_dir = dirs.get("pids") or dirs["v2"]
        assert Path(pids_dir, "pids.max").read_text().strip() == "40"
        procs_v2 = set(Path(dirs["v2"], "cgroup.procs").read_text().split()) \
            if "v2" in dirs else set()
        procs_mem = set(Path(mem, "cgroup.procs").read_text().split())
        assert procs_mem and (not procs_v2 or procs_v2 <= procs_mem), (procs_v2, procs_mem)
    finally:
        (Path(fresh_rootfs) / "tmp" / "go").touch()
        out, err = p.communicate(timeout=30)
    assert (p.returncode, out) == (0, "done\n"), err
    # nothing of it is left: record, cgroups (the ones update added too)
    assert _dirs(cid) == {}
    assert cli_at(private_root, "ps", "-a", "-q").stdout == ""


def test_killed_foreground_cli_leaves_nothing(private_root: str, fresh_rootfs: str) -> None:
    """SIGKILL of the CLI: its container dies (die_with_parent) and the next
    command collects its cgroup."""
    p, cid = _start_waiting(private_root, fresh_rootfs, "fk")
    assert _dirs(cid)
    p.kill()
    p.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        cli_at(private_root, "ps")  # collects
        if not _dirs(cid):
            break
        assert time.monotonic() < deadline, _dirs(cid)
        time.sleep(0.1)
    cli_at(private_root, "rm", "-f", "fk")


# ---------------------------------------------------------- generated names

def test_generated_names_unique_among_many() -> None:
    """Names drawn while 2000 are taken never repeat one (docker's
    adjective_surname, a number only on a retry)."""
    from nsprim.lifecycle import generate_name

    taken: set[str] = set()
    for _ in range(2000):
        n = generate_name(taken.__contains__)
        assert n not in taken
        taken.add(n)


@settings(max_examples=50, deadline=None)
@given(st.sets(st.integers(0, 10_000), max_size=200), st.integers(0, 2**32))
def test_generated_name_retries_until_free(taken_idx: set[int], seed: int) -> None:
    """Whatever is in use, the name drawn is free and has docker's shape."""
    import random
    import re

    from nsprim.lifecycle import generate_name

    first = generate_name(lambda n: False, randbelow=random.Random(seed).randrange)
    taken = {first} | {f"{first}{i}" for i in taken_idx}
    name = generate_name(taken.__contains__, randbelow=random.Random(seed).randrange)
    assert name not in taken
    assert re.fullmatch(r"[a-z]+_[a-z]+[0-9]*", name), name


# ------------------------------------------------------- volatile overlays

def _mount_options(path: str) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                return set(fields[-1].split(","))  # the superblock's options
    raise AssertionError(f"{path} is not mounted")


def test_a_thrown_away_layer_is_volatile(root: None, tmp_path: Path) -> None:
    """A layer removed at the end (`run --rm`) is mounted `volatile` (no sync
    of the upper filesystem at unmount); a kept one is not."""
    from nsprim.rootfs import OverlayRootfs

    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "f").write_text("x")
    for keep in (False, True):
        with OverlayRootfs([str(layer)], keep=keep) as ov:
            opts = _mount_options(ov.path)  # "fsync=volatile" on kernels >= 6.6
            assert bool(opts & {"volatile", "fsync=volatile"}) is not keep, opts
            Path(ov.path, "new").write_text("y")
            assert Path(ov.upper, "new").read_text() == "y"
        assert not os.path.ismount(ov.path)
        assert os.path.isdir(ov.dir) is keep
        if keep:
            from nsprim.state import remove_tree

            remove_tree(ov.dir)
