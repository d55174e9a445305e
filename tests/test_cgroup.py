"""Cgroups that hold: enforcement proven with real workloads, on this host's
layout (hybrid here: v1 limit controllers, v2 membership).  The same tests
run in a pure cgroup v2 kernel through tests/vm (see .ci/run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from nsprim import Cgroup, ConfigError, Container, run
from nsprim.cgroup import host_layout, iter_nsprim_cgroups, leaf_name

from .conftest import need


@pytest.fixture
def cg_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = "t-" + request.node.name[:40].replace("[", "-").replace("]", "")
    yield name
    assert not [p for p in iter_nsprim_cgroups() if os.path.basename(p) == leaf_name(name)]


def test_create_applies_limits_and_removes(root: None, cg_name: str) -> None:
    with Cgroup.create(cg_name, memory="64m", memory_swap="64m", pids=64, cpus=0.5,
                       cpu_shares=512) as cg:
        st = cg.stats()
        assert st.memory_limit == 64 << 20
        assert st.pids_limit == 64
        assert cg.procs() == []
        paths = list(iter_nsprim_cgroups())
        assert any(p.endswith("/" + leaf_name(cg_name)) for p in paths)
    assert cg.removed
    cg.remove()  # idempotent
    assert not any(p.endswith("/" + leaf_name(cg_name)) for p in iter_nsprim_cgroups())


def test_cgroup_namespace_root_inside(rootfs: str, cg_name: str) -> None:
    with Cgroup.create(cg_name, pids=100) as cg:
        r = run(["cat", "/proc/self/cgroup"], rootfs=rootfs, cgroup=cg, capture_output=True)
    lines = r.stdout.decode().split()
    assert "0::/" in lines
    assert all(line.endswith(":/") for line in lines), lines


def test_oom_kill_is_reported(rootfs: str) -> None:
    r = run(["/bin/sh", "-c", "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done"],
            rootfs=rootfs, memory="64m", memory_swap="64m", capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert r.exit_code == 137
    assert r.oom_killed is True


def test_normal_exit_is_not_oom(rootfs: str) -> None:
    r = run(["true"], rootfs=rootfs, memory="64m", capture_output=True)
    assert r.returncode == 0 and r.oom_killed is False


def test_pids_limit_stops_fork_bomb(rootfs: str, cg_name: str) -> None:
    with Cgroup.create(cg_name, pids=10) as cg:
        r = run(["/bin/sh", "-c", "for i in $(seq 30); do sleep 5 & done; "
                 "echo started; cat /proc/loadavg >/dev/null; kill $(jobs -p) 2>/dev/null; "
                 "wait"], rootfs=rootfs, cgroup=cg, capture_output=True, timeout=60)
        assert b"can't fork" in r.stderr or b"Resource temporarily unavailable" in r.stderr
        assert (cg.stats().pids_limit or 0) == 10
    # the host is unaffected
    assert subprocess.run(["true"]).returncode == 0


def _busy_usage(rootfs: str, name: str, seconds: float, **limits: object) -> int:
    with Cgroup.create(name, **limits) as cg:  # type: ignore[arg-type]
        with Container(["/bin/sh", "-c", "while :; do :; done"], rootfs=rootfs,
                       cgroup=cg) as c:
            time.sleep(seconds)
            usage = cg.stats().cpu_usage_usec
            c.kill()
        assert usage is not None
        return usage


def test_cpu_limit_is_a_fraction(rootfs: str, cg_name: str) -> None:
    limited = _busy_usage(rootfs, cg_name + "-l", 1.5, cpus=0.2)
    unlimited = _busy_usage(rootfs, cg_name + "-u", 1.5, pids=100)
    ratio = limited / unlimited
    # about a fifth; wide tolerance for a shared, noisy machine
    assert 0.08 < ratio < 0.4, (limited, unlimited, ratio)


def test_stats_move(rootfs: str, cg_name: str) -> None:
    with Cgroup.create(cg_name, memory="128m") as cg:
        with Container(["/bin/sh", "-c", "x=$(head -c 8000000 /dev/zero | tr '\\0' a); "
                        "echo ready; while :; do sleep 1; done"], rootfs=rootfs, cgroup=cg,
                       stdout=subprocess.PIPE) as c:
            assert c.stdout is not None and c.stdout.readline() == b"ready\n"
            st = cg.stats()
            # sh holds the 8 MB string while it loops
            assert st.memory_current is not None and st.memory_current > 4_000_000
            assert st.memory_peak is None or st.memory_peak >= st.memory_current
            assert st.cpu_usage_usec is not None and st.cpu_usage_usec > 0
            assert st.pids_current is not None and st.pids_current >= 1
            c.kill()


def test_freeze_and_thaw(rootfs: str, cg_name: str) -> None:
    with Cgroup.create(cg_name, pids=50) as cg:
        with Container(["/bin/sh", "-c", "while :; do :; done"], rootfs=rootfs, cgroup=cg) as c:
            time.sleep(0.2)
            cg.freeze()
            a = cg.stats().cpu_usage_usec or 0
            time.sleep(0.3)
            b = cg.stats().cpu_usage_usec or 0
            assert b - a < 20_000  # nothing ran while frozen
            cg.thaw()
            time.sleep(0.3)
            assert (cg.stats().cpu_usage_usec or 0) - b > 50_000
            c.kill()


def test_remove_kills_what_is_left(rootfs: str, cg_name: str) -> None:
    cg = Cgroup.create(cg_name, pids=50)
    c = Container(["/bin/sleep", "60"], rootfs=rootfs, cgroup=cg).start()
    assert c.pid in cg.procs()
    cg.remove()
    assert c.wait(timeout=10) == -signal.SIGKILL


def test_collect_after_owner_killed(rootfs: str, cg_name: str) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from nsprim import Cgroup, Container
        cg = Cgroup.create({cg_name!r}, pids=20)
        c = Container(["/bin/sleep", "60"], rootfs={rootfs!r}, cgroup=cg).start()
        print(c.pid, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    pid = int(p.stdout.readline())
    # a live owner's cgroup is never collected
    assert cg_name not in Cgroup.collect()
    p.kill()
    p.wait()
    assert any(x.endswith("/" + leaf_name(cg_name)) for x in iter_nsprim_cgroups())
    assert cg_name in Cgroup.collect()
    assert not any(x.endswith("/" + leaf_name(cg_name)) for x in iter_nsprim_cgroups())
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}/exe") or not os.readlink(f"/proc/{pid}/exe")


def test_name_in_use(root: None, cg_name: str) -> None:
    with Cgroup.create(cg_name):
        with pytest.raises(FileExistsError, match=cg_name):
            Cgroup.create(cg_name)


@pytest.mark.parametrize("kwargs,needle", [
    ({"memory": "3m"}, "minimum"),
    ({"memory": "lots"}, "'lots'"),
    ({"memory_swap": "1g"}, "needs a memory limit"),
    ({"memory": "64m", "memory_swap": "32m"}, "'32m'"),
    ({"cpus": "0"}, "more than 0"),
    ({"cpus": "9999"}, "9999"),
    ({"cpu_shares": 1}, "cpu-shares 1"),
    ({"cpuset": "0-99999"}, "0-99999"),
    ({"device_write_bps": ["/nope:1mb"]}, "/nope"),
    ({"device_write_bps": ["/dev/null:1mb"]}, "not a block device"),
])
def test_bad_limits_create_nothing(root: None, kwargs: dict[str, object], needle: str) -> None:
    before = set(iter_nsprim_cgroups())
    with pytest.raises(ConfigError, match=needle):
        Cgroup.create("t-bad", **kwargs)  # type: ignore[arg-type]
    assert set(iter_nsprim_cgroups()) == before


def test_bad_name(root: None) -> None:
    with pytest.raises(ConfigError, match="'../x'"):
        Cgroup.create("../x")


def test_forced_driver_without_controller(root: None) -> None:
    """Forcing the hierarchy that lacks the controller is a clear error that
    creates nothing (v2 on a hybrid host; v1 on a pure v2 host)."""
    lay = host_layout()
    if lay.v2 is not None and "memory" not in lay.v2_controllers:
        forced = "v2"
    else:
        need("memory" not in lay.v1, "a host with memory on both v1 and v2")
        forced = "v1"
    with pytest.raises(OSError, match="memory"):
        Cgroup.create("t-forced", driver=forced, memory="64m")
    assert not any(p.endswith("/" + leaf_name("t-forced")) for p in iter_nsprim_cgroups())


def test_expected_layout(root: None, cg_name: str) -> None:
    """Under NSPRIM_EXPECT_CGROUP (set by the v2 VM run) prove which path ran."""
    want = os.environ.get("NSPRIM_EXPECT_CGROUP")
    lay = host_layout()
    if want is None:
        assert lay.kind in ("v1", "v2", "hybrid")
        return
    assert lay.kind == want, lay
    with Cgroup.create(cg_name, memory="64m", pids=10, cpus=0.5) as cg:
        if want == "v2":
            assert cg.v1_paths == {}
            assert cg.v2_path is not None
            with open(os.path.join(cg.v2_path, "memory.max")) as f:
                assert f.read().strip() == str(64 << 20)
            with open(os.path.join(cg.v2_path, "cpu.max")) as f:
                assert f.read().split() == ["50000", "100000"]
