"""The supervisor of a detached container (see lifecycle.py).

    python -m nsprim.supervise [--root DIR --run DIR] start ID READY_FD
    python -m nsprim.supervise [--root DIR --run DIR] finish ID LOCK_FD,...

``start`` runs in a session of its own: it starts the container as its
child, records it as running, tells the CLI (a line on READY_FD: ``ok`` or
``err MESSAGE``), then execs nsprim-shim with the container's pidfd, its
stdout/stderr pipes and its lock files.  ``finish`` is what the shim execs
when the container has ended: it releases the resources, records the exit,
and either restarts the container (back to the shim) or ends.

Stopping (``stopping`` in the state, set by stop, kill and rm -f through
``lifecycle.request_stop``) is only ever cleared by ``start``, the start that
the CLI asks for: a restart never clears it.  Between runs (the backoff) the
supervisor waits on a FIFO that request_stop writes to, so a stop ends it at
once; a run it was starting meanwhile, it kills as soon as it has recorded it.
"""

from __future__ import annotations

import os
import select
import sys
import time

from nsprim.lifecycle import Record, release_resources, remove_record, wake_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsprim-shim")


def build_container(rec: Record, **extra: Any) -> Any:
    """The Container a record describes (its spec.json)."""
    from nsprim.spec import to_container

    return to_container(rec.spec, **extra)


def run_once(rec: Record, report: Any) -> None:
    """Start the container, record it, report, exec the shim (no return)."""
    import subprocess

    cfg = rec.config
    tty = bool(cfg.get("tty"))
    stdin_fd, held = _stdin_fifo(rec, cfg) if cfg.get("interactive") and not tty else (-1, [])
    stdio: dict[str, Any] = {"tty": True} if tty else {
        "stdin": stdin_fd if stdin_fd >= 0 else subprocess.DEVNULL,
        "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    c = build_container(rec, die_with_parent=True, **stdio)
    try:
        try:
            c.start()
        finally:
            if stdin_fd >= 0:
                os.close(stdin_fd)
    except BaseException as e:
        msg = _start_error(c, e)
        rec.update_state(status="exited", exit_code=125, error=msg, finished_at=time.time())
        report(f"err {msg}")
        raise SystemExit(125) from None
    from nsprim.lifecycle import _proc_start

    oom_before = c.cgroup.oom_kills() if c.cgroup is not None else 0
    me = os.getpid()
    try:
        os.unlink(os.path.join(rec.dir, "exit"))
    except FileNotFoundError:
        pass
    rec.update_state(status="running", pid=c.pid, pid_start=_proc_start(c.pid),
                     supervisor_pid=me, supervisor_start=_proc_start(me),
                     started_at=time.time(), finished_at=None, exit_code=None,
                     oom_killed=False, oom_before=oom_before, ip=c.ip_address, ports=c.ports,
                     error=None, pty_fd=c.pty_master if tty else None,
                     gateway=getattr(c.attachment, "gateway", None),
                     prefixlen=getattr(c.attachment, "prefixlen", None))
    if rec.state.get("stopping"):  # a stop that came while it was starting: it saw no pid
        import signal

        signal.pidfd_send_signal(c.pidfd, signal.SIGKILL)
    from nsprim.health import start_monitor

    start_monitor(rec)  # --health-cmd, the image's HEALTHCHECK
    report("ok")
    locks = c.hand_over() + held
    out_fd, err_fd = (c.pty_master, -1) if tty else (c.stdout.fileno(), c.stderr.fileno())
    keep = [c.pidfd, *[fd for fd in (out_fd, err_fd) if fd >= 0], *locks]
    for fd in keep:
        os.set_inheritable(fd, True)
    from nsprim.spec import log_limits
    from nsprim.state import root_args

    max_size, max_file = log_limits(rec.spec)  # the shim rotates the log (--log-opt)
    os.environ["NSPRIM_LOG_MAX_SIZE"], os.environ["NSPRIM_LOG_MAX_FILE"] = \
        str(max_size), str(max_file)
    os.execv(SHIM, [SHIM, rec.dir, str(c.pidfd), f"t{out_fd}" if tty else str(out_fd),
                    str(err_fd), "--", sys.executable, "-m", "nsprim.supervise",
                    *root_args(), "finish", rec.id, ",".join(map(str, locks))])


def stdin_path(rec: Record) -> str:
    """The FIFO that is the stdin of a container created with OpenStdin and
    no terminal (the daemon's attach writes to it)."""
    return os.path.join(rec.dir, "stdin")


def _stdin_fifo(rec: Record, cfg: dict[str, Any]) -> tuple[int, list[int]]:
    """(the container's stdin, fds the shim holds): the read end of the
    record's FIFO; unless StdinOnce, a write end the shim keeps open, so the
    container's stdin never ends when an attached client goes (docker -i)."""
    import fcntl

    path = stdin_path(rec)
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    held = [] if cfg.get("stdin_once") else \
        [os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)]
    return fd, held


