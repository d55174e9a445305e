"""The sandbox preset (nsprim.presets.SANDBOX) against hostile snippets: each
ends inside its bounds, the result says what happened, and nothing is left
-- no process, cgroup or mount; the caller's fds and memory back to their
baseline after the suite.  Real containers; needs root."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from nsprim import Container, aio, presets, run
from nsprim._completed import CompletedContainer
from nsprim.cgroup import iter_nsprim_cgroups

from ..conftest import need


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def my_cgroups() -> set[str]:
    return set(iter_nsprim_cgroups())


@pytest.fixture(scope="module")
def baseline(rootfs: str) -> Iterator[None]:
    """After the whole module: the caller's fds back to their count, its RSS
    within a few MiB of where it was, no cgroup of ours left."""
    sb(rootfs, "true")  # per-process caches (exec helper, device program)
    fds, rss, cgs = fd_count(), rss_kib(), my_cgroups()
    yield
    assert fd_count() == fds
    assert rss_kib() - rss < 32 * 1024, (rss, rss_kib())
    assert my_cgroups() <= cgs


def sb(rootfs: str, script: str, **overrides: object) -> CompletedContainer:
    return run(["/bin/sh", "-c", script], rootfs=rootfs,
               **presets.sandbox(**overrides))  # type: ignore[misc]


def test_preset_fields_are_overridable(rootfs: str) -> None:
    kw = presets.sandbox(memory="64m", timeout=3)
    assert kw["memory"] == "64m" and kw["timeout"] == 3
    assert kw["pids"] == presets.SANDBOX["pids"] and kw["read_only"] is True
    with pytest.raises(TypeError, match="memroy"):
        presets.sandbox(memroy="64m")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        presets.SANDBOX["memory"] = "1g"  # type: ignore[index]


def test_identity_and_limits(rootfs: str, baseline: None) -> None:
    r = sb(rootfs, "id -u; id -g; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status;"
           " cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    lines = [x.strip() for x in r.stdout.decode().splitlines()]
    assert lines[:2] == ["65534", "65534"]
    assert "CapEff:\t0000000000000000" in r.stdout.decode()
    assert "NoNewPrivs:\t1" in r.stdout.decode() and "Seccomp:\t2" in r.stdout.decode()
    assert lines[-1] == "lo"  # no network but loopback
    assert r.returncode == 0 and not r.timed_out


def test_rlimits(rootfs: str, baseline: None) -> None:
    """1024 files, files of at most /tmp's size (SIGXFSZ past it), no core."""
    r = sb(rootfs, "ulimit -n; ulimit -c; ulimit -f; "
           "dd if=/dev/zero of=/tmp/big bs=1M count=65 2>/dev/null; echo dd=$?")
    out = r.stdout.decode().split()
    # ulimit -f counts 512-byte blocks
    assert out[:3] == ["1024", "0", str(presets.TMP_SIZE // 512)], out
    assert out[3] != "dd=0", out  # the 65th MiB is refused (SIGXFSZ, or EFBIG)
    r = sb(rootfs, "ulimit -n", ulimits={"nofile": (64, 128)})
    assert r.stdout.decode().split() == ["64"]


def test_fork_bomb(rootfs: str, baseline: None) -> None:
    r = sb(rootfs, "b() { b | b & }; b; sleep 2; echo alive", timeout=5)
    assert r.pids_peak is not None and r.pids_peak <= 64
    assert b"can't fork" in (r.stderr or b"")
    assert r.duration is not None and r.duration < 30


def test_memory_hog(rootfs: str, baseline: None) -> None:
    r = sb(rootfs, "dd if=/dev/zero of=/dev/null bs=400M count=1; echo done", memory="64m",
           memory_swap="64m")
    # dd (a child) is OOM-killed; the shell reports it and goes on
    assert r.oom_killed and r.stdout == b"done\n"
    r = sb(rootfs, "exec dd if=/dev/zero of=/dev/null bs=400M count=1", memory="64m",
           memory_swap="64m")
    assert r.oom_killed and r.returncode == -signal.SIGKILL
    assert r.memory_peak is not None and r.memory_peak <= 64 << 20


def test_infinite_output(rootfs: str, baseline: None) -> None:
    before = rss_kib()
    r = sb(rootfs, "yes; yes >&2")
    assert r.stdout_truncated and len(r.stdout) == presets.OUTPUT_LIMIT
    assert r.returncode == -signal.SIGKILL and not r.timed_out
    assert rss_kib() - before < 32 * 1024


def test_sleep_forever(rootfs: str, baseline: None) -> None:
    r = sb(rootfs, "echo going; sleep 100000", timeout=1)
    assert r.timed_out and r.returncode == -signal.SIGKILL
    assert r.stdout == b"going\n"


def test_write_everywhere(rootfs: str, baseline: None) -> None:
    script = ("for d in / /etc /bin /root /dev /proc /sys /tmp /dev/shm; do "
              "touch $d/x 2>/dev/null && echo wrote $d; done; "
              "dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null; "
              "du -k /tmp/big | cut -f1")
    r = sb(rootfs, script)
    lines = r.stdout.decode().split()
    wrote = [lines[i + 1] for i, w in enumerate(lines) if w == "wrote"]
    assert set(wrote) <= {"/tmp", "/dev/shm"} and "/tmp" in wrote
    assert int(lines[-1]) <= presets.TMP_SIZE // 1024  # the tmpfs's size holds
    for d in ("x", "etc/x", "bin/x"):
        assert not os.path.exists(os.path.join(rootfs, d))


def test_network_attempts(rootfs: str, baseline: None) -> None:
    # no interface but lo: nothing can leave (no packet is sent anywhere)
    r = sb(rootfs, "ip route; nc -w 1 10.88.0.1 80 </dev/null 2>&1; echo rc=$?; "
           "ping -c1 -W1 10.88.0.1 2>&1; echo rc=$?; "
           "ip link add x type dummy 2>&1; echo rc=$?")
    out = r.stdout.decode()
    assert out.startswith("nc: ")  # no route at all: `ip route` printed nothing
    assert "network is unreachable" in out.lower()
    assert "rc=0" not in out and out.count("rc=") == 3


def test_user_namespaces_refused(rootfs: str, baseline: None) -> None:
    r = sb(rootfs, "unshare -U -r id -u 2>&1; echo rc=$?; unshare -n true 2>&1; echo rc=$?")
    out = r.stdout.decode()
    assert out.count("rc=") == 2 and "rc=0" not in out
    assert "not permitted" in out.lower()


def test_kill_pid_1(rootfs: str, baseline: None) -> None:
    # PID 1 of a pid namespace gets no signal it has no handler for from
    # inside, SIGKILL included: the container goes on, then ends as usual,
    # and its background sleep dies with it
    r = sb(rootfs, "sleep 100000 & kill -9 1; kill -9 $$; echo still")
    assert r.returncode == 0 and r.stdout == b"still\n"
    assert not r.timed_out
    # a child killing PID 1 (its parent) gets nowhere either
    r = sb(rootfs, "sh -c 'kill -9 1; kill -KILL 1'; echo alive")
    assert r.returncode == 0 and r.stdout == b"alive\n"


def test_background_processes_left(rootfs: str, baseline: None) -> None:
    cgs = my_cgroups()
    r = sb(rootfs, "(sleep 100000 &) ; sleep 100000 >/dev/null 2>&1 & echo started")
    assert r.stdout == b"started\n" and r.returncode == 0 and not r.timed_out
    assert my_cgroups() <= cgs  # its cgroup (and what was in it) is gone


def test_close_stdout_and_stay_alive(rootfs: str, baseline: None) -> None:
    r = sb(rootfs, "echo bye; exec >&- 2>&-; sleep 100000", timeout=1)
    assert r.stdout == b"bye\n" and r.timed_out


def test_exec_style_sandbox(rootfs: str, baseline: None) -> None:
    with presets.sandbox_container(["sleep", "100000"], rootfs=rootfs) as c:
        assert isinstance(c, Container)
        r = c.exec(["sh", "-c", "id -u; yes"], capture_output=True, timeout=5,
                   output_limit=1000)
        assert r.stdout is not None and r.stdout.startswith(b"65534\n")
        assert r.stdout_truncated and len(r.stdout) == 1000
        r = c.exec(["sleep", "100"], timeout=0.5, raise_on_timeout=False)
        assert r.timed_out
        assert c.poll() is None
        c.kill()


def test_hostile_snippets_on_the_loop(rootfs: str, baseline: None) -> None:
    need(os.geteuid() == 0, "needs root")
    snippets = ["yes", "b() { b | b & }; b; sleep 1", "sleep 100000", "exec >&-; sleep 9999",
                "dd if=/dev/zero of=/dev/null bs=400M count=1"]

    async def main() -> list[CompletedContainer]:
        return await asyncio.gather(*(
            aio.run(["sh", "-c", s], rootfs=rootfs, **presets.sandbox(timeout=3))
            for s in snippets * 4))

    results = asyncio.run(main())
    assert len(results) == 20
    for i, r in enumerate(results):
        kind = i % 5
        if kind == 0:
            assert r.stdout_truncated and r.returncode == -signal.SIGKILL
        elif kind == 1:
            assert r.pids_peak is not None and r.pids_peak <= 64
            assert b"can't fork" in (r.stderr or b"")
        elif kind in (2, 3):
            assert r.timed_out and r.returncode == -signal.SIGKILL
        else:
            assert r.oom_killed and r.returncode == -signal.SIGKILL
