"""The docker walk-through, command for command, with a real image and a real
HTTP server behind a published port; supervisors killed at bad moments."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import cli_at as cli


@pytest.fixture
def root(private_root: str) -> str:
    """A state root of the test's own (see conftest.private_root)."""
    return private_root


def state(root: str, name: str) -> dict[str, object]:
    out = cli(root, "inspect", name)
    assert out.returncode == 0, out.stderr
    data: list[dict[str, object]] = json.loads(out.stdout)
    return data[0]


def http(url: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_walk_through(root: str, images: dict[str, str]) -> None:
    ref = images["base"]
    assert cli(root, "pull", ref).returncode == 0
    r = cli(root, "run", "-d", "-p", "18500:80", "-v", "appdata:/data", "--name", "myapp",
            ref, "sh", "-c", "echo started; echo oops >&2; httpd -f -p 80 -h /etc")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    # ps
    ps = cli(root, "ps", "--format", "json")
    rows = [json.loads(line) for line in ps.stdout.splitlines()]
    assert [row["Names"] for row in rows] == ["myapp"] and rows[0]["State"] == "running"
    assert "0.0.0.0:18500->80/tcp" in rows[0]["Ports"]
    assert cli(root, "ps", "-q").stdout.split() == [cid[:12]]
    # the published port, from the host
    assert http("http://127.0.0.1:18500/hostname") == (cid[:12] + "\n").encode()
    # logs
    time.sleep(0.2)
    logs = cli(root, "logs", "myapp")
    assert logs.stdout == "started\n" and logs.stderr == "oops\n"
    assert cli(root, "logs", "-t", "myapp").stdout.startswith("20")
    # exec: output and exit codes, the container's env and namespaces
    r = cli(root, "exec", "-e", "X=1", "myapp", "sh", "-c",
            "echo $X $FROM_IMAGE; hostname; echo kept > /data/f; echo layer > /layer")
    assert r.returncode == 0 and r.stdout.split() == ["1", "base", cid[:12]], r.stderr
    assert cli(root, "exec", "myapp", "sh", "-c", "exit 3").returncode == 3
    # users and their supplementary groups come from the container's /etc
    r = cli(root, "exec", "-u", "user", "myapp", "id")
    assert "uid=1000" in r.stdout and "2000" in r.stdout, r.stdout + r.stderr
    assert cli(root, "exec", "myapp", "nope").returncode == 127
    # inspect
    st = state(root, "myapp")
    assert st["Id"] == cid and st["State"]["Running"] is True  # type: ignore[index]
    # stop: httpd under sh ignores nothing, sh as PID 1 ignores SIGTERM -> SIGKILL after -t
    t = time.monotonic()
    assert cli(root, "stop", "-t", "1", "myapp").returncode == 0
    took = time.monotonic() - t
    assert 0.9 < took < 8, took
    st = state(root, "myapp")
    assert st["State"]["Status"] == "exited" and st["State"]["ExitCode"] == 137  # type: ignore[index]
    assert cli(root, "wait", "myapp").stdout.strip() == "137"
    # start again: same container, same layer
    assert cli(root, "start", "myapp").returncode == 0
    assert cli(root, "exec", "myapp", "cat", "/layer", "/data/f").stdout == "layer\nkept\n"
    assert cli(root, "restart", "-t", "1", "myapp").returncode == 0
    assert state(root, "myapp")["State"]["Running"] is True  # type: ignore[index]
    # kill, rm
    assert cli(root, "kill", "-s", "KILL", "myapp").returncode == 0
    assert cli(root, "wait", "myapp").stdout.strip() == "137"
    assert cli(root, "rm", "myapp").returncode == 0
    assert cli(root, "ps", "-a", "-q").stdout == ""
    # the named volume stays
    assert "appdata" in cli(root, "volume", "ls", "-q").stdout.split()
    r = cli(root, "run", "--rm", "-v", "appdata:/data", ref, "cat", "/data/f")
    assert r.stdout == "kept\n"


def test_stop_uses_sigterm_first(root: str, rootfs: str) -> None:
    r = cli(root, "run", "-d", "--name", "polite", "--rootfs", rootfs, "--", "sh", "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.05; done")
    assert r.returncode == 0, r.stderr
    t = time.monotonic()
    assert cli(root, "stop", "-t", "10", "polite").returncode == 0
    assert time.monotonic() - t < 5
    assert state(root, "polite")["State"]["ExitCode"] == 0  # type: ignore[index]


def test_stop_uses_the_images_stopsignal(root: str, images: dict[str, str]) -> None:
    """The image says STOPSIGNAL SIGINT and its command exits 42 on SIGINT:
    a stop that sent SIGTERM instead would end it with 143, one that fell
    back to SIGKILL with 137."""
    r = cli(root, "run", "-d", "--name", "intme", "--network", "none", images["stopint"])
    assert r.returncode == 0, r.stderr
    assert cli(root, "stop", "intme").returncode == 0
    assert state(root, "intme")["State"]["ExitCode"] == 42  # type: ignore[index]


def test_stop_signal_and_timeout_flags(root: str, rootfs: str) -> None:
    r = cli(root, "run", "-d", "--name", "usr1", "--stop-signal", "USR1", "--stop-timeout",
            "1", "--network", "none", "--rootfs", rootfs, "--", "sh", "-c",
            "trap 'exit 7' USR1; trap '' TERM; while :; do sleep 0.05; done")
    assert r.returncode == 0, r.stderr
    assert cli(root, "stop", "usr1").returncode == 0
    assert state(root, "usr1")["State"]["ExitCode"] == 7  # type: ignore[index]
    # a container that ignores its stop signal is killed after --stop-timeout
    r = cli(root, "run", "-d", "--name", "deaf", "--stop-signal", "USR2", "--stop-timeout",
            "1", "--network", "none", "--rootfs", rootfs, "--", "sh", "-c",
            "trap '' USR2; while :; do sleep 0.05; done")
    assert r.returncode == 0, r.stderr
    assert cli(root, "stop", "deaf").returncode == 0
    assert state(root, "deaf")["State"]["ExitCode"] == 137  # type: ignore[index]
    bad = cli(root, "run", "--rm", "--stop-signal", "SIGNOPE", "--rootfs", rootfs, "true")
    assert bad.returncode == 125 and "SIGNOPE" in bad.stderr


def test_rm_refuses_running_without_force(root: str, rootfs: str) -> None:
    cli(root, "run", "-d", "--name", "busy", "--rootfs", rootfs, "--", "sleep", "100")
    r = cli(root, "rm", "busy")
    assert r.returncode == 1 and "running" in r.stderr
    assert cli(root, "rm", "-f", "busy").returncode == 0


def test_concurrent_names_exactly_one_wins(root: str, rootfs: str) -> None:
    def go(_: int) -> subprocess.CompletedProcess[str]:
        return cli(root, "run", "-d", "--name", "same", "--network", "none", "--rootfs",
                   rootfs, "--", "sleep", "100")

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(go, range(10)))
    assert sorted(r.returncode for r in results) == [0] + [125] * 9
    for r in results:
        if r.returncode:
            assert "already in use" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_restart_policy_on_failure(root: str, rootfs: str) -> None:
    r = cli(root, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "--network",
            "none", "--rootfs", rootfs, "--", "sh", "-c", "echo run; exit 3")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = state(root, "flaky")
        st = info["State"]
        if st["Status"] == "exited" and info["RestartCount"] == 2:  # type: ignore[index]
            break
        time.sleep(0.1)
    assert info["RestartCount"] == 2 and st["ExitCode"] == 3  # type: ignore[index]
    assert cli(root, "logs", "flaky").stdout == "run\nrun\nrun\n"


