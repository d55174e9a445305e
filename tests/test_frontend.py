"""The C front end (csrc/front.c, the installed ``nsprim``) and its resident
helper (nsprim.helper): every behaviour is checked through both paths, the
helper's (NSPRIM_HELPER_IDLE=60) and the Python CLI's (NSPRIM_HELPER_IDLE=0,
no helper is started), and must be the same."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import need

FRONT = os.path.join(os.path.dirname(sys.executable), "nsprim")
PATHS = ["helper", "python"]


def front_end() -> str:
    need(os.geteuid() == 0, "needs root")
    try:
        with open(FRONT, "rb") as f:
            is_elf = f.read(4) == b"\x7fELF"
    except OSError:
        is_elf = False
    need(is_elf, f"the C front end is not installed at {FRONT} (pip install .)")
    return FRONT


class Front:
    """The front end with a state root of its own and one of the two paths."""

    def __init__(self, root: str, path: str) -> None:
        self.exe = front_end()
        self.root = root
        self.run_dir = os.path.join(root, "run")
        self.path = path
        self.env = dict(os.environ, NSPRIM_HELPER_IDLE="60" if path == "helper" else "0")
        self.env.pop("NSPRIM_ROOT", None)

    def argv(self, *args: str) -> list[str]:
        return [self.exe, "--root", self.root, *args]

    def __call__(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None,
                 **kw: object) -> subprocess.CompletedProcess[str]:
        r: subprocess.CompletedProcess[str] = subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout,
            env=env or self.env, **kw)  # type: ignore[call-overload]
        return r

    def helper_pid(self) -> int | None:
        from nsprim.helper import helper_pid

        return helper_pid(self.run_dir)


@pytest.fixture(params=PATHS)
def front(request: pytest.FixtureRequest, private_root: str) -> Iterator[Front]:
    f = Front(private_root, request.param)
    yield f
    from nsprim.helper import stop

    had = stop(f.run_dir)
    if f.path == "python":
        assert not had, "a helper was started with NSPRIM_HELPER_IDLE=0"
    assert not os.path.exists(os.path.join(f.run_dir, "helper.sock"))


def _none(rootfs: str, *cmd: str) -> list[str]:
    return ["run", "--rm", "--network", "none", "--rootfs", rootfs, *cmd]


def test_run_output_and_exit_code(front: Front, rootfs: str) -> None:
    r = front(*_none(rootfs, "/bin/sh", "-c", "echo out; echo err >&2; exit 7"))
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    if front.path == "helper":
        assert front.helper_pid() is not None
    else:
        assert front.helper_pid() is None
        assert not os.path.exists(os.path.join(front.run_dir, "helper.sock"))


def test_bad_flag_is_nsprims_error(front: Front, rootfs: str) -> None:
    r = front("run", "--rm", "--memory", "lots", "--rootfs", rootfs, "/bin/true")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "lots" in r.stderr


def test_caller_env_cwd_umask(front: Front, rootfs: str, tmp_path: Path) -> None:
    """-e NAME takes the caller's value; relative paths are the caller's cwd;
    files the CLI writes get the caller's umask."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "vars").write_text("FROM_FILE=yes\n")
    env = dict(front.env, FASTVAR="caller-value")
    r = front(*_none(rootfs, "-e", "FASTVAR", "--env-file", "vars", "--cidfile", "cid",
                     "/bin/sh", "-c", "echo $FASTVAR $FROM_FILE"),
              env=env, cwd=str(work), umask=0o077)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "caller-value yes\n"
    st = os.stat(work / "cid")
    assert st.st_mode & 0o777 == 0o600  # 0644 & ~077
    assert len((work / "cid").read_text()) == 64


def test_stdin_pipe(front: Front, rootfs: str) -> None:
    r = front("run", "--rm", "-i", "--network", "none", "--rootfs", rootfs, "/bin/cat",
              input="through the pipe\n")
    assert (r.returncode, r.stdout) == (0, "through the pipe\n"), r.stderr


