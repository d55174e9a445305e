"""Container output and input for the API: following a container's log
(what the supervisor's shim writes, so it is the same for a container made
by ``nsprim run -d``), docker's stream framing, the stdin FIFO and the
terminal's master side (taken from the supervisor with ``pidfd_getfd``)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from nsprim.lifecycle import Record, alive, running_in

STDOUT, STDERR = 1, 2


def poll_delay(since: float) -> float:
    """How long to sleep between two looks at a container's files, `since`
    (monotonic) the wait began: short at first -- most waits end within a
    second, and the delay is added to every ``docker run`` -- longer later."""
    waited = time.monotonic() - since
    return 0.001 if waited < 1 else 0.01 if waited < 10 else 0.05


def frame(stream: int, data: bytes) -> bytes:
    """docker's multiplexed framing: [stream, 0, 0, 0, length (big endian 32)]."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def exit_time(rec: Record) -> float | None:
    """When the last run ended (the shim's exit record), None if none."""
    try:
        with open(os.path.join(rec.dir, "exit")) as f:
            return int(f.read().split()[2]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def exit_code_now(rec: Record) -> int | None:
    try:
        with open(os.path.join(rec.dir, "exit")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        st = rec.state
        return st.get("exit_code") if isinstance(st.get("exit_code"), int) else None


def ended_since(rec: Record, t0: float) -> bool:
    """Has a run of `rec` ended after `t0` (or the record gone)?  Decided
    from one read of its state (running_in)."""
    if not os.path.isdir(rec.dir):
        return True
    t = exit_time(rec)
    if t is not None and t >= t0:
        return True
    st = rec.state
    fin = st.get("finished_at")
    if st.get("status") in ("exited", "dead") and isinstance(fin, (int, float)) and fin >= t0:
        return True
    if st.get("status") in ("running", "restarting") and not running_in(st):
        return True  # its supervisor was killed
    return False


def attach_ended(rec: Record, was_running: bool, t0: float) -> bool:
    """Has the run an attach follows (from `t0`) ended: it has, or it was
    not running when the attach came, is not now and is not about to be
    (neither created nor starting).  Each of these is decided from one read
    of the record's state: a start that moved it from ``starting`` to
    ``running`` between two reads once looked like a run that had ended
    before it wrote anything (a short ``docker run`` lost its output)."""
    st = rec.state
    if not was_running and st.get("status") not in ("created", "starting", None) \
            and not running_in(st) and not ended_since(rec, t0):
        return True  # it was not running and is not going to
    return ended_since(rec, t0)


def log_size(rec: Record) -> int:
    try:
        return os.stat(rec.log_path).st_size
    except OSError:
        return 0


def open_log(rec: Record) -> Any:
    """The container's log, opened (made if missing) now: a follower that
    holds it reads all of a short run's output even if an auto-removed
    container's record is gone before it has read it."""
    try:
        fd = os.open(rec.log_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o640)
    except OSError:
        return None
    return os.fdopen(fd, "rb")


class LogTail:
    """A container's log read from byte `offset` on (of `opened`, the log
    opened beforehand, if given), across the shim's rotations: the one log
    follower of ``attach`` (CLI) and of the API's attach and logs."""

    def __init__(self, path: str, offset: int = 0, opened: Any = None) -> None:
        self.path = path
        self.offset = offset
        self.f = opened
        self.buf = b""
        if opened is not None:
            opened.seek(offset)

    def _open(self) -> bool:
        if self.f is None:
            try:
                self.f = open(self.path, "rb")  # noqa: SIM115 - closed by close()
                self.f.seek(self.offset)
            except FileNotFoundError:
                self.f = None
        return self.f is not None

    def lines(self) -> list[bytes]:
        """The whole lines written since the last call ([] if none)."""
        while True:
            data = self.f.read() if self._open() else b""
            if data:
                self.buf += data
                parts = self.buf.split(b"\n")
                self.buf = parts.pop()
                return parts
            if self.f is not None and _rotated(self.f, self.path):
                # the shim rotated the log (--log-opt max-size): what is left
                # of the old file was just read; go on in the new one
                self.f.close()
                self.f, self.offset = None, 0
                continue
            return []

    def rest(self) -> list[bytes]:
        """All that is left, the last line even without its newline (at the
        end of the run)."""
        if not self._open():
            return []
        rest: bytes = self.buf + self.f.read()
        self.buf = b""
        return rest.split(b"\n")

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def _entries(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


async def follow_log(rec: Record, offset: int, ended: Callable[[], bool] | None,
                     opened: Any = None) -> AsyncIterator[dict[str, Any]]:
    """The log's entries from byte `offset` (of `opened`, the log opened
    beforehand, if given); with `ended`, keep following until it says so
    (then read what is left)."""
    since = time.monotonic()
    tail = LogTail(rec.log_path, offset, opened)
    try:
        while True:
            lines = tail.lines()
            if lines:
                for entry in _entries(lines):
                    yield entry
                continue
            if ended is None:
                return
            if ended():
                for entry in _entries(tail.rest()):
                    yield entry
                return
            await asyncio.sleep(poll_delay(since))
    finally:
        tail.close()


def _rotated(f: Any, path: str) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def entry_bytes(entry: dict[str, Any], timestamps: bool = False) -> tuple[int, bytes]:
    text = str(entry.get("log", ""))
    if timestamps:
        text = f"{entry.get('time', '')} {text}"
    stream = STDERR if entry.get("stream") == "stderr" else STDOUT
    return stream, text.encode("utf-8", "surrogateescape")


# ------------------------------------------------------------- input side

_libc: Any = None


def pidfd_getfd(pid: int, start: int | None, target: int) -> int:
    """A duplicate of fd `target` of process (pid, start): how the daemon
    reaches the terminal a container's supervisor holds (root only,
    ptrace-mode access to the supervisor)."""
    global _libc
    if not alive(pid, start):
        raise ProcessLookupError(errno.ESRCH, "the container's supervisor is gone")
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        if not alive(pid, start):
            raise ProcessLookupError(errno.ESRCH, "the container's supervisor is gone")
        fd = int(_libc.syscall(438, pidfd, target, 0))  # SYS_pidfd_getfd
        if fd < 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
        return fd
    finally:
        os.close(pidfd)


def terminal_of(rec: Record) -> int:
    """The master side of a running tty container's terminal (a new fd)."""
    st = rec.state
    fd = st.get("pty_fd")
    if not rec.running or not isinstance(fd, int) or fd < 0:
        raise ProcessLookupError(errno.ESRCH, f"container {rec.id} is not running")
    return pidfd_getfd(int(st["supervisor_pid"]), st.get("supervisor_start"), fd)


def set_winsize(fd: int, h: int, w: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def write_all(fd: int, data: bytes) -> None:
    """Write to a non-blocking fd, waiting while it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
            view = view[n:]
        except BlockingIOError:
            fut: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _wake, fut)
            try:
                await fut
            finally:
                loop.remove_writer(fd)


async def read_some(fd: int) -> bytes:
    """Read from a non-blocking fd; b"" at its end (EIO of a hung-up terminal too)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            fut: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, fut)
            try:
                await fut
            finally:
                loop.remove_reader(fd)
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise


async def pump_input(reader: asyncio.StreamReader, trailing: bytes, fd: int) -> None:
    """Copy the client's bytes to `fd` until the client's side ends."""
    os.set_blocking(fd, False)
    if trailing:
        await write_all(fd, trailing)
    while True:
        data = await reader.read(65536)
        if not data:
            return
        await write_all(fd, data)