def _start_error(c: Any, e: BaseException) -> str:
    """One line for a start that failed; a command that could not be exec'd
    in docker's (runc's) words, which its CLI maps to 126/127."""
    from nsprim.errors import SpawnError

    if isinstance(e, SpawnError) and e.step == "exec":
        from nsprim.cli.run import _argv0, _exec_failure

        return _exec_failure(e.detail or _argv0(c, ""), e.errno or 0)
    return " ".join(str(e).split())


def start(container_id: str, ready_fd: int) -> int:
    rec = Record(container_id)

    def report(msg: str) -> None:
        nonlocal ready_fd
        if ready_fd >= 0:
            try:
                os.write(ready_fd, (msg + "\n").encode())
            finally:
                os.close(ready_fd)
                ready_fd = -1

    rec.update_state(restart_count=rec.state.get("restart_count", 0), stopping=False)
    run_once(rec, report)
    return 0


def _restart_wanted(rec: Record, code: int) -> bool:
    policy = str(rec.config.get("restart", "no"))
    st = rec.state
    if st.get("stopping") or policy in ("no", ""):
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if policy.startswith("on-failure"):
        if code == 0:
            return False
        _, _, n = policy.partition(":")
        return not n or int(st.get("restart_count", 0)) < int(n)
    return False


def _backoff(rec: Record, seconds: float) -> bool:
    """Wait `seconds` before a restart, or less if a stop comes (it writes to
    the wake FIFO); True if the container is to be restarted."""
    path = wake_path(rec)
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass
    # O_RDWR: never end of file, and a writer's open finds a reader while it is open
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if rec.state.get("stopping"):  # came before the FIFO was open
            return False
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.poll(seconds * 1000)
    finally:
        os.close(fd)
    return not rec.state.get("stopping")


def finish(container_id: str, lock_fds: str) -> int:
    rec = Record(container_id)
    try:
        with open(os.path.join(rec.dir, "exit")) as f:
            code_s, sig_s, t_s = f.read().split()
        code, finished = int(code_s), int(t_s) / 1e9
    except (OSError, ValueError):
        code, finished = 255, time.time()
    st = rec.state
    oom = False
    try:
        from nsprim.cgroup import Cgroup

        cg = Cgroup.open(rec.id[:16])
        oom = cg.oom_kills() > int(st.get("oom_before", 0))
        cg.close()
    except OSError:
        pass
    restart = _restart_wanted(rec, code)
    release_resources(rec, remove_rootfs=rec.config.get("auto_remove", False) and not restart)
    for fd in filter(None, lock_fds.split(",")):
        try:
            os.close(int(fd))
        except OSError:
            pass
    if not os.path.isdir(rec.dir):
        return 0  # removed meanwhile (the daemon's rm -f does not wait for us)
    try:
        rec.update_state(status="restarting" if restart else "exited", exit_code=code,
                         finished_at=finished, oom_killed=oom)
    except FileNotFoundError:
        return 0
    if restart:
        n = int(rec.state.get("restart_count", 0))
        if _backoff(rec, min(0.1 * (2 ** min(n, 6)), 5.0)):  # docker-like backoff
            rec.update_state(restart_count=n + 1)
            run_once(rec, lambda msg: None)
        rec.update_state(status="exited")  # stopped while it waited
    if rec.config.get("auto_remove"):
        from nsprim.lifecycle import keep_exit_code

        keep_exit_code(rec.id, int(rec.state.get("exit_code", code)))
        remove_record(rec)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "--root" and argv[2] == "--run":
        from nsprim.state import use_root

        use_root(argv[1], argv[3])  # the state root is passed, never inherited
        argv = argv[4:]
    if len(argv) == 3 and argv[0] == "start":
        return start(argv[1], int(argv[2]))
    if len(argv) == 3 and argv[0] == "finish":
        return finish(argv[1], argv[2])
    print("usage: python -m nsprim.supervise [--root DIR --run DIR] "
          "start ID READY_FD | finish ID LOCKS",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