def test_output_pipe_ends_with_the_command(front: Front, rootfs: str) -> None:
    """The helper keeps no copy of the caller's pipes: the reader sees EOF
    when the command ends, not when the helper does."""
    p = subprocess.Popen(front.argv(*_none(rootfs, "/bin/echo", "x")), env=front.env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    t0 = time.monotonic()
    out = p.stdout.read()  # EOF only once every writer is gone
    assert out == b"x\n"
    assert p.wait(10) == 0
    assert time.monotonic() - t0 < 20


def test_signal_is_forwarded(front: Front, rootfs: str) -> None:
    p = subprocess.Popen(front.argv(*_none(rootfs, "--init", "/bin/sleep", "30")),
                         env=front.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 128 + signal.SIGTERM  # the container's status: killed by it
    assert time.monotonic() - t0 < 5


def test_killed_caller_is_a_killed_cli(front: Front, rootfs: str) -> None:
    """SIGKILL of the front end: its command dies with it, as the CLI
    process would have, and what it left is collected."""
    p = subprocess.Popen(front.argv(*_none(rootfs, "--name", "victim", "/bin/sleep", "60")),
                         env=front.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while front("ps", "-q", "--filter", "name=victim").stdout.strip() == "":
        assert time.monotonic() < deadline, "the container did not start"
        time.sleep(0.1)
    p.kill()
    p.wait()
    while front("ps", "-q", "--filter", "name=victim").stdout.strip() != "":
        assert time.monotonic() < deadline, "the container outlived its CLI"
        time.sleep(0.2)


def test_exec(front: Front, rootfs: str) -> None:
    r = front("run", "-d", "--name", "ex", "--network", "none", "--rootfs", rootfs,
              "/bin/sleep", "60")
    assert r.returncode == 0, r.stderr
    r = front("exec", "ex", "true")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = front("exec", "-i", "ex", "/bin/sh", "-c", "cat; exit 4", input="in\n")
    assert (r.returncode, r.stdout) == (4, "in\n")
    r = front("exec", "nosuch", "true")
    assert r.returncode == 1 and "nosuch" in r.stderr
    assert front("rm", "-f", "ex").returncode == 0


def test_tty(front: Front, rootfs: str) -> None:
    need(shutil.which("script") is not None, "needs script(1) (bsdutils)")
    cmd = " ".join(front.argv(*_none(rootfs, "-t", "/bin/sh", "-c", "tty; exit 3")))
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       env=front.env, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "/dev/pts/" in r.stdout or "/dev/console" in r.stdout


def test_not_fast_path_commands_still_work(front: Front) -> None:
    r = front("--version")
    assert r.returncode == 0 and r.stdout.startswith("nsprim ")
    r = front("volume", "ls", "-q")
    assert (r.returncode, r.stdout) == (0, "")
    r = front("nosuchcommand")
    assert r.returncode == 125 and "nosuchcommand" in r.stderr
    assert front.helper_pid() is None  # none of these start a helper


def test_helper_idle_exit_and_collect(private_root: str, rootfs: str) -> None:
    f = Front(private_root, "helper")
    f.env["NSPRIM_HELPER_IDLE"] = "1"
    assert f("ps", "-a").returncode == 0
    pid = f.helper_pid()
    assert pid is not None
    deadline = time.monotonic() + 15
    while f.helper_pid() is not None:
        assert time.monotonic() < deadline, "the helper did not end when idle"
        time.sleep(0.2)
    assert not os.path.exists(os.path.join(f.run_dir, "helper.sock"))
    while os.path.exists(f"/proc/{pid}"):  # its lock goes just before it does
        assert time.monotonic() < deadline, "the helper did not end when idle"
        time.sleep(0.05)
    # killed: its socket and lock are collected, and the next call starts another
    f.env["NSPRIM_HELPER_IDLE"] = "60"
    assert f("ps").returncode == 0
    pid = f.helper_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    assert os.path.exists(os.path.join(f.run_dir, "helper.sock"))
    py = Front(private_root, "python")
    assert py(*_none(rootfs, "/bin/true")).returncode == 0  # run collects
    assert not os.path.exists(os.path.join(f.run_dir, "helper.sock"))
    assert not os.path.exists(os.path.join(f.run_dir, "helper.lock"))
    assert f("ps").returncode == 0
    assert f.helper_pid() not in (None, pid)
    from nsprim.helper import stop

    assert stop(f.run_dir)


def test_concurrent_first_calls_start_one_helper(private_root: str) -> None:
    f = Front(private_root, "helper")
    procs = [subprocess.Popen(f.argv("ps", "-q"), env=f.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0] * 4
    for p in procs:
        assert p.stdout is not None and p.stdout.read() == b""
    pid = f.helper_pid()
    assert pid is not None
    helpers = [d for d in os.listdir("/proc") if d.isdigit() and _is_helper_of(d, f.run_dir)]
    assert helpers == [str(pid)]
    from nsprim.helper import stop

    assert stop(f.run_dir)


def _is_helper_of(pid: str, run: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return b"--run" in argv and os.fsencode(run) in argv and any(
        b"nsprim.helper" in a for a in argv)


def test_reinstalled_code_replaces_the_helper(private_root: str, rootfs: str) -> None:
    """A helper never runs code older than what is installed: after a
    reinstall (here: nsprim's files touched), it refuses, the command runs
    in the Python CLI, and the next call starts a new helper."""
    import nsprim

    f = Front(private_root, "helper")
    assert f("ps").returncode == 0
    old = f.helper_pid()
    assert old is not None
    path = nsprim.__file__
    assert path is not None
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        r = f("run", "--rm", "--network", "none", "--rootfs", rootfs, "/bin/echo", "new")
        assert (r.returncode, r.stdout) == (0, "new\n"), r.stderr
        deadline = time.monotonic() + 15
        while os.path.exists(f"/proc/{old}"):
            assert time.monotonic() < deadline, "the old helper stayed"
            time.sleep(0.05)
        assert f("ps").returncode == 0
        assert f.helper_pid() not in (None, old)
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        from nsprim.helper import stop

        stop(f.run_dir)


def test_helper_killed_mid_command(private_root: str, rootfs: str) -> None:
    """SIGKILL of the helper: its running command goes with it and the
    caller says so (exit 125), instead of waiting on an orphan."""
    f = Front(private_root, "helper")
    p = subprocess.Popen(f.argv("run", "--rm", "--network", "none", "--rootfs", rootfs,
                                "/bin/sleep", "60"), env=f.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    pid = None
    while pid is None:
        assert time.monotonic() < deadline
        pid = f.helper_pid()
        time.sleep(0.1)
    time.sleep(1)
    os.kill(pid, signal.SIGKILL)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 125 and "helper" in err
    py = Front(private_root, "python")
    while py("ps", "-q").stdout.strip():  # the container went with its CLI
        assert time.monotonic() < deadline + 20
        time.sleep(0.2)


# ---- the request's format (pure logic: hypothesis) ----------------------------

_arg = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=20)
_name = st.text(st.characters(blacklist_characters="\0=", blacklist_categories=("Cs",)),
                min_size=1, max_size=10)


def _encode(umask: int, run: str, argv: list[str], env: list[str],
            rlimits: list[tuple[int, int]]) -> list[bytes]:
    """The fields as csrc/front.c's build_request lays them out."""
    return [b"1", f"{umask:o}".encode(), run.encode(), str(len(argv)).encode(),
            *[a.encode() for a in argv], str(len(env)).encode(), *[e.encode() for e in env],
            *[f"{c} {m}".encode() for c, m in rlimits]]


@given(st.integers(0, 0o777), _arg, st.lists(_arg, max_size=8),
       st.dictionaries(_name, _arg, max_size=8),
       st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=16))
def test_request_round_trip(umask: int, run: str, argv: list[str], env: dict[str, str],
                            rlimits: list[tuple[int, int]]) -> None:
    from nsprim.helper import _Request

    fields = _encode(umask, run, argv, [f"{k}={v}" for k, v in env.items()], rlimits)
    payload = b"\0".join(fields) + b"\0"
    got = _Request(payload.split(b"\0")[:-1])
    assert (got.umask, got.run, got.argv) == (umask, run, argv)
    assert got.env == {k.encode(): v.encode() for k, v in env.items()}
    assert got.rlimits == rlimits


@given(st.lists(st.binary(max_size=12), max_size=12))
def test_request_garbage_is_refused_cleanly(fields: list[bytes]) -> None:
    from nsprim.helper import _Refused, _Request

    try:
        req = _Request(fields)
    except _Refused:
        return
    assert isinstance(req.argv, list) and isinstance(req.env, dict)


def test_relative_state_root(private_root: str, rootfs: str) -> None:
    """--root relative to the caller's cwd: the helper of that root (not of
    a path taken from its own cwd) runs the command; a relative
    NSPRIM_ROOT is taken from the caller's cwd by the Python CLI too."""
    f = Front(private_root, "helper")
    r = subprocess.run([f.exe, "--root", os.path.basename(private_root),
                        *_none(rootfs, "/bin/echo", "rel")], capture_output=True,
                       text=True, timeout=60, env=f.env, cwd=os.path.dirname(private_root))
    assert (r.returncode, r.stdout) == (0, "rel\n"), r.stderr
    env = {**f.env, "NSPRIM_ROOT": os.path.basename(private_root), "NSPRIM_HELPER_IDLE": "0"}
    r2 = subprocess.run([f.exe, *_none(rootfs, "/bin/echo", "rel2")], capture_output=True,
                        text=True, timeout=60, env=env, cwd=os.path.dirname(private_root))
    assert (r2.returncode, r2.stdout) == (0, "rel2\n"), r2.stderr
    assert f.helper_pid() is not None  # the helper of <cwd>/state/run
    from nsprim.helper import stop

    assert stop(f.run_dir)
