"""The daemon's zygote: a single-threaded Python process with nsprim's
runtime already imported (and its seccomp program compiled), which forks a
container's supervisor on request.  A supervisor started this way skips the
interpreter's start and the imports (~100 ms here: the interpreter, site and
nsprim's modules) that ``python -m nsprim.supervise start`` pays.

The daemon is multi-threaded (asyncio and its executor), so it never forks
itself: it asks the zygote over a SOCK_SEQPACKET socketpair, one message
``start ID`` with the write end of the supervisor's ready pipe attached
(SCM_RIGHTS).  The forked child is exactly what ``nsprim.supervise start``
would be -- its own session, signals at their defaults -- and runs the same
code (``supervise.start``), then execs nsprim-shim; it does not depend on
the zygote or the daemon afterwards.  The zygote ends when the daemon's end
of the socket closes.

    python -m nsprim.daemon.zygote --root DIR --run DIR FD
"""

from __future__ import annotations

import array
import os
import signal
import socket
import subprocess
import sys
import threading

__all__ = ["Zygote"]


class Zygote:
    """The daemon's handle on its zygote process."""

    def __init__(self) -> None:
        from nsprim.state import root_args

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nsprim.daemon.zygote", *root_args(), str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()

    def start(self, container_id: str, ready_w: int) -> bool:
        """Ask for the supervisor of `container_id`; False if the zygote is gone."""
        if self.proc.poll() is not None:
            return False
        try:
            with self._lock:
                self.sock.sendmsg([f"start {container_id}".encode()],
                                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", [ready_w]))])
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _warm() -> None:
    """Import what a supervisor runs, and compile docker's seccomp program
    (cached per process: every fork inherits it)."""
    import nsprim.cgroup  # noqa: F401
    import nsprim.container  # noqa: F401
    import nsprim.images.store  # noqa: F401
    import nsprim.network.bridge  # noqa: F401
    import nsprim.spec  # noqa: F401
    import nsprim.supervise  # noqa: F401

    try:
        from nsprim import seccomp
        from nsprim.caps import DOCKER_DEFAULT_CAPS

        seccomp.compile_bpf(seccomp.DEFAULT(), DOCKER_DEFAULT_CAPS)
    except (OSError, ValueError):
        pass


def _child(container_id: str, ready_fd: int, sock: socket.socket) -> None:
    import gc

    gc.disable()  # a short life until the exec of the shim
    sock.close()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # as `python -m nsprim.supervise` is started: not the daemon's
        os.dup2(null, fd)
    os.close(null)
    os.setsid()
    for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_DFL)
    code = 125
    try:
        from nsprim.supervise import start

        code = start(container_id, ready_fd)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 125
    except BaseException as e:  # noqa: BLE001 - reported to the daemon, then exit
        try:
            os.write(ready_fd, f"err {' '.join(str(e).split())}\n".encode())
        except OSError:
            pass
    os._exit(code)


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] != "--root" or argv[2] != "--run":
        print("usage: python -m nsprim.daemon.zygote --root DIR --run DIR FD", file=sys.stderr)
        return 2
    from nsprim.state import use_root

    use_root(argv[1], argv[3])
    sock = socket.socket(fileno=int(argv[4]))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon's ^C is the daemon's
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: ends with the daemon
    except (OSError, AttributeError):
        pass
    _warm()
    import gc

    gc.collect()
    gc.freeze()  # a fork's collector does not touch (and copy) the zygote's objects
    fds = array.array("i")
    while True:
        try:
            msg, anc, _flags, _addr = sock.recvmsg(256, socket.CMSG_SPACE(fds.itemsize))
        except InterruptedError:
            continue
        if not msg:
            return 0
        ready = -1
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(data[:len(data) - len(data) % got.itemsize])
                if got:
                    ready = got[0]
                    for extra in got[1:]:
                        os.close(extra)
        words = msg.decode(errors="replace").split()
        if ready < 0 or len(words) != 2 or words[0] != "start":
            if ready >= 0:
                os.close(ready)
            continue
        if os.fork() == 0:
            _child(words[1], ready, sock)
        os.close(ready)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
