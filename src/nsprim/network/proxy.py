"""A userland proxy for the published ports NAT cannot serve: IPv6 host
addresses (``[::]:8080``, ``[::1]:8080``) in front of a container that has
only an IPv4 address on the bridge (docker's default bridge is IPv4-only,
and docker runs docker-proxy for the same reason).

nftables cannot translate IPv6 to IPv4, and Linux does not DNAT a packet
from ``::1`` out of another interface (there is no ``route_localnet`` for
IPv6), so these ports are served by a socket: the listening socket that
also holds the port (see bridge._hold) accepts, and each connection is
spliced to ``container_ip:port``.  UDP: one upstream socket per client
address, forgotten after a minute without traffic.

One :class:`Proxy` per container serves all its IPv6 ports from one thread:
a selector over the listening sockets, every connection's two non-blocking
sockets, the UDP flows and a stop pipe (no thread per connection).  Data is
passed on as it comes (``recv`` then ``send``; what the other side cannot take
yet waits in a buffer, and that side is not read until it drained: memory
stays bounded); a half-close is passed on as ``shutdown(SHUT_WR)``.  It runs
in the process that holds the container: the caller's (``run()``, the
foreground CLI), or, for a detached container, a process forked by the
supervisor before it execs its shim (:func:`serve_in_process`), which ends
when the container does (its pidfd).

Bounds, against a client that opens connections to a container that does not
accept them: a connection counts from ``accept`` (also while it is still
connecting to the container), at most ``MAX_CONNS`` per container (beyond:
accepted and reset at once); a connect to the container gives up after
``CONNECT_TIMEOUT`` seconds; when the process runs out of fds or buffers
(EMFILE, ENFILE, ENOBUFS, ENOMEM) the proxy stops accepting for
``BACKOFF`` seconds instead of retrying at once.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["Proxy", "Listener", "serve_in_process", "MAX_CONNS"]

_UDP_IDLE = 60.0
_BUF = 262144
MAX_CONNS = 1024  # TCP connections at once per container, connecting ones included
CONNECT_TIMEOUT = 10.0
BACKOFF = 0.25  # seconds without accepting after EMFILE/ENFILE/ENOBUFS/ENOMEM
_MAX_UDP_FLOWS = 1024
_SHORT = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_R, _W = 1, 2
_IN = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
_OUT = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP


class _Poller:
    """epoll, with a datum per fd: `selectors` without its key objects (the
    proxy's hot path is one poll, one recv, one send)."""

    def __init__(self) -> None:
        self.ep = select.epoll(flags=select.EPOLL_CLOEXEC)
        self.data: dict[int, Any] = {}

    @staticmethod
    def _fd(f: socket.socket | int) -> int:
        return f if isinstance(f, int) else f.fileno()

    @staticmethod
    def _mask(events: int) -> int:
        return (select.EPOLLIN if events & _R else 0) | (select.EPOLLOUT if events & _W else 0)

    def register(self, f: socket.socket | int, events: int, data: Any) -> None:
        fd = self._fd(f)
        self.ep.register(fd, self._mask(events))
        self.data[fd] = data

    def modify(self, f: socket.socket | int, events: int, data: Any) -> None:
        fd = self._fd(f)
        self.ep.modify(fd, self._mask(events))
        self.data[fd] = data

    def unregister(self, f: socket.socket | int) -> None:
        fd = self._fd(f)
        del self.data[fd]
        self.ep.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[Any, int]]:
        out = []
        for fd, ev in self.ep.poll(-1 if timeout is None else timeout):
            what = self.data.get(fd)
            if what is not None:
                out.append((what, (_R if ev & _IN else 0) | (_W if ev & _OUT else 0)))
        return out

    def close(self) -> None:
        self.ep.close()


class Listener:
    """A host socket (listening TCP, or bound UDP) and where it leads."""

    def __init__(self, sock: socket.socket, proto: str, target: tuple[str, int]) -> None:
        self.sock = sock
        self.proto = proto
        self.target = target


class _Conn:
    """One proxied TCP connection: the client's socket and the container's,
    what waits to be sent each way, and which sides ended."""

    __slots__ = ("client", "up", "connecting", "deadline", "to_up", "to_client",
                 "c_eof", "u_eof", "c_shut", "u_shut", "masks")

    def __init__(self, client: socket.socket, up: socket.socket, deadline: float) -> None:
        self.client = client
        self.up = up
        self.connecting = True
        self.deadline = deadline
        self.to_up = b""
        self.to_client = b""
        self.c_eof = self.u_eof = False  # read EOF from that side
        self.c_shut = self.u_shut = False  # shut that side for writing
        self.masks = [0, 0]  # registered events: client, up


