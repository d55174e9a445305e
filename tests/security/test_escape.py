"""Ways out to host root through the process itself: a leaked fd at chdir,
/proc/self/exe, and the --init process.  Every path that ends in an execve
in a container (run, run -d, exec, --init) is tried."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from nsprim import Container, run
from nsprim.errors import SpawnError
from nsprim.exe import HELPER_PATH, helper_fd

from ..conftest import need, nsprim_cli

# a file on the host only: reaching it means the container's cwd or root is
# the host's
HOST_MARKER = f"/tmp/nsprim-host-marker-{uuid.uuid4().hex[:8]}"

# relative climbs from the cwd: at the host's / they stay there
_CLIMB = "cd ../../../../../../../../.. 2>/dev/null; cat ." + HOST_MARKER + " 2>&1; true"


@pytest.fixture(autouse=True)
def _host_marker() -> object:
    Path(HOST_MARKER).write_text("HOST-SECRET\n")
    yield
    os.unlink(HOST_MARKER)


def _sh(rootfs: str, script: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run(["sh", "-c", script], rootfs=rootfs, capture_output=True, timeout=30,
               **kw)  # type: ignore[arg-type]


# ------------------------------------------------ 1. no fd leads out at chdir

@pytest.mark.parametrize("limits", [{}, {"memory": "64m", "pids": 100}], ids=["plain", "cgroup"])
def test_workdir_through_proc_self_fd_stays_inside(hostile_rootfs: str,
                                                   limits: dict[str, object]) -> None:
    """-w /proc/self/fd/N for every N a setup might hold (the cgroup directory
    fd, the rootfs fd, Python's own): the container either refuses to start
    or starts inside its root; never in the host's tree."""
    started = 0
    for n in range(3, 40):
        try:
            r = _sh(hostile_rootfs, _CLIMB, cwd=f"/proc/self/fd/{n}", **limits)
        except SpawnError as e:
            assert e.step in ("chdir", "workdir"), e  # (workdir: making a missing one)
            continue
        started += 1
        assert b"HOST-SECRET" not in r.stdout, (n, r.stdout)
    # nothing but 0-2 is open at chdir, and magic links are not followed
    assert started == 0


def test_image_workdir_magic_links_refused(hostile_rootfs: str) -> None:
    for cwd in ("/proc/self/cwd", "/proc/1/root", "/proc/self/root/..", "/proc/self/fd/0"):
        with pytest.raises(SpawnError) as ei:
            _sh(hostile_rootfs, _CLIMB, cwd=cwd, memory="64m")
        assert ei.value.step in ("chdir", "workdir")  # refused either way


def test_symlinked_workdir_resolves_inside(hostile_rootfs: str) -> None:
    """A WorkingDir that is a symlink to ../../../.. resolves as if the
    container's root were /."""
    os.symlink("../../../../../../../../tmp", os.path.join(hostile_rootfs, "wd"))
    Path(hostile_rootfs, "tmp", "inside").write_text("inside\n")
    r = _sh(hostile_rootfs, "cat inside; " + _CLIMB, cwd="/wd")
    assert r.stdout.startswith(b"inside") and b"HOST-SECRET" not in r.stdout


def test_only_stdio_is_open_at_exec(hostile_rootfs: str) -> None:
    """The command starts with 0, 1, 2 and nothing else (the cgroup fd, the
    sync socket and the helper are gone)."""
    for kw in ({}, {"memory": "64m"}, {"init": True}, {"tty": False, "pids": 50}):
        r = run(["/probe", "fds"], rootfs=hostile_rootfs, capture_output=True, timeout=30,
                **kw)  # type: ignore[arg-type]
        fds = [line.split()[0] for line in r.stdout.decode().splitlines()]
        assert fds == ["0", "1", "2"], (kw, r.stdout)


def test_cli_workdir_escape_in_run_detached_and_exec(hostile_rootfs: str) -> None:
    """The modes showed different fd numbers: try them all through the CLI."""
    for n in range(3, 24):
        r = nsprim_cli("run", "--rm", "-m", "64m", "--network", "none", "-w",
                       f"/proc/self/fd/{n}", "--rootfs", hostile_rootfs, "sh", "-c", _CLIMB)
        assert "HOST-SECRET" not in r.stdout and r.returncode != 0, (n, r)
    name = f"esc-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--name", name, "-m", "64m", "--network", "none",
                   "--rootfs", hostile_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        for n in range(3, 24):
            r = nsprim_cli("exec", "-w", f"/proc/self/fd/{n}", name, "sh", "-c", _CLIMB)
            assert "HOST-SECRET" not in r.stdout and r.returncode != 0, (n, r)
        r = nsprim_cli("exec", name, "/probe", "fds")
        assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["0", "1", "2"], r
    finally:
        nsprim_cli("rm", "-f", name)


# ------------------------------------- 2. /proc/self/exe is not the host's

def _python_ran(out: bytes) -> bool:
    return b"Python 3" in out


# `-V` prints the version before Python looks for its standard library: with
# the loader and libraries copied in (below), the host interpreter would run
_PY = ["-V"]


@pytest.fixture
def exe_rootfs(hostile_rootfs: str) -> str:
    """The rootfs plus the dynamic loader and libraries of the host's
    interpreter, so that running the host binary in it would succeed."""
    import shutil

    real = os.path.realpath(sys.executable)
    out = subprocess.run(["ldd", real], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("/") and os.path.exists(word):
            dest = Path(hostile_rootfs + word)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(word, dest)
    return hostile_rootfs


def test_proc_self_exe_as_the_command(exe_rootfs: str) -> None:
    for kw in ({}, {"memory": "64m"}, {"init": True}):
        r = run(["/proc/self/exe", *_PY], rootfs=exe_rootfs, capture_output=True,
                timeout=30, **kw)  # type: ignore[arg-type]
        assert not _python_ran(r.stdout + r.stderr), (kw, r)
        assert r.returncode != 0


def test_proc_self_exe_through_symlink_and_shebang(exe_rootfs: str) -> None:
    hostile_rootfs = exe_rootfs
    os.symlink("/proc/self/exe", os.path.join(hostile_rootfs, "bin", "evil"))
    script = Path(hostile_rootfs, "evil.sh")
    script.write_text("#!/proc/self/exe -V\n")
    script.chmod(0o755)
    for argv in (["evil", *_PY], ["/evil.sh"]):
        for kw in ({}, {"init": True}, {"memory": "64m"}):
            try:
                r = run(argv, rootfs=hostile_rootfs, capture_output=True, timeout=30,
                        **kw)  # type: ignore[arg-type]
            except SpawnError:
                continue  # refused to exec: fine
            assert not _python_ran(r.stdout + r.stderr), (argv, kw)


def test_proc_self_exe_cannot_be_rewritten(hostile_rootfs: str) -> None:
    """What /proc/self/exe is at the command's execve (the sealed helper) can
    be neither written nor truncated, from inside or through /proc/PID/exe
    with the process gone; the helper installed on the host is untouched."""
    before = hashlib.sha256(Path(HELPER_PATH).read_bytes()).hexdigest()
    sealed = os.pread(helper_fd(), 1 << 20, 0)
    r = _sh(hostile_rootfs,
            "echo pwned >> /proc/1/exe; echo append=$?; : > /proc/1/exe; echo trunc=$?",
            init=True)
    assert b"append=0" not in r.stdout and b"trunc=0" not in r.stdout, r.stdout
    # the command re-exec'ing /proc/self/exe gets the helper, not the host
    r = _sh(hostile_rootfs, "exec 3</proc/self/exe; readlink /proc/1/exe; "
            "echo x >/proc/self/fd/3; echo w=$?", init=True)
    assert b"memfd:nsprim-init" in r.stdout and b"w=0" not in r.stdout, r.stdout
    assert hashlib.sha256(Path(HELPER_PATH).read_bytes()).hexdigest() == before
    assert os.pread(helper_fd(), 1 << 20, 0) == sealed
    # the seals do not cover the mode: a chmod through /proc/1/exe must not
    # stop the next container of this process from starting
    _sh(hostile_rootfs, "chmod 0 /proc/1/exe; chmod u+s /proc/1/exe", init=True)
    assert _sh(hostile_rootfs, "echo still-starts").stdout == b"still-starts\n"


def test_exec_into_a_container_does_not_run_the_host_interpreter(exe_rootfs: str) -> None:
    hostile_rootfs = exe_rootfs
    name = f"exe-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--name", name, "--network", "none", "--rootfs",
                   hostile_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = nsprim_cli("exec", name, "/proc/self/exe", *_PY)
        assert "PYTHON-RAN" not in r.stdout + r.stderr and r.returncode != 0
        r = nsprim_cli("exec", name, "sh", "-c", "readlink /proc/self/exe; "
                       "tr '\\0' ' ' </proc/1/environ")
        assert r.stdout.startswith("/bin/busybox"), r
    finally:
        nsprim_cli("rm", "-f", name)


def test_exec_is_never_seen_half_in_the_host(hostile_rootfs: str) -> None:
    """A container with CAP_SYS_PTRACE spins on the next pid of its pid
    namespace, opening /proc/PID/root: a joining `exec` that shows up there
    before it is inside the container's root would hand it the host's /.
    (Reproduced on the first versions: won within a few execs.)"""
    name = f"race-{uuid.uuid4().hex[:6]}"
    marker = HOST_MARKER.lstrip("/")
    r = nsprim_cli("run", "-d", "--name", name, "--network", "none", "--cap-add",
                   "SYS_PTRACE", "--rootfs", hostile_rootfs, "sh", "-c",
                   f"/probe race-root 25 {marker} > /tmp/race.out; sleep 60")
    assert r.returncode == 0, r.stderr
    try:
        for _ in range(40):
            r = nsprim_cli("exec", name, "/bin/true")
            assert r.returncode == 0, r.stderr
        time.sleep(26)
        out = Path(hostile_rootfs, "tmp", "race.out").read_text()
    finally:
        nsprim_cli("rm", "-f", name)
    assert out.startswith("done"), out


def test_api_join_of_a_pid_namespace_is_never_seen_half_in_the_host(
        hostile_rootfs: str) -> None:
    """The same through the Python API, joining every namespace of a running
    container (exec's way) and with a root of its own joining only its pid
    namespace."""
    from nsprim import Namespace

    marker = HOST_MARKER.lstrip("/")
    with Container(["/probe", "race-root", "8", marker], rootfs=hostile_rootfs,
                   cap_add=["SYS_PTRACE"], stdout=subprocess.PIPE) as x:
        assert x.pid is not None and x.stdout is not None
        ns = {k: Namespace.of(x.pid, k) for k in ("pid", "mnt", "net", "uts", "ipc")}
        deadline = time.monotonic() + 5  # the probe runs 7 to 8 s
        while time.monotonic() < deadline:
            run(["/bin/true"], namespaces=ns, cwd="/")  # type: ignore[arg-type]
            run(["/bin/true"], rootfs=hostile_rootfs, namespaces={"pid": ns["pid"]})
        out = x.stdout.read().decode()
    assert out.startswith("done"), out


def _in_a_terminal_session(argv: list[str]) -> str:
    """Run `argv` as the leader of a session whose controlling terminal is a
    new pty (an admin at a shell); return what was written to the terminal."""
    import fcntl
    import termios

    master, slave = os.openpty()
    try:
        p = subprocess.run(argv, stdin=slave, stdout=slave, stderr=slave, timeout=60,
                           start_new_session=True,
                           preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: no writer left
                break
            if not chunk:
                break
            out += chunk
        assert p.returncode is not None
        return out.decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_no_input_injected_into_the_callers_terminal(hostile_rootfs: str) -> None:
    """Without -t, `exec` gives the container the caller's terminal, but it is
    in a session of its own: the terminal is not its controlling one, so
    TIOCSTI (typing commands into the admin's shell) is refused; `run` gives
    it pipes."""
    cli = [sys.executable, "-m", "nsprim"]
    out = _in_a_terminal_session([*cli, "run", "--rm", "--network", "none", "--rootfs",
                                  hostile_rootfs, "/probe", "sti"])
    # run without -t gives the container pipes (ENOTTY), as docker does; even
    # holding the terminal it could not push input (EPERM, exec below)
    assert ("errno=25" in out or "errno=1" in out) and "ok" not in out, out
    name = f"sti-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--name", name, "--network", "none", "--rootfs",
                   hostile_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        out = _in_a_terminal_session([*cli, "exec", "-i", name, "/probe", "sti"])
        assert "errno=1" in out and "ok" not in out, out
    finally:
        nsprim_cli("rm", "-f", name)


# ------------------------------------------ 3. --init shows nothing of the host

def test_init_is_a_real_program_with_nothing_of_the_host(hostile_rootfs: str) -> None:
    # what /proc/PID/environ of this (calling) process shows: its initial
    # environment, which a fork of it would show as well
    ours = [e for e in Path("/proc/self/environ").read_bytes().decode(errors="replace")
            .split("\0") if "=" in e and not e.startswith(("PATH=", "HOME="))]
    assert ours
    r = _sh(hostile_rootfs, "tr '\\0' '\\n' </proc/1/environ; echo ---; "
            "readlink /proc/1/exe; echo ---; cat /proc/1/maps; echo ---; "
            "grep -E '^(Uid|CapEff)' /proc/1/status", init=True, env={"A": "1"})
    out = r.stdout.decode()
    environ, exe, maps, status = out.split("---\n")
    assert not [e for e in ours if e in environ.split("\n")], environ
    assert "A=1" in environ.split()
    assert exe.strip() == "/memfd:nsprim-init (deleted)"
    # no host interpreter, library or heap mapped in PID 1
    assert "python" not in maps and "libc" not in maps and "[heap]" not in maps, maps
    assert sys.executable not in maps
    assert "CapEff:\t00000000a80425fb" in status


def test_init_forwards_signals_reaps_and_exits_as_the_child(hostile_rootfs: str) -> None:
    with Container(["sh", "-c", "trap 'exit 42' TERM; (sleep 0.1 &); "
                    "while :; do sleep 0.05; done"], rootfs=hostile_rootfs,
                   init=True) as c:
        time.sleep(0.5)
        c.send_signal(signal.SIGTERM)
        assert c.wait(10) == 42


def test_cli_init_detached(hostile_rootfs: str) -> None:
    need(os.geteuid() == 0, "needs root")
    name = f"init-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--init", "--name", name, "--network", "none",
                   "-e", "X=1", "--rootfs", hostile_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = nsprim_cli("exec", name, "sh", "-c", "readlink /proc/1/exe; "
                       "tr '\\0' ' ' </proc/1/environ")
        assert r.stdout.startswith("/memfd:nsprim-init"), r
        assert "NSPRIM_ROOT" not in r.stdout and "X=1" in r.stdout
    finally:
        nsprim_cli("rm", "-f", name)
