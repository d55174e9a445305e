"""The library for people who build on nsprim (issue 16): thread safety,
output kept and bounded, the caller's dumpable flag, die_with_parent from
any thread, stats after exit, typing, exec.  Real containers; needs root."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import PIPE, Container, run
from nsprim.cgroup import Cgroup

from .conftest import need

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def baseline(rootfs: str) -> Iterator[None]:
    """The caller's fds are back to their count after the test (after a
    first run of each kind: the exec helper and the device program are
    opened once per process and cached)."""
    run(["true"], rootfs=rootfs)
    run(["true"], rootfs=rootfs, pids=8)
    before = fd_count()
    yield
    assert fd_count() == before


# ------------------------------------------------------------ 1. threads

def _race_wait_and_poll(c: Container) -> tuple[list[int | None], list[BaseException]]:
    errors: list[BaseException] = []
    codes: list[int | None] = []
    go = threading.Event()

    def waiter() -> None:
        go.wait()
        try:
            codes.append(c.wait())
        except BaseException as e:  # reported by the test
            errors.append(e)

    def poller() -> None:
        go.wait()
        try:
            while c.poll() is None:
                c.send_signal(0)
            codes.append(c.poll())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in [waiter] * 4 + [poller] * 4]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(30)
    return codes, errors


def test_wait_and_poll_from_many_threads(rootfs: str, baseline: None) -> None:
    for _ in range(5):
        c = Container(["sleep", "0.2"], rootfs=rootfs).start()
        codes, errors = _race_wait_and_poll(c)
        assert not errors, errors
        assert codes == [0] * 8
        assert c.pidfd == -1


def test_kill_races_wait_without_touching_another_fd(rootfs: str, baseline: None) -> None:
    c = Container(["sleep", "30"], rootfs=rootfs).start()
    t = threading.Thread(target=c.wait)
    t.start()
    time.sleep(0.05)
    c.kill()
    t.join(10)
    assert c.returncode == -signal.SIGKILL
    c.kill()  # after the reap: a no-op, never a signal to a reused fd
    assert c.poll() == -signal.SIGKILL


def test_wait_timeout_while_another_thread_waits(rootfs: str) -> None:
    with Container(["sleep", "30"], rootfs=rootfs) as c:
        t = threading.Thread(target=c.wait)
        t.start()
        time.sleep(0.05)
        with pytest.raises(subprocess.TimeoutExpired):
            c.wait(timeout=0.1)
        assert c.poll() is None
        c.kill()
        t.join(10)
    assert c.returncode == -signal.SIGKILL


# ------------------------------------------------------------ 2. timeout output

def test_timeout_keeps_partial_output(rootfs: str, baseline: None) -> None:
    with pytest.raises(subprocess.TimeoutExpired) as ei:
        run(["sh", "-c", "echo partial; echo err >&2; sleep 30"], rootfs=rootfs,
            capture_output=True, timeout=1)
    assert ei.value.stdout == b"partial\n"
    assert ei.value.stderr == b"err\n"


def test_timeout_result_without_raising(rootfs: str) -> None:
    r = run(["sh", "-c", "echo partial; sleep 30"], rootfs=rootfs, capture_output=True,
            timeout=0.5, raise_on_timeout=False)
    assert r.timed_out and r.returncode == -signal.SIGKILL and r.stdout == b"partial\n"


def test_second_communicate_returns_everything(rootfs: str) -> None:
    with Container(["sh", "-c", "read x; echo one $x; sleep 1; echo two"], rootfs=rootfs,
                   stdin=PIPE, stdout=PIPE) as c:
        with pytest.raises(subprocess.TimeoutExpired) as ei:
            c.communicate(b"in\n", timeout=0.5)
        assert ei.value.stdout == b"one in\n"
        out, err = c.communicate(timeout=10)
    assert out == b"one in\ntwo\n" and err is None


# ------------------------------------------------------------ 3. bounded capture

def test_output_limit_kills(rootfs: str, baseline: None) -> None:
    before = rss_kib()
    r = run(["yes"], rootfs=rootfs, capture_output=True, timeout=30, output_limit=1 << 20)
    assert r.stdout == b"y\n" * (1 << 19)
    assert r.stdout_truncated and not r.stderr_truncated
    assert r.returncode == -signal.SIGKILL
    assert rss_kib() - before < 64 * 1024


def test_output_limit_drains(rootfs: str) -> None:
    r = run(["sh", "-c", "yes | head -c 3000000; echo done >&2"], rootfs=rootfs,
            capture_output=True, timeout=30, output_limit=1000, on_output_limit="drain")
    assert r.returncode == 0
    assert r.stdout == b"y\n" * 500 and r.stdout_truncated
    assert r.stderr == b"done\n" and not r.stderr_truncated


def test_output_limit_bad_values(rootfs: str) -> None:
    from nsprim import ConfigError

    with pytest.raises(ConfigError, match="-1"):
        Container(["true"], rootfs=rootfs, output_limit=-1)
    with pytest.raises(ConfigError, match="'stop'"):
        Container(["true"], rootfs=rootfs, on_output_limit="stop")


# ------------------------------------------------------------ 4. nondumpable

def _dumpable() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


@pytest.fixture
def dumpable() -> None:
    """This process dumpable (another test's credential change, such as a
    setns into a user namespace, leaves it non-dumpable: the kernel's rule)."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0
    assert _dumpable() == 1


def test_nondumpable_does_not_leak_to_the_caller(rootfs: str, dumpable: None) -> None:
    r = run(["true"], rootfs=rootfs, nondumpable=True)
    assert r.returncode == 0
    assert _dumpable() == 1
    # and the exec'd command of exec() (always non-dumpable while it joins)
    with Container(["sleep", "30"], rootfs=rootfs) as c:
        assert c.exec(["true"]).returncode == 0
        assert _dumpable() == 1
        c.kill()


def test_nondumpable_from_threads_at_once(rootfs: str, dumpable: None) -> None:
    def go() -> None:
        for _ in range(10):
            run(["true"], rootfs=rootfs, nondumpable=True)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert _dumpable() == 1


# ------------------------------------------------------------ 5. die_with_parent

def test_die_with_parent_outlives_the_starting_thread(rootfs: str) -> None:
    box: list[Container] = []
    t = threading.Thread(target=lambda: box.append(
        Container(["sleep", "30"], rootfs=rootfs, die_with_parent=True).start()))
    t.start()
    t.join(10)
    c = box[0]
    try:
        time.sleep(0.3)
        assert c.poll() is None  # the worker's exit did not kill it
    finally:
        c.kill()
        c.wait()


def test_die_with_parent_dies_with_the_process(rootfs: str) -> None:
    script = textwrap.dedent(f"""
        import os, sys, threading, time
        from nsprim import Container
        box = []
        t = threading.Thread(target=lambda: box.append(
            Container(["sleep", "60"], rootfs={rootfs!r}, die_with_parent=True).start()))
        t.start(); t.join()
        print(box[0].pid, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        pidfd = os.pidfd_open(pid)
        try:
            assert not select.select([pidfd], [], [], 0.2)[0]  # alive
            p.kill()  # SIGKILL: no Python cleanup runs
            assert select.select([pidfd], [], [], 10)[0], "container outlived its process"
        finally:
            os.close(pidfd)
    finally:
        p.kill()
        p.wait()


# ------------------------------------------------------------ 6. stats after exit

def test_stats_read_before_the_cgroup_goes(rootfs: str, baseline: None) -> None:
    r = run(["sh", "-c", "sleep 0.1 & sleep 0.1 & x=$(cat /proc/self/status); wait"],
            rootfs=rootfs, memory="64m", pids=32, capture_output=True)
    assert r.returncode == 0
    assert r.stats is not None
    assert r.memory_peak is not None and r.memory_peak > 0
    assert r.pids_peak is not None and r.pids_peak >= 3
    assert r.cpu_time is not None and all(t >= 0 for t in r.cpu_time)
    assert r.duration is not None and r.duration >= 0.1
    assert not r.timed_out and not r.oom_killed


def test_container_keeps_stats_after_wait(rootfs: str) -> None:
    c = Container(["true"], rootfs=rootfs, pids=8).start()
    c.wait()
    assert c.cgroup is not None and c.cgroup.removed
    assert c.stats is not None and c.stats.pids_limit == 8


def test_cpu_time_without_a_cgroup(rootfs: str) -> None:
    r = run(["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"],
            rootfs=rootfs)
    assert r.cpu_time is not None and r.cpu_time[0] + r.cpu_time[1] > 0
    assert r.memory_peak is None  # no cgroup of its own


# ------------------------------------------------------------ 7. typing

def test_types_of_namespaces_and_keywords(tmp_path: object) -> None:
    need(_has_mypy(), "needs mypy (pip install .[dev])")
    from mypy import api

    code = textwrap.dedent("""
        from nsprim import Container, Namespace, run
        from nsprim.cgroup import Cgroup
        def f(ns: Namespace) -> None:
            d: dict[str, Namespace] = {"net": ns}
            Container(["true"], namespaces=d)
            b: dict[str, bool] = {"net": False}
            run(["true"], namespaces=b, memory="64m")
            Cgroup.create("x", memory="64m", pids=3)
    """)
    cfg = ["--config-file", os.devnull, "--strict", "--no-incremental", "-c"]
    out, err, status = api.run([*cfg, code])
    assert status == 0, out + err
    bad = textwrap.dedent("""
        from nsprim import run
        from nsprim.cgroup import Cgroup
        run(["true"], memroy="64m")
        Cgroup.create("x", pids="many")
    """)
    out, _err, status = api.run([*cfg, bad])
    assert status == 1
    assert '"memroy"' in out and '"pids"' in out


def _has_mypy() -> bool:
    try:
        import mypy.api  # noqa: F401
    except ImportError:
        return False
    return True


def test_cgroup_create_typed_keywords_still_work(root: None) -> None:
    with Cgroup.create(os.urandom(6).hex(), pids=5) as cg:
        assert cg.stats().pids_limit == 5


# ------------------------------------------------------------ exec

def test_exec_joins_the_container(rootfs: str, baseline: None) -> None:
    with Container(["sleep", "30"], rootfs=rootfs, env={"A": "1"}, hostname="box",
                   pids=16) as c:
        r = c.exec(["sh", "-c", "echo $A $B $HOSTNAME $(hostname) $(pwd); id -u; "
                    "cat /proc/self/cgroup | tail -1"], env={"B": "2"}, cwd="/tmp",
                   user="1000", capture_output=True)
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "1 2 box box /tmp"
        assert lines[1] == "1000"
        assert r.returncode == 0
        # the pid namespace: the container's sleep is PID 1
        r = c.exec(["cat", "/proc/1/cmdline"], capture_output=True)
        assert r.stdout == b"sleep\x0030\x00"
        assert c.cgroup is not None
        assert c.exec(["true"]).returncode == 0
        c.kill()


def test_exec_start_is_popen_like(rootfs: str) -> None:
    with Container(["sleep", "30"], rootfs=rootfs) as c:
        p = c.exec_start(["sh", "-c", "read x; echo got $x; exit 3"], stdin=PIPE, stdout=PIPE)
        out, _ = p.communicate(b"hi\n", timeout=10)
        assert out == b"got hi\n" and p.returncode == 3
        assert c.poll() is None  # the container keeps running
        with pytest.raises(subprocess.TimeoutExpired) as ei:
            c.exec(["sh", "-c", "echo started; sleep 30"], capture_output=True, timeout=0.5)
        assert ei.value.stdout == b"started\n"
        assert c.poll() is None
        c.kill()


def test_exec_keeps_the_container_protections(rootfs: str) -> None:
    with Container(["sleep", "30"], rootfs=rootfs, cap_drop=["ALL"],
                   no_new_privileges=True) as c:
        r = c.exec(["grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"],
                   capture_output=True)
        status = dict(line.split(":\t") for line in r.stdout.decode().splitlines()
                      if ":\t" in line)
        assert status["CapEff"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
        fds = c.exec(["ls", "/proc/self/fd"], capture_output=True).stdout.split()
        assert sorted(fds) == [b"0", b"1", b"2", b"3"]  # 3: ls's own directory fd
        c.kill()


def test_exec_on_a_stopped_container(rootfs: str) -> None:
    c = Container(["true"], rootfs=rootfs).start()
    c.wait()
    with pytest.raises(ProcessLookupError):
        c.exec(["true"])


def test_sixteen_threads_exact_output(rootfs: str, baseline: None) -> None:
    """16 threads x 100 runs (the issue's 500 each: NSPRIM_STRESS_RUNS=500), each
    checking its own output: no cross-talk of pipes or codes."""
    errors: list[str] = []

    def go(n: int) -> None:
        for i in range(int(os.environ.get("NSPRIM_STRESS_RUNS", "100"))):
            r = run(["sh", "-c", f"echo {n}-{i}; exit {i % 7}"], rootfs=rootfs,
                    capture_output=True)
            if r.stdout != f"{n}-{i}\n".encode() or r.returncode != i % 7:
                errors.append(f"{n}-{i}: {r!r}")

    threads = [threading.Thread(target=go, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:5]


def test_exec_in_a_user_namespace(userns_rootfs: str) -> None:
    from nsprim import IdMap

    with Container(["sleep", "30"], rootfs=userns_rootfs,
                   user_namespace=IdMap(100000, size=65536)) as c:
        r = c.exec(["sh", "-c", "id -u; cat /proc/self/uid_map"], capture_output=True)
        assert r.returncode == 0
        assert r.stdout.split() == [b"0", b"0", b"100000", b"65536"]
        c.kill()


# ------------------------------------------------------------ output limit logic


@given(chunks=st.lists(st.binary(min_size=1, max_size=50), max_size=20),
       limit=st.one_of(st.none(), st.integers(min_value=0, max_value=300)),
       mode=st.sampled_from(["kill", "drain"]))
def test_output_limit_keeps_a_prefix(chunks: list[bytes], limit: int | None,
                                     mode: str) -> None:
    """Whatever the chunking: the first `limit` bytes are kept, the flag says
    whether more came, and "kill" is asked for once, when the limit is passed."""
    c = Container(["true"], namespaces={"pid": False, "net": False, "mnt": False,
                                        "uts": False, "ipc": False, "cgroup": False},
                  output_limit=limit, on_output_limit=mode)
    kills = [c._take(1, chunk) for chunk in chunks]
    data = b"".join(chunks)
    assert (c._output(1) or b"") == (data if limit is None else data[:limit])
    over = limit is not None and len(data) > limit
    assert c.stdout_truncated == over and not c.stderr_truncated
    assert kills.count(True) == (1 if over and mode == "kill" else 0)
    if over and mode == "kill":
        total = 0
        for chunk, k in zip(chunks, kills, strict=True):
            crossed = total <= limit < total + len(chunk)  # type: ignore[operator]
            assert k == crossed
            total += len(chunk)


@given(overrides=st.dictionaries(st.sampled_from(["memory", "pids", "timeout", "user",
                                                  "output_limit", "read_only"]),
                                 st.one_of(st.integers(1, 1 << 30), st.booleans(),
                                           st.text(max_size=5))))
def test_sandbox_overrides_field_by_field(overrides: dict[str, object]) -> None:
    from nsprim import presets

    kw = dict(presets.sandbox(**overrides))  # type: ignore[arg-type]
    for k, v in presets.SANDBOX.items():
        assert kw[k] == overrides.get(k, v)
    assert set(kw) == set(presets.SANDBOX)
