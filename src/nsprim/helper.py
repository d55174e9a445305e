"""The CLI's resident helper: a preforked Python process per state root and
user, with the CLI's run/exec path imported, that the C front end
(csrc/front.c, the ``nsprim`` command) hands its commands to.

A request carries the caller's argv, environment, umask, rlimits, cwd (an
fd) and fds 0, 1, 2 (SCM_RIGHTS).  The helper checks the caller (same uid,
SO_PEERCRED; same namespaces and root directory as the helper, else it
refuses and the front end runs the Python CLI itself), forks a child, and the
child becomes what a fresh ``nsprim`` process would be -- those fds as 0-2
and no other (the helper's listening socket, lock and other clients' sockets
are closed), the caller's environment, cwd, umask and rlimits, signals at
Python's defaults, no blocked signals -- then runs ``nsprim.cli.main``.  Its
exit status goes back to the front end.  Signal numbers the front end sends
are delivered to the child (docker's sig-proxy); if the front end goes away,
the child is killed, as the CLI process would have been.

The helper listens on ``<run dir>/helper.sock`` (0700 in the 0700 run dir),
holds ``<run dir>/helper.lock`` (its pid inside) while it lives, and exits
after ``--idle`` seconds without a request (the front end passes
NSPRIM_HELPER_IDLE, default 60; 0 never starts one), on SIGTERM (after its
running children), or when its socket is removed.  A killed helper's socket
and lock are freed by `collect` (nsprim.collect).

    python -m nsprim.helper --run DIR [--idle SECONDS] [--ready-fd FD]
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import selectors
    from typing import Any

__all__ = ["collect", "stop", "helper_pid", "SOCK_NAME", "LOCK_NAME", "main"]

SOCK_NAME = "helper.sock"
LOCK_NAME = "helper.lock"
MAX_REQUEST = 1 << 20  # the front end's bound too
_NAMESPACES = ("mnt", "net", "pid", "user", "ipc", "uts", "cgroup")
_UCRED = struct.Struct("3i")
_PR_SET_PDEATHSIG = 1
#: the first byte on the ready pipe: listening, or another helper has the lock
_READY, _OTHER = b"1", b"2"


# ---- the helper's process --------------------------------------------------


class _Client:
    __slots__ = ("conn", "pid", "pidfd")

    def __init__(self, conn: socket.socket | None, pid: int, pidfd: int) -> None:
        self.conn, self.pid, self.pidfd = conn, pid, pidfd


class _Refused(Exception):
    pass


def _recv_request(conn: socket.socket) -> tuple[list[bytes], list[int]]:
    """Read one request: its fields and the fds that came with it."""
    fds: list[int] = []
    data = b""
    need = 8
    try:
        while len(data) < need:
            chunk, anc, flags, _addr = conn.recvmsg(
                min(need - len(data), 65536), socket.CMSG_SPACE(4 * 5))
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(payload) // 4
                    fds += struct.unpack(f"{n}i", payload[:4 * n])
            if flags & socket.MSG_CTRUNC:
                raise _Refused("too many fds")
            if not chunk:
                raise _Refused("short request")
            data += chunk
            if need == 8 and len(data) >= 8:
                if data[:4] != b"NSPH":
                    raise _Refused("not a request")
                (length,) = struct.unpack("=I", data[4:8])
                if length > MAX_REQUEST:
                    raise _Refused("request too large")
                need = 8 + length
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    import stat

    if len(fds) != 4 or not stat.S_ISDIR(os.fstat(fds[3]).st_mode):
        for fd in fds:
            os.close(fd)
        raise _Refused("expected fds 0, 1, 2 and a directory")
    fields = data[8:].split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    return fields, fds


class _Request:
    def __init__(self, fields: list[bytes]) -> None:
        it = iter(fields)
        try:
            if next(it) != b"1":
                raise _Refused("version")
            self.umask = int(next(it), 8) & 0o777
            self.run = os.fsdecode(next(it))
            self.argv = [os.fsdecode(next(it)) for _ in range(int(next(it)))]
            env: dict[bytes, bytes] = {}
            for _ in range(int(next(it))):
                k, sep, v = next(it).partition(b"=")
                if sep and k:
                    env.setdefault(k, v)  # getenv's rule: the first one counts
            self.env = env
            self.rlimits: list[tuple[int, int]] = []
            for raw in it:
                cur, mx = raw.split()
                self.rlimits.append((int(cur), int(mx)))
        except (StopIteration, ValueError) as e:
            raise _Refused(f"bad request: {e}") from None


def _same_place(pid: int) -> bool:
    """The caller is in the helper's namespaces and sees its root: else what
    it asks for would be run in another world than its own."""
    if pid <= 0:
        return False  # in another pid namespace
    try:
        for ns in _NAMESPACES:
            if os.stat(f"/proc/{pid}/ns/{ns}").st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino:
                return False
        a, b = os.stat(f"/proc/{pid}/root"), os.stat("/")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _child(req: _Request, fds: list[int], close: list[socket.socket],
           sel: selectors.BaseSelector, parent: int, prctl: Any) -> None:
    """In the forked child: become the CLI process the caller would have
    started, run its main, exit with its status.  Never returns."""
    code = 1
    try:
        # a killed helper takes its commands along (their callers are told)
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(code)
        sel.close()
        for sock in close:
            sock.detach()  # closed below with the rest; no finalizer may close a reused number
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        signal.set_wakeup_fd(-1)
        os.closerange(3, _max_fd())
        os.setpgid(0, 0)
        # signals as a fresh interpreter has them
        for s in signal.valid_signals():
            if s in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(s, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.umask(req.umask)
        import resource

        for res, (cur, mx) in enumerate(req.rlimits):
            try:
                resource.setrlimit(res, (_rlim(cur), _rlim(mx)))
            except (OSError, ValueError):
                pass
        environ = os.environb
        environ.clear()
        environ.update(req.env)
        _new_stdio()
        sys.argv = ["nsprim", *req.argv]
        import gc

        gc.enable()
        from nsprim.cli import main as cli_main

        try:
            prof_to = os.environ.get("NSPRIM_HELPER_PROFILE")
            if prof_to:  # a profile of the command as the child runs it
                code = _profiled(cli_main, req.argv, f"{prof_to}.{os.getpid()}")
            else:
                code = cli_main(req.argv)
        except SystemExit as e:
            code = _exit_code(e)
        except KeyboardInterrupt:
            import traceback

            traceback.print_exc()
            _flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)  # as Python ends on an uncaught ^C
        _shutdown()
    except SystemExit as e:
        code = _exit_code(e)
    except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, 1
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
        code = 1
    _flush()
    os._exit(code & 0xFF if isinstance(code, int) else 1)


def _profiled(fn: Any, argv: list[str], path: str) -> int:
    """fn(argv) under cProfile, its statistics dumped to `path` (pstats
    format) however it ends: NSPRIM_HELPER_PROFILE=PREFIX in the caller's
    environment profiles what the helper's child does for one command."""
    import cProfile

    prof = cProfile.Profile()
    try:
        return int(prof.runcall(fn, argv))
    finally:
        prof.dump_stats(path)