def test_restart_always_until_stopped(root: str, rootfs: str) -> None:
    cli(root, "run", "-d", "--name", "phoenix", "--restart", "always", "--network", "none",
        "--rootfs", rootfs, "--", "sh", "-c", "sleep 0.2; exit 0")
    deadline = time.monotonic() + 30
    while state(root, "phoenix")["RestartCount"] < 2:  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert cli(root, "stop", "-t", "1", "phoenix").returncode == 0
    time.sleep(0.5)
    assert state(root, "phoenix")["State"]["Status"] == "exited"  # type: ignore[index]


def _leftovers(cid: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        out += [line for line in f if cid in line]
    for base, _dirs, _files in os.walk("/sys/fs/cgroup"):
        if os.path.basename(base) == cid[:16]:
            out.append(base)
        if base.count("/") > 5:
            _dirs.clear()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out += [line for line in links.splitlines() if "nsp" + cid[:12] in line]
    return out


def test_killed_supervisor_is_collected(root: str, images: dict[str, str]) -> None:
    ref = images["base"]
    cli(root, "pull", ref)
    r = cli(root, "run", "-d", "--name", "orphan", "-m", "64m", "-p", "18501:80", ref,
            "httpd", "-f", "-p", "80")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    rec = json.load(open(os.path.join(root, "containers", cid, "state.json")))
    os.kill(rec["supervisor_pid"], signal.SIGKILL)  # the shim
    time.sleep(0.3)
    assert not os.path.exists(f"/proc/{rec['pid']}/exe") or \
        "Z" in open(f"/proc/{rec['pid']}/stat").read().split()[2]  # died with it
    ps = cli(root, "ps", "-a", "--format", "json")  # any command collects
    (row,) = [json.loads(x) for x in ps.stdout.splitlines()]
    assert row["State"] == "exited"
    deadline = time.monotonic() + 5
    while _leftovers(cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(cid) == []


def test_killed_cli_mid_run_is_collected(root: str, rootfs: str) -> None:
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "--root", root, "run", "--name",
                          "fg", "-m", "64m", "--rootfs", rootfs, "--", "sh", "-c",
                          "echo up; sleep 100"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "up\n"
    cid = json.loads(cli(root, "inspect", "fg").stdout)[0]["Id"]
    p.kill()
    p.wait()
    time.sleep(0.3)
    st = state(root, "fg")["State"]
    assert st["Status"] == "exited"  # type: ignore[index]
    deadline = time.monotonic() + 5
    while _leftovers(cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(cid) == []


def test_input_typed_before_the_container_is_kept(root: str, rootfs: str) -> None:
    """-it: what is typed (or piped into the terminal) before the container
    runs reaches it; raw mode used to flush it away, and the shell waited."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "nsprim", "--root", root, "run",
                                  "--rm", "-it", "--network", "none", "--rootfs", rootfs,
                                  "--", "sh", "-c", "read x; echo got=$x; exit 3"])
    os.write(fd, b"early\n")  # typed ahead, before nsprim has even started
    out = b""
    deadline = time.monotonic() + 20
    while b"got=early" not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    if b"got=early" not in out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert b"got=early" in out, out
    assert os.waitstatus_to_exitcode(status) == 3


def test_interactive_terminal(root: str, rootfs: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "nsprim", "--root", root, "run",
                                  "--rm", "-it", "--network", "none", "--rootfs", rootfs,
                                  "--", "sh"])
    out = b""

    def read_until(needle: bytes, timeout: float = 15) -> bytes:
        nonlocal out
        deadline = time.monotonic() + timeout
        while needle not in out:
            left = deadline - time.monotonic()
            assert left > 0, out
            if select.select([fd], [], [], left)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return out

    # busybox's line editor asks the terminal where the cursor is: answer it
    read_until(b"\x1b[6n")
    os.write(fd, b"\x1b[1;3R")
    time.sleep(0.3)
    os.write(fd, b"echo hello-$((40+2)); [ -t 0 ] && echo is-a-tty; tty\n")
    read_until(b"hello-42")
    read_until(b"is-a-tty")
    read_until(b"/dev/pts/0")  # a terminal of the container's own devpts
    os.write(fd, b"sleep 30\n")
    time.sleep(0.5)
    t = time.monotonic()
    os.write(fd, b"\x03")  # ^C reaches the container's foreground process
    os.write(fd, b"echo after-interrupt\n")
    read_until(b"after-interrupt")
    assert time.monotonic() - t < 10
    os.write(fd, b"exit 7\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7


def test_exec_plan_is_nondumpable_first() -> None:
    from nsprim._native import lib
    from nsprim.config import make_config
    from nsprim.plan import build_plan

    cfg = make_config(["true"], nondumpable=True, namespaces={"net": False})
    plan = build_plan(cfg, (0, 1, 2))
    assert plan.ops[0].kind == lib.NSP_OP_NONDUMPABLE


def test_cli_errors(root: str, rootfs: str) -> None:
    for args, needle in ((["logs", "ghost"], "ghost"), (["stop", "ghost"], "ghost"),
                         (["exec", "ghost", "true"], "ghost"),
                         (["run", "--restart", "sometimes", "--rootfs", rootfs, "true"],
                          "sometimes"),
                         (["run", "--name", "bad name", "--rootfs", rootfs, "true"], "bad name"),
                         (["kill", "-s", "NOPE", "x"], "NOPE")):
        r = cli(root, *args)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)


def _wait_restarting(root: str, name: str, count: int) -> None:
    """Until `name` has restarted `count` times and waits out its backoff."""
    deadline = time.monotonic() + 30
    while True:
        info = state(root, name)
        st = info["State"]
        if st["Status"] == "restarting" and info["RestartCount"] >= count:  # type: ignore[index, operator]
            return
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


@pytest.mark.parametrize("how", [["stop"], ["rm", "-f"], ["kill"]])
def test_crash_looping_container_stops_at_once(root: str, rootfs: str, how: list[str]) -> None:
    """issue 12 bug 2: a --restart always container whose command fails at
    once spends its time in the restart backoff (seconds, doubling); stop,
    rm -f and kill there end the loop at once (they used to time out on the
    dead pid, and the next run reset the stop)."""
    r = cli(root, "run", "-d", "--name", "crash", "--restart", "always", "--network", "none",
            "--rootfs", rootfs, "false")
    assert r.returncode == 0, r.stderr
    _wait_restarting(root, "crash", 4)  # the next backoff is 1.6 s or more
    t = time.monotonic()
    r = cli(root, *how, "crash", timeout=60)
    took = time.monotonic() - t
    assert r.returncode == 0 and r.stdout == "crash\n", r.stderr
    assert took < 5, took  # at once, not the 10 s stop timeout or the 30 s wait
    if how[0] == "rm":
        assert cli(root, "ps", "-a", "-q").stdout == ""
        return
    # stop waits for the end; kill only signals (docker's), so its end is
    # awaited: a kill that lands on a restart's brief run ends that run
    deadline = time.monotonic() + 5
    while True:
        st = state(root, "crash")["State"]
        if st["Status"] == "exited" or time.monotonic() > deadline:  # type: ignore[index]
            break
        time.sleep(0.05)
    assert st["Status"] == "exited" and st["ExitCode"] in (1, 137), st  # type: ignore[index]
    time.sleep(1.7)  # past the backoff it was in: no restart came
    assert state(root, "crash")["State"]["Status"] == "exited"  # type: ignore[index]
    # a stopped container starts again, restart policy and all
    assert cli(root, "start", "crash").returncode == 0
    _wait_restarting(root, "crash", 1)
    assert cli(root, "stop", "crash").returncode == 0
    assert state(root, "crash")["State"]["Status"] == "exited"  # type: ignore[index]
