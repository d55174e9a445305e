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

One :class:`Proxy` per container serves all its IPv6 ports from one thread
(a selector over the listening sockets and a stop pipe) plus two small
threads per TCP connection (blocking ``recv``/``sendall``; a half-close is
passed on as ``shutdown(SHUT_WR)``).  It runs in the process that holds the
container: the caller's (``run()``, the foreground CLI), or, for a detached
container, a process forked by the supervisor before it execs its shim
(:func:`serve_in_process`), which ends when the container does (its pidfd).
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["Proxy", "Listener", "serve_in_process"]

_UDP_IDLE = 60.0
_BUF = 65536
_MAX_CONNS = 4096  # TCP connections at once per container (each two threads)
_MAX_UDP_FLOWS = 1024


class Listener:
    """A host socket (listening TCP, or bound UDP) and where it leads."""

    def __init__(self, sock: socket.socket, proto: str, target: tuple[str, int]) -> None:
        self.sock = sock
        self.proto = proto
        self.target = target


def _pump(src: socket.socket, dst: socket.socket, done: threading.Semaphore) -> None:
    try:
        while True:
            data = src.recv(_BUF)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done.release()


class Proxy:
    """Serves `listeners` until :meth:`stop` (or `pidfd` becomes readable:
    the process it belongs to has ended)."""

    def __init__(self, listeners: Sequence[Listener], pidfd: int = -1) -> None:
        self.listeners = list(listeners)
        self._pidfd = pidfd
        self._rd, self._wr = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
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
        with self._lock:
            for c in list(self._conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for fd in (self._rd, self._wr):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rd = self._wr = -1

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._rd, selectors.EVENT_READ, "stop")
            if self._pidfd >= 0:
                sel.register(self._pidfd, selectors.EVENT_READ, "stop")
            for i, lst in enumerate(self.listeners):
                sel.register(lst.sock, selectors.EVENT_READ, ("listen", i))
            next_sweep = time.monotonic() + _UDP_IDLE
            while True:
                for key, _ in sel.select(timeout=_UDP_IDLE / 2 if self._flows else None):
                    what = key.data
                    if what == "stop":
                        return
                    if what[0] == "listen":
                        lst = self.listeners[what[1]]
                        if lst.proto == "tcp":
                            self._accept(lst)
                        else:
                            self._udp_in(sel, what[1], lst)
                    elif what[0] == "flow":
                        self._udp_back(sel, what[1], what[2])
                if self._flows and time.monotonic() >= next_sweep:
                    self._sweep(sel)
                    next_sweep = time.monotonic() + _UDP_IDLE / 2
        finally:
            for up, _ in self._flows.values():
                up.close()
            self._flows.clear()
            sel.close()

    # ---------------------------------------------------------------- TCP
    def _accept(self, lst: Listener) -> None:
        try:
            client, _ = lst.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError:
            return
        with self._lock:
            full = len(self._conns) >= 2 * _MAX_CONNS
        if full:
            client.close()
            return
        threading.Thread(target=self._connection, args=(client, lst.target),
                         name="nsprim-proxy-conn", daemon=True).start()

    def _connection(self, client: socket.socket, target: tuple[str, int]) -> None:
        client.setblocking(True)
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            client.close()  # the container is not listening: as a refused connect
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.update((client, upstream))
        done = threading.Semaphore(0)
        back = threading.Thread(target=_pump, args=(upstream, client, done), daemon=True,
                                name="nsprim-proxy-conn")
        back.start()
        _pump(client, upstream, done)
        done.acquire()
        done.acquire()
        with self._lock:
            self._conns.difference_update((client, upstream))
        client.close()
        upstream.close()

    # ---------------------------------------------------------------- UDP
    def _udp_in(self, sel: selectors.BaseSelector, index: int, lst: Listener) -> None:
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
            sel.register(up, selectors.EVENT_READ, ("flow", index, peer))
            flow = (up, 0.0)
        up = flow[0]
        self._flows[key] = (up, time.monotonic())
        try:
            up.send(data)
        except OSError:
            pass

    def _udp_back(self, sel: selectors.BaseSelector, index: int, peer: Any) -> None:
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

    def _sweep(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for key, (up, last) in list(self._flows.items()):
            if now - last > _UDP_IDLE:
                sel.unregister(up)
                up.close()
                del self._flows[key]


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