def _rlim(v: int) -> int:
    import resource

    return resource.RLIM_INFINITY if v >= (1 << 63) else v


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 1 << 20


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def _new_stdio() -> None:
    """sys.stdin/stdout/stderr for the caller's fds, buffered as the
    interpreter would have made them (line buffered on a terminal)."""
    enc = sys.stdout.encoding if sys.stdout else "utf-8"
    out_err = sys.stdout.errors if sys.stdout else "strict"
    stdin = open(0, encoding=enc, closefd=False)  # noqa: SIM115
    stdout = open(1, "w", encoding=enc, errors=out_err, closefd=False)  # noqa: SIM115
    if os.isatty(1):
        stdout.reconfigure(line_buffering=True)
    stderr = open(2, "w", encoding=enc, errors="backslashreplace", closefd=False)  # noqa: SIM115
    stderr.reconfigure(line_buffering=True)
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    setattr(sys, "__stdin__", stdin)  # noqa: B010 - final names to the type checker
    setattr(sys, "__stdout__", stdout)  # noqa: B010
    setattr(sys, "__stderr__", stderr)  # noqa: B010


def _flush() -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except (OSError, ValueError):
            pass


def _shutdown() -> None:
    """What the interpreter does at its end: wait for non-daemon threads,
    run atexit functions."""
    if "threading" in sys.modules:
        import threading

        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
    import atexit

    atexit._run_exitfuncs()