class Proxy:
    """Serves `listeners` until :meth:`stop` (or `pidfd` becomes readable:
    the process it belongs to has ended)."""

    def __init__(self, listeners: Sequence[Listener], pidfd: int = -1) -> None:
        self.listeners = list(listeners)
        self._pidfd = pidfd
        self._rd, self._wr = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._sel: _Poller | None = None
        self._conns: dict[_Conn, None] = {}  # accepted, oldest first
        self._connecting: dict[_Conn, None] = {}  # of those, still connecting
        self._paused_until = 0.0  # accepting paused (out of fds) until then
        self._buf = bytearray(_BUF)
        self._view = memoryview(self._buf)
        # UDP: (listener index, client address) -> upstream socket, last use
        self._flows: dict[tuple[int, Any], tuple[socket.socket, float]] = {}

    def start(self) -> Proxy:
        self._thread = threading.Thread(target=self.serve, name="nsprim-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection (the listening sockets stay
        the caller's)."""
        try:
            os.write(self._wr, b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None
        for fd in (self._rd, self._wr):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rd = self._wr = -1

    def serve(self) -> None:
        sel = self._sel = _Poller()
        try:
            sel.register(self._rd, _R, "stop")
            if self._pidfd >= 0:
                sel.register(self._pidfd, _R, "stop")
            for i, lst in enumerate(self.listeners):
                sel.register(lst.sock, _R, ("listen", i))
            next_sweep = time.monotonic() + _UDP_IDLE
            while True:
                for what, events in sel.poll(self._timeout()):
                    if what == "stop":
                        return
                    kind = what[0]
                    if kind == "c":
                        self._ready(what[1], True, events)
                    elif kind == "u":
                        self._ready(what[1], False, events)
                    elif kind == "listen":
                        lst = self.listeners[what[1]]
                        if lst.proto == "tcp":
                            self._accept(lst)
                        else:
                            self._udp_in(sel, what[1], lst)
                    elif kind == "flow":
                        self._udp_back(sel, what[1], what[2])
                now = time.monotonic()
                while self._connecting:
                    first = next(iter(self._connecting))
                    if first.deadline > now:
                        break
                    self._close(first)  # the container did not answer in time
                if self._paused_until and now >= self._paused_until:
                    self._pause(False)
                if self._flows and now >= next_sweep:
                    self._sweep(sel)
                    next_sweep = now + _UDP_IDLE / 2
        finally:
            for conn in list(self._conns):
                self._close(conn)
            for up, _ in self._flows.values():
                up.close()
            self._flows.clear()
            self._sel = None
            sel.close()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        out: float | None = _UDP_IDLE / 2 if self._flows else None
        if self._connecting:
            left = next(iter(self._connecting)).deadline - now
            out = left if out is None else min(out, left)
        if self._paused_until:
            left = self._paused_until - now
            out = left if out is None else min(out, left)
        return None if out is None else max(out, 0.0)

    def _pause(self, on: bool) -> None:
        """Stop (or resume) accepting on the TCP listeners."""
        assert self._sel is not None
        self._paused_until = time.monotonic() + BACKOFF if on else 0.0
        for i, lst in enumerate(self.listeners):
            if lst.proto != "tcp":
                continue
            try:
                if on:
                    self._sel.unregister(lst.sock)
                else:
                    self._sel.register(lst.sock, _R, ("listen", i))
            except (KeyError, ValueError, OSError):
                pass

    # ---------------------------------------------------------------- TCP
    def _accept(self, lst: Listener) -> None:
        for _ in range(64):
            try:
                client, _ = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _SHORT:
                    self._pause(True)  # out of fds: wait, do not spin
                    return
                continue  # this connection only (ECONNABORTED, ...)
            if len(self._conns) >= MAX_CONNS:
                _reset(client)
                continue
            try:
                up = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                                   | socket.SOCK_CLOEXEC)
            except OSError as e:
                _reset(client)
                if e.errno in _SHORT:
                    self._pause(True)
                    return
                continue
            client.setblocking(False)
            err = up.connect_ex(lst.target)
            if err not in (0, errno.EINPROGRESS):
                client.close()  # as a refused connect
                up.close()
                continue
            conn = _Conn(client, up, time.monotonic() + CONNECT_TIMEOUT)
            self._conns[conn] = None
            self._connecting[conn] = None
            self._update(conn)

    def _update(self, conn: _Conn) -> None:
        """Register the events each socket of `conn` waits for now."""
        assert self._sel is not None
        if conn.connecting:
            want = (0, _W)
        else:
            want = ((0 if conn.c_eof or conn.to_up else _R) | (_W if conn.to_client else 0),
                    (0 if conn.u_eof or conn.to_client else _R) | (_W if conn.to_up else 0))
        for i, (sock, tag) in enumerate(((conn.client, "c"), (conn.up, "u"))):
            old, new = conn.masks[i], want[i]
            if old == new:
                continue
            if not old:
                self._sel.register(sock, new, (tag, conn))
            elif not new:
                self._sel.unregister(sock)
            else:
                self._sel.modify(sock, new, (tag, conn))
            conn.masks[i] = new

    def _ready(self, conn: _Conn, client_side: bool, events: int) -> None:
        if conn not in self._conns:
            return  # closed by the other socket's event in this round
        if conn.connecting:
            err = conn.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close(conn)  # refused: the client sees its connection end
                return
            conn.connecting = False
            del self._connecting[conn]
            self._update(conn)
            return
        src, dst = (conn.client, conn.up) if client_side else (conn.up, conn.client)
        try:
            if events & _W:
                buf = conn.to_up if not client_side else conn.to_client
                n = src.send(buf)
                if client_side:
                    conn.to_client = buf[n:]
                else:
                    conn.to_up = buf[n:]
            if events & _R:
                got = src.recv_into(self._buf)  # one buffer: the loop is one thread
                if not got:
                    if client_side:
                        conn.c_eof = True
                    else:
                        conn.u_eof = True
                else:
                    data = self._view[:got]
                    try:
                        n = dst.send(data)
                    except BlockingIOError:
                        n = 0
                    if n < got:  # the rest waits (only what the other side refused)
                        if client_side:
                            conn.to_up = bytes(data[n:])
                        else:
                            conn.to_client = bytes(data[n:])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)
            return
        # a side that ended, once all it sent was passed on: shut for writing
        try:
            if conn.c_eof and not conn.to_up and not conn.u_shut:
                conn.up.shutdown(socket.SHUT_WR)
                conn.u_shut = True
            if conn.u_eof and not conn.to_client and not conn.c_shut:
                conn.client.shutdown(socket.SHUT_WR)
                conn.c_shut = True
        except OSError:
            self._close(conn)
            return
        if conn.u_shut and conn.c_shut:
            self._close(conn)
            return
        self._update(conn)

    def _close(self, conn: _Conn) -> None:
        assert self._sel is not None
        self._conns.pop(conn, None)
        self._connecting.pop(conn, None)
        for i, sock in enumerate((conn.client, conn.up)):
            if conn.masks[i]:
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError, OSError):
                    pass
                conn.masks[i] = 0
            sock.close()

    # ---------------------------------------------------------------- UDP
    def _udp_in(self, sel: _Poller, index: int, lst: Listener) -> None:
        try:
            data, peer = lst.sock.recvfrom(_BUF)
        except OSError:
            return
        key = (index, peer)
        flow = self._flows.get(key)
        if flow is None:
            if len(self._flows) >= _MAX_UDP_FLOWS:
                return
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                up.connect(lst.target)
            except OSError:
                up.close()
                return
            up.setblocking(False)
            sel.register(up, _R, ("flow", index, peer))
            flow = (up, 0.0)
        up = flow[0]
        self._flows[key] = (up, time.monotonic())
        try:
            up.send(data)
        except OSError:
            pass

    def _udp_back(self, sel: _Poller, index: int, peer: Any) -> None:
        flow = self._flows.get((index, peer))
        if flow is None:
            return
        up = flow[0]
        try:
            data = up.recv(_BUF)
            self.listeners[index].sock.sendto(data, peer)
        except OSError:
            return
        self._flows[(index, peer)] = (up, time.monotonic())

    def _sweep(self, sel: _Poller) -> None:
        now = time.monotonic()
        for key, (up, last) in list(self._flows.items()):
            if now - last > _UDP_IDLE:
                sel.unregister(up)
                up.close()
                del self._flows[key]


def _reset(sock: socket.socket) -> None:
    """Close `sock` with a reset (a connection refused after accept)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def serve_in_process(listeners: Sequence[Listener], pidfd: int) -> None:
    """Serve `listeners` from a process of their own, forked now, that ends
    when `pidfd` (the container) becomes readable.  Double-forked: the
    caller (a supervisor about to exec its shim) has no child to reap.  The
    process keeps only the listening sockets and the pidfd open."""
    keep = {lst.sock.fileno() for lst in listeners} | {pidfd}
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        if os.fork():
            os._exit(0)
        os.setsid()
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        Proxy(listeners, pidfd).serve()
    finally:
        os._exit(0)