def _warm() -> None:
    """Import what the common commands run, compile docker's seccomp program
    (cached per process: every child inherits it)."""
    import importlib

    import nsprim.cli  # noqa: F401
    import nsprim.cli.containers  # noqa: F401
    import nsprim.cli.run  # noqa: F401
    import nsprim.collect  # noqa: F401
    import nsprim.container  # noqa: F401
    import nsprim.lifecycle  # noqa: F401
    import nsprim.spec  # noqa: F401

    # what the common commands import when they run (checked with a diff of
    # sys.modules around a child's `run` and `ps`); the bridge's network stack
    for mod in ("resource", "nsprim.events", "nsprim.health", "nsprim.network.etc",
                "nsprim.images.store", "nsprim.images.reference",
                "nsprim.network.bridge", "nsprim.cli.listing", "nsprim.dockerfmt.filters",
                "nsprim.dockerfmt.load", "nsprim.dockerfmt.shapes", "nsprim.dockerfmt.table",
                "nsprim.network.user", "nsprim.network.rules", "nsprim.network.graveyard",
                "nsprim.cli.networks"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    try:  # the bridge's nftables library (ctypes), loaded once here
        from nsprim.network import nft

        nft._load()
    except Exception:  # noqa: BLE001 - warming only
        pass
    for name in ("run", "exec", "ps", "start", "stop", "rm", "logs", "inspect", "network"):
        try:
            nsprim.cli._PREBUILT[name] = nsprim.cli._build_parser(name)
        except Exception:  # noqa: BLE001 - warming only: the child builds its own
            pass
    try:
        from nsprim import seccomp
        from nsprim.caps import DOCKER_DEFAULT_CAPS

        seccomp.compile_bpf(seccomp.DEFAULT(), DOCKER_DEFAULT_CAPS)
    except (OSError, ValueError):
        pass


def _write(fd: int, what: bytes) -> None:
    try:
        os.write(fd, what)
    except OSError:
        pass
    os.close(fd)


def _code_files() -> list[tuple[int, int]]:
    """Identity of the installed code (a reinstall replaces these files)."""
    import nsprim
    import nsprim.cli

    out = []
    for mod in (nsprim, nsprim.cli):
        try:
            st = os.stat(mod.__file__ or "")
            out.append((st.st_ino, st.st_mtime_ns))
        except OSError:
            out.append((0, 0))
    return out


def _take_lock(run: str) -> int | None:
    """The helper lock of `run`, with this pid in it; None if another helper
    holds it."""
    path = os.path.join(run, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # removed by its last owner meanwhile: take the new one


def _listen(run: str) -> tuple[socket.socket, int]:
    """Bind `run`/helper.sock (0700), by a relative name: the path may be
    longer than sun_path."""
    tmp = f"{SOCK_NAME}.{os.getpid()}"
    old = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(run)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        s.bind(tmp)
        os.chmod(tmp, 0o700)
        s.listen(64)
        os.rename(tmp, SOCK_NAME)
        ino = os.stat(SOCK_NAME).st_ino
    except BaseException:
        s.close()
        raise
    finally:
        os.fchdir(old)
        os.close(old)
    return s, ino


def serve(run: str, idle: float, ready_fd: int | None = None) -> int:
    """Be the helper of the run dir `run` until idle for `idle` seconds."""
    import selectors

    from nsprim.state import _private, private_dir

    run = os.path.abspath(run)
    parent_dir = os.path.dirname(run)
    if not os.path.isdir(parent_dir):
        os.makedirs(parent_dir, 0o700)  # a new state root: private, as the CLI makes it
    private_dir(run)
    _private.discard(run)  # the children check it again, as a fresh process would
    lock = _take_lock(run)
    if lock is None:
        if ready_fd is not None:  # the caller waits for that one instead
            _write(ready_fd, _OTHER)
        return 0
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    me = os.getpid()
    code_files = _code_files()
    sock_path = os.path.join(run, SOCK_NAME)
    listener, ino = _listen(run)
    run_st = os.stat(run)
    os.chdir("/")
    _warm()
    import gc

    gc.collect()
    gc.freeze()  # the children's collector does not touch (and copy) these objects
    rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wr)
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "listen")
    sel.register(rd, selectors.EVENT_READ, "wake")
    clients: dict[int, _Client] = {}  # by pidfd
    conns: dict[int, _Client] = {}  # by conn fd
    if ready_fd is not None:
        _write(ready_fd, _READY)
    last = time.monotonic()
    listening = True

    def stop_listening() -> None:
        nonlocal listening
        if not listening:
            return
        listening = False
        sel.unregister(listener)
        try:
            if os.stat(sock_path).st_ino == ino:
                os.unlink(sock_path)
        except OSError:
            pass
        listener.close()

    def finish(c: _Client, status: int) -> None:
        sel.unregister(c.pidfd)
        os.close(c.pidfd)
        del clients[c.pidfd]
        if c.conn is not None:
            if os.WIFSIGNALED(status):
                msg = b"S" + struct.pack("=i", os.WTERMSIG(status))
            else:
                msg = b"E" + struct.pack("=i", os.waitstatus_to_exitcode(status))
            try:
                c.conn.sendall(msg)
            except OSError:
                pass
            drop_conn(c)

    def drop_conn(c: _Client) -> None:
        if c.conn is not None:
            sel.unregister(c.conn)
            del conns[c.conn.fileno()]
            c.conn.close()
            c.conn = None

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            pid, uid, _gid = _UCRED.unpack(conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            if uid != os.geteuid():
                conn.close()  # another user: not even an answer
                return
            conn.settimeout(5)
            fields, fds = _recv_request(conn)
        except (OSError, _Refused):
            conn.close()
            return
        try:
            req = _Request(fields)
            st = os.stat(req.run)
            if (st.st_dev, st.st_ino) != (run_st.st_dev, run_st.st_ino):
                raise _Refused("another state root")
            if not _same_place(pid):
                raise _Refused("another namespace")
            if _code_files() != code_files:  # nsprim was reinstalled: its new code runs
                stop_listening()
                raise _Refused("nsprim changed")
            child = os.fork()
            if child == 0:
                _child(req, fds, [listener, conn, *(c.conn for c in conns.values()
                                                    if c.conn is not None)], sel, me, prctl)
        except (OSError, _Refused):
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(b"R")
            except OSError:
                pass
            conn.close()
            return
        for fd in fds:
            os.close(fd)  # the caller's pipes must not stay open in the helper
        pidfd = os.pidfd_open(child)
        c = _Client(conn, child, pidfd)
        clients[pidfd] = c
        sel.register(pidfd, selectors.EVENT_READ, "child")
        try:
            conn.sendall(b"A")
        except OSError:
            pass
        conn.setblocking(False)
        conns[conn.fileno()] = c
        sel.register(conn, selectors.EVENT_READ, "conn")

    def from_client(c: _Client) -> None:
        assert c.conn is not None
        try:
            data = c.conn.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the caller is gone: so goes its command, as if it were killed
            _send(c.pidfd, signal.SIGKILL)
            drop_conn(c)
            return
        for signum in data:
            if 0 < signum < signal.NSIG and signum not in (signal.SIGKILL, signal.SIGSTOP):
                _send(c.pidfd, signum)

    try:
        while True:
            now = time.monotonic()
            if stopping:
                stop_listening()
            if listening and not clients and now - last >= idle:
                stop_listening()
            if not listening and not clients:
                return 0
            if listening:
                try:  # the socket was removed (or the run dir): no one can reach us
                    if os.stat(sock_path).st_ino != ino:
                        stop_listening()
                        continue
                except OSError:
                    stop_listening()
                    continue
            timeout = min(5.0, max(0.0, idle - (now - last))) if not clients else None
            for key, _ev in sel.select(timeout):
                kind = key.data
                if kind == "listen" and listening:
                    accept()
                    last = time.monotonic()
                elif kind == "wake":
                    try:
                        os.read(rd, 64)
                    except OSError:
                        pass
                elif kind == "child":
                    c = clients[key.fd]
                    try:
                        _pid, status = os.waitpid(c.pid, 0)
                    except ChildProcessError:
                        status = 0
                    finish(c, status)
                    last = time.monotonic()
                elif kind == "conn":
                    c2 = conns.get(key.fd)
                    if c2 is not None:
                        from_client(c2)
    finally:
        stop_listening()
        try:
            os.unlink(os.path.join(run, LOCK_NAME))
        except OSError:
            pass
        os.close(lock)


def _send(pidfd: int, signum: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except OSError:
        pass


# ---- from the outside: collect, stop ----------------------------------------


def helper_pid(run: str) -> int | None:
    """The pid of `run`'s live helper, or None."""
    path = os.path.join(run, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def collect(run: str) -> list[str]:
    """Free a killed helper's socket and lock in `run` (one failed open when
    there is none)."""
    path = os.path.join(run, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # alive
        for name in (SOCK_NAME, LOCK_NAME):
            try:
                os.unlink(os.path.join(run, name))
            except FileNotFoundError:
                pass
        return ["helper"]
    finally:
        os.close(fd)


def stop(run: str, timeout: float = 10.0) -> bool:
    """Stop `run`'s helper (SIGTERM: it finishes its running commands, then
    SIGKILL after `timeout`); True if there was one."""
    pid = helper_pid(run)
    if pid is None:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if helper_pid(run) != pid:  # it ended meanwhile (and the pid may be reused)
            return False
        _send(pidfd, signal.SIGTERM)
        import select

        p = select.poll()
        p.register(pidfd, select.POLLIN)
        if not p.poll(timeout * 1000):
            _send(pidfd, signal.SIGKILL)
            p.poll(5000)
    finally:
        os.close(pidfd)
    collect(run)
    return True


def stop_under(base: str) -> list[int]:
    """Stop every helper whose run dir is under `base` (the test session's
    temporary directories); returns their pids."""
    base = os.path.abspath(base).rstrip("/") + "/"
    runs: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"from nsprim.helper import main" not in b" ".join(argv[:3]) or b"--run" not in argv:
            continue
        i = argv.index(b"--run")
        if i + 1 < len(argv):
            run = os.fsdecode(argv[i + 1])
            if (run.rstrip("/") + "/").startswith(base):
                runs.add(run)
    pids: list[int] = []
    for run in sorted(runs):
        pid = helper_pid(run)
        if pid is not None and stop(run):
            pids.append(pid)
    return pids


def main(argv: list[str]) -> int:
    run: str | None = None
    idle = 60.0
    ready: int | None = None
    it = iter(argv)
    try:
        for a in it:
            if a == "--run":
                run = next(it)
            elif a == "--idle":
                idle = float(next(it))
            elif a == "--ready-fd":
                ready = int(next(it))
            else:
                raise ValueError(a)
    except (StopIteration, ValueError):
        print("usage: python -m nsprim.helper --run DIR [--idle SECONDS] [--ready-fd FD]",
              file=sys.stderr)
        return 2
    if run is None or not (idle > 0):
        if ready is not None:
            os.close(ready)
        return 0 if run is not None else 2
    try:
        return serve(run, idle, ready)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.ENOENT):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
