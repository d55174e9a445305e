"""DNS by name on user-defined networks: one small asyncio resolver per host.

docker's embedded DNS, the same shape: a container on a user-defined network
has ``nameserver 127.0.0.11`` (and ``options ndots:0``) in its resolv.conf,
and 127.0.0.11:53 (UDP, and TCP listening) are sockets *in the container's
own network namespace*.  nsprim makes that socket when it attaches the container (it is
in the namespace already) and hands it, with SCM_RIGHTS, to the resolver: no
NAT, no address on the host, nothing a container can reach but its own
socket.  The resolver answers A, AAAA and PTR from the leases of the
networks the container is on (``/run/nsprim-host/networks/<id>/leases.json``,
re-read when the file changes: a container that leaves stops resolving at
once, a new one resolves at once) by name, network alias and short id, and
forwards every other question to the host's resolvers (it runs in the host's
namespace, so loopback resolvers such as systemd-resolved's are reachable).
``--internal`` networks forward nothing.

Control plane: a unix datagram socket ``/run/nsprim-host/dns.sock`` (mode
0600, in a 0700 directory of the host's filesystem; no container sees it).
Messages are small JSON objects: ``join`` (a container's socket and a lease
file), ``leave`` (a lease file, or all).  The first ``join`` starts the
resolver (``python -m nsprim.network.dns``, its own session: it outlives the
command that started it); it exits when no container has been left for
``IDLE`` seconds, under the start lock, so no ``join`` is lost.

Wire format: dnslib (pure Python, BSD, small: the resolver stays ~2 MiB over
the interpreter).  Bounds: queries over 512 bytes or with more than one
question are dropped, upstream answers over 4096 bytes are dropped.

Forwarding, hardened against a hostile container and a spoofing network:

- each container has its own quota of forwarded questions waiting
  (``MAX_PENDING_CLIENT``), the host a cap (``MAX_PENDING``); a question
  waits at most ``FORWARD_TIMEOUT`` seconds.  A container over its quota
  loses its own oldest question; when the host's cap is reached, the
  container with the most questions waiting loses its oldest.  A container
  flooding names the upstream never answers only hurts itself.
- each forwarded question gets a socket of its own, connected to the
  upstream (so a random source port chosen by the kernel, and the kernel
  drops datagrams from any other address or port), and a random 16-bit id
  (``secrets``); an answer is taken only if its id, its source address and
  port and its question (name case-insensitively, type, class) are the
  question's.  Anything else is dropped, and the real answer is still
  awaited.

The control socket's name carries the protocol's version (``dns2.sock``): a
resolver of an older nsprim keeps serving its containers while a newer one
serves the new ones.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence

from nsprim.state import FileLock, private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.namespace import Namespace

__all__ = ["join", "leave", "control_path", "upstreams", "resolver_pid"]

HOST_DIR = "/run/nsprim-host"
IDLE = 2.0
MAX_PENDING = 512  # forwarded questions waiting, host-wide
MAX_PENDING_CLIENT = 48  # ... per container
FORWARD_TIMEOUT = 2.0
DNS_IP = "127.0.0.11"
MAX_TCP_CLIENT = 8  # DNS-over-TCP connections at once per container
MAX_TCP = 256  # ... on the host
TCP_IDLE = 5.0  # seconds a DNS-over-TCP connection may wait for its next query
_NAME = "dns2"  # control socket, pid and lock files: the protocol's version
TTL = 600
_MAX_QUERY = 512
_MAX_ANSWER = 4096


def control_path() -> str:
    return os.path.join(HOST_DIR, _NAME + ".sock")


def _lock_path() -> str:
    return os.path.join(private_dir(HOST_DIR), _NAME + ".lock")


def resolver_pid() -> int | None:
    try:
        with open(os.path.join(HOST_DIR, _NAME + ".pid")) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                return None  # dead, not yet reaped
        return pid
    except (OSError, ValueError):
        return None


def upstreams() -> list[str]:
    """The resolvers names are forwarded to: ``NSPRIM_DNS_UPSTREAM``
    (``IP[:PORT],...``), else the host's resolv.conf nameservers."""
    env = os.environ.get("NSPRIM_DNS_UPSTREAM")
    if env is not None:
        return [x.strip() for x in env.split(",") if x.strip()]
    out = []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                p = line.split()
                if p[:1] == ["nameserver"] and len(p) > 1:
                    out.append(p[1])
    except OSError:
        pass
    return out[:3]


# ------------------------------------------------------------------ client

_ctl: socket.socket | None = None


def _send(msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    global _ctl
    if _ctl is None:
        _ctl = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    data = json.dumps(msg).encode()
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
             b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds))] if fds else []
    _ctl.sendmsg([data], anc, 0, control_path())


def _send_or_start(msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    try:
        _send(msg, fds)
        return
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    with FileLock(_lock_path()):
        try:
            _send(msg, fds)
            return
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        _start()
        _send(msg, fds)


def ensure_running() -> None:
    """Start the resolver if it is gone while containers are left (it was
    killed): the new one adopts their namespaces (Resolver.adopt)."""
    if resolver_pid() is not None:
        return
    with FileLock(_lock_path()):
        if resolver_pid() is None:
            _start()


# the resolver needs no TLS: asyncio without ssl (OpenSSL) is ~6 MiB smaller.
# It starts with -S and this process's import path: the site module's .pth
# files (a distro's or a sandbox's hooks, e.g. one importing certifi, ~40 ms
# here) are not run again, and it imports what this process would.
def _main_code() -> str:
    # the directory nsprim is imported from (nsprim/network/dns.py: three up)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cwd = os.getcwd()  # `python -m` puts the caller's cwd first: not for a root daemon
    path = [here] + [p for p in sys.path if p and p not in (cwd, here)]
    return (f"import sys; sys.path[:] = {path!r}; "
            "sys.modules['ssl'] = None; "
            "from nsprim.network.dns import main; sys.exit(main())")


def _start() -> None:
    """Start the resolver (under the start lock) and wait for its socket."""
    import subprocess

    try:
        os.unlink(control_path())
    except FileNotFoundError:
        pass
    log = os.open(os.path.join(HOST_DIR, "dns.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        # setsid --fork: a session of its own, and a child of init, not of
        # this process (which may be a long-lived supervisor)
        subprocess.run(["setsid", "--fork", sys.executable, "-S", "-c", _main_code()],
                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                       cwd="/", check=True)
    finally:
        os.close(log)
    deadline = time.monotonic() + 10
    while not os.path.exists(control_path()):
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, "the DNS resolver did not start")
        time.sleep(0.002)


def _dns_sockets(netns: Namespace) -> list[socket.socket]:
    """UDP and TCP (listening) 127.0.0.11:53 in `netns` ([]: it has them
    already)."""
    def make() -> tuple[socket.socket, socket.socket]:
        return (socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC),
                socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC))

    u, t = netns.run_in(make)
    try:
        u.bind((DNS_IP, 53))
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((DNS_IP, 53))
        t.listen(16)
    except OSError as e:
        u.close()
        t.close()
        if e.errno == errno.EADDRINUSE:
            return []
        raise
    return [u, t]


def join(container_id: str, leases: str, netns: Namespace, *, internal: bool = False,
         upstream: Sequence[str] | None = None) -> None:
    """Serve `leases`' names to the container in `netns` at 127.0.0.11;
    other names are forwarded to `upstream` (the container's own: its
    ``--dns``, or the host's resolvers when it started; None: :func:`upstreams`)."""
    socks = _dns_sockets(netns)
    ups = [] if internal else (list(upstream) if upstream is not None else upstreams())
    try:
        _send_or_start({"op": "join", "cid": container_id, "leases": leases,
                        "internal": internal, "upstream": ups},
                       [s.fileno() for s in socks])
    finally:
        for s in socks:
            s.close()


def leave(container_id: str, leases: str | None = None) -> None:
    """The container left the network of `leases` (None: every network):
    its names are gone already (the lease file); the resolver drops its
    socket when it is on no network left (so its namespace can go)."""
    try:
        _send({"op": "leave", "cid": container_id, "leases": leases})
    except OSError:
        pass  # no resolver: nothing to tell


# ------------------------------------------------------------------ server

class _Table:
    """Names of one network's leases, re-read when the file changes."""

    __slots__ = ("path", "key", "names", "ptr", "ids")

    def __init__(self, path: str) -> None:
        self.path = path
        self.key: tuple[int, int, int] | None = None
        self.names: dict[str, tuple[list[str], list[str]]] = {}
        self.ptr: dict[str, str] = {}
        self.ids: set[str] = set()

    def fresh(self) -> _Table:
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = (0, 0, 0)
        if key != self.key:
            self.key = key
            self._load()
        return self

    def fresh_leases(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read(4 << 20))
            leases = data.get("leases", {})
        except (OSError, ValueError, AttributeError):
            leases = {}
        return leases if isinstance(leases, dict) else {}

    def _load(self) -> None:
        self.names, self.ptr, self.ids = build_table(self.fresh_leases())


def build_table(leases: dict[str, Any]) -> tuple[dict[str, tuple[list[str], list[str]]],
                                                  dict[str, str], set[str]]:
    """name -> (IPv4 addresses, IPv6 addresses); reverse name -> name; ids.
    Names: the container's name, its aliases, its short id (lower case)."""
    import ipaddress

    names: dict[str, tuple[list[str], list[str]]] = {}
    ptr: dict[str, str] = {}
    ids: set[str] = set()
    for addr, lease in leases.items():
        if not isinstance(lease, dict):
            continue
        cid = str(lease.get("id", ""))
        ids.add(cid)
        aliases = lease.get("aliases") or []
        cands = [lease.get("name")] + (aliases if isinstance(aliases, list) else []) + \
            [cid[:12]]
        ip6 = lease.get("ip6")
        first = None
        for nm in cands:
            if not isinstance(nm, str) or not nm:
                continue
            key = nm.lower().rstrip(".")
            first = first or key
            v4, v6 = names.setdefault(key, ([], []))
            if addr not in v4:
                v4.append(addr)
            if isinstance(ip6, str) and ip6 and ip6 not in v6:
                v6.append(ip6)
        if first is not None:
            try:
                ptr[ipaddress.ip_address(addr).reverse_pointer] = first
                if isinstance(ip6, str) and ip6:
                    ptr[ipaddress.ip_address(ip6).reverse_pointer] = first
            except ValueError:
                pass
    return names, ptr, ids


class _Client:
    __slots__ = ("cid", "sock", "tcp", "tcp_conns", "paths", "internal", "upstream",
                 "pending")

    def __init__(self, cid: str, sock: socket.socket, tcp: socket.socket | None) -> None:
        self.cid = cid
        self.sock = sock
        self.tcp = tcp  # listening at 127.0.0.11:53/tcp in its namespace
        self.tcp_conns: dict[socket.socket, Any] = {}  # connection -> its task
        self.paths: set[str] = set()
        self.internal = False
        self.upstream: list[tuple[str, int]] = []
        # its forwarded questions waiting, oldest first (by socket fd)
        self.pending: dict[int, _Pending] = {}


class _Pending:
    """One forwarded question: its own upstream socket, the id it was sent
    with, and what its answer must match."""

    __slots__ = ("client", "addr", "old_id", "new_id", "deadline", "up", "sock", "question")

    def __init__(self, client: _Client, addr: Any, old_id: int, new_id: int, deadline: float,
                 up: tuple[str, int], sock: socket.socket,
                 question: tuple[str, int, int]) -> None:
        self.client = client
        self.addr = addr
        self.old_id = old_id
        self.new_id = new_id
        self.deadline = deadline
        self.up = up
        self.sock = sock
        self.question = question


def question_of(data: bytes, *, answer: bool) -> tuple[int, tuple[str, int, int]] | None:
    """(id, (lower-case name, type, class)) of a DNS message with exactly one
    question, that is an answer (QR set) or a query as `answer` says; None
    for anything else (garbage included)."""
    from dnslib.dns import DNSHeader, DNSQuestion
    from dnslib.label import DNSBuffer

    try:
        buf = DNSBuffer(data)
        h = DNSHeader.parse(buf)
        if h.q != 1 or bool(h.qr) != answer:
            return None
        q = DNSQuestion.parse(buf)
        return h.id, (str(q.qname).rstrip(".").lower(), int(q.qtype), int(q.qclass))
    except Exception:  # dnslib raises several kinds on garbage
        return None


def _parse_upstream(items: Any) -> list[tuple[str, int]]:
    import ipaddress

    out = []
    for item in items if isinstance(items, list) else []:
        text = str(item)
        host, port = text, 53
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
        elif text.count(":") == 1:
            host, _, p = text.partition(":")
            port = int(p) if p.isdigit() else 53
        try:
            ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            continue
        out.append((host, port))
    return out[:3]


class Resolver:
    def __init__(self, ctl: socket.socket) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.ctl = ctl
        self.clients: dict[str, _Client] = {}
        self.tables: dict[str, _Table] = {}
        self.npending = 0  # forwarded questions waiting, all clients
        self.idle_since: float | None = time.monotonic()

    # -------------------------------------------------------- control
    def on_control(self) -> None:
        while True:
            try:
                data, anc, _, _ = self.ctl.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
            except BlockingIOError:
                return
            fds: list[int] = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                            for i in range(0, usable, 4)]
            try:
                self.control(json.loads(data), fds)
            except (ValueError, TypeError, AttributeError, KeyError, OSError):
                for fd in fds:
                    os.close(fd)

    def control(self, msg: dict[str, Any], fds: list[int]) -> None:
        cid = str(msg["cid"])
        if msg.get("op") == "join":
            c = self.clients.get(cid)
            if fds:
                s = socket.socket(fileno=fds[0])
                t = socket.socket(fileno=fds[1]) if len(fds) > 1 else None
                for fd in fds[2:]:
                    os.close(fd)
                s.setblocking(False)
                if c is not None:
                    self.drop(cid)
                c = _Client(cid, s, t)
                self.clients[cid] = c
                self.loop.add_reader(s.fileno(), self.on_query, c)
                if t is not None:
                    t.setblocking(False)
                    self.loop.add_reader(t.fileno(), self.on_tcp, c)
            if c is None:
                return
            path = str(msg["leases"])
            c.paths.add(path)
            self.tables.setdefault(path, _Table(path))
            c.internal = c.internal or bool(msg.get("internal"))
            c.upstream = [] if c.internal else _parse_upstream(msg.get("upstream"))
            self.idle_since = None
        elif msg.get("op") == "leave":
            c = self.clients.get(cid)
            if c is None:
                return
            if msg.get("leases") is not None:
                c.paths.discard(str(msg["leases"]))
            if msg.get("leases") is None or not c.paths:
                self.drop(cid)

    def drop(self, cid: str) -> None:
        c = self.clients.pop(cid, None)
        if c is not None:
            for p in list(c.pending.values()):
                self.finish(p)
            self.loop.remove_reader(c.sock.fileno())
            c.sock.close()
            if c.tcp is not None:
                self.loop.remove_reader(c.tcp.fileno())
                c.tcp.close()
            for conn, task in list(c.tcp_conns.items()):
                task.cancel()
                conn.close()
            c.tcp_conns.clear()
        if not self.clients:
            self.idle_since = time.monotonic()

    # -------------------------------------------------------- queries
    def on_query(self, c: _Client) -> None:
        for _ in range(64):
            try:
                data, addr = c.sock.recvfrom(_MAX_QUERY + 1)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(data) > _MAX_QUERY or len(data) < 12:
                continue
            try:
                out = self.answer(c, data)
            except Exception:  # a malformed packet: dropped, never fatal
                continue
            if out:
                try:
                    c.sock.sendto(out, addr)
                except OSError:
                    pass
            elif out is None and c.upstream:
                self.forward(c, data, addr)

    def lookup(self, c: _Client, name: str) -> tuple[list[str], list[str]] | None:
        v4: list[str] = []
        v6: list[str] = []
        hit = False
        for p in c.paths:
            t = self.tables[p].fresh()
            got = t.names.get(name)
            if got is not None:
                hit = True
                v4 += got[0]
                v6 += got[1]
        return (v4, v6) if hit else None

    def answer(self, c: _Client, data: bytes) -> bytes | None:
        """The answer, or None to forward the question."""
        from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSRecord

        q = DNSRecord.parse(data)
        if q.header.qr:
            return b""  # an answer sent to us: dropped
        if q.header.opcode != 0:
            return _refused(q)
        if len(q.questions) != 1:
            return _refused(q, RCODE.FORMERR)
        qname = q.q.qname
        name = str(qname).rstrip(".").lower()
        qtype = q.q.qtype
        r = q.reply()
        if qtype == QTYPE.PTR:
            for p in c.paths:
                target = self.tables[p].fresh().ptr.get(name)
                if target is not None:
                    r.add_answer(RR(qname, QTYPE.PTR, rdata=PTR(target + "."), ttl=TTL))
                    return bytes(r.pack())
        else:
            got = self.lookup(c, name)
            if got is not None:
                if qtype in (QTYPE.A, QTYPE.ANY):
                    for ip in got[0]:
                        r.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=TTL))
                if qtype in (QTYPE.AAAA, QTYPE.ANY):
                    for ip in got[1]:
                        r.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=TTL))
                return bytes(r.pack())  # NOERROR, maybe no data (docker's answer)
        if c.internal or not c.upstream:
            r.header.rcode = RCODE.NXDOMAIN if c.internal else RCODE.SERVFAIL
            return bytes(r.pack())
        return None

    def forward(self, c: _Client, data: bytes, addr: Any) -> None:
        """Send the query `data` of `c` to its upstream, from a socket of its
        own (a random source port) with a random id, within the quotas."""
        q = question_of(data, answer=False)
        if q is None:
            return
        now = time.monotonic()
        if len(c.pending) >= MAX_PENDING_CLIENT:
            self.expire(c, now)
            if len(c.pending) >= MAX_PENDING_CLIENT:
                self.finish(next(iter(c.pending.values())))  # its own oldest
        if self.npending >= MAX_PENDING:
            for other in self.clients.values():
                self.expire(other, now)
            if self.npending >= MAX_PENDING:
                # the container with the most waiting (maybe c) gives up its oldest
                worst = max(self.clients.values(), key=lambda x: len(x.pending))
                if worst.pending:
                    self.finish(next(iter(worst.pending.values())))
        up = c.upstream[0]
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in up[0] else socket.AF_INET,
                                 socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        except OSError:
            return  # out of fds: the client retries
        new_id = secrets.randbits(16)
        try:
            sock.connect(up)  # a kernel-chosen random port; only `up` gets through
            sock.send(new_id.to_bytes(2, "big") + data[2:])
        except OSError:
            sock.close()
            return
        p = _Pending(c, addr, q[0], new_id, now + FORWARD_TIMEOUT, up, sock, q[1])
        c.pending[sock.fileno()] = p
        self.npending += 1
        self.loop.add_reader(sock.fileno(), self.on_upstream, p)

    def finish(self, p: _Pending) -> None:
        if p.client.pending.pop(p.sock.fileno(), None) is not None:
            self.npending -= 1
            self.loop.remove_reader(p.sock.fileno())
            p.sock.close()

    def on_upstream(self, p: _Pending) -> None:
        for _ in range(16):
            try:
                data, src = p.sock.recvfrom(_MAX_ANSWER + 1)
            except OSError:
                return
            if len(data) < 12 or len(data) > _MAX_ANSWER:
                continue
            if (_norm(src[0]), src[1]) != (_norm(p.up[0]), p.up[1]):
                continue  # not from the upstream it was sent to
            got = question_of(data, answer=True)
            if got is None or got[0] != p.new_id or got[1] != p.question:
                continue  # not the answer to this question: forged or stray
            self.finish(p)
            c = p.client
            if self.clients.get(c.cid) is not c:
                return
            try:
                c.sock.sendto(p.old_id.to_bytes(2, "big") + data[2:], p.addr)
            except OSError:
                pass
            return

    # -------------------------------------------------------- DNS over TCP
    def on_tcp(self, c: _Client) -> None:
        """A connection to 127.0.0.11:53/tcp: served by a task of its own, at
        most MAX_TCP_CLIENT at once per container and MAX_TCP on the host
        (beyond: closed)."""
        assert c.tcp is not None
        for _ in range(16):
            try:
                conn, _ = c.tcp.accept()
            except OSError:
                return
            if len(c.tcp_conns) >= MAX_TCP_CLIENT or self.clients.get(c.cid) is not c or \
                    sum(len(x.tcp_conns) for x in self.clients.values()) >= MAX_TCP:
                conn.close()
                continue
            conn.setblocking(False)
            c.tcp_conns[conn] = self.loop.create_task(self.serve_tcp(c, conn))

    async def serve_tcp(self, c: _Client, conn: socket.socket) -> None:
        """Length-prefixed queries (RFC 1035 4.2.2, RFC 7766), answered in
        order until the client closes or is idle for TCP_IDLE seconds."""
        import asyncio

        try:
            while True:
                head = await asyncio.wait_for(_recv_exact(self.loop, conn, 2), TCP_IDLE)
                n = int.from_bytes(head, "big")
                if n < 12 or n > _MAX_QUERY:
                    return
                data = await asyncio.wait_for(_recv_exact(self.loop, conn, n), TCP_IDLE)
                try:
                    out = self.answer(c, data)
                except Exception:  # a malformed query: the connection ends
                    return
                if out is None and c.upstream:
                    out = await self.forward_tcp(c, data)
                if not out:
                    return
                await self.loop.sock_sendall(conn, len(out).to_bytes(2, "big") + out)
        except (OSError, EOFError, asyncio.TimeoutError):
            pass
        finally:
            if c.tcp_conns.pop(conn, None) is not None:
                conn.close()

    async def forward_tcp(self, c: _Client, data: bytes) -> bytes | None:
        """Ask the upstream over TCP (an answer too large for UDP is why a
        client asks over TCP), with a random id; the answer must match the
        id and the question, and is at most 65535 bytes (the length field)."""
        import asyncio

        q = question_of(data, answer=False)
        if q is None:
            return None
        up = c.upstream[0]
        s = socket.socket(socket.AF_INET6 if ":" in up[0] else socket.AF_INET,
                          socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        new_id = secrets.randbits(16)
        try:
            async def ask() -> bytes:
                await self.loop.sock_connect(s, up)
                msg = new_id.to_bytes(2, "big") + data[2:]
                await self.loop.sock_sendall(s, len(msg).to_bytes(2, "big") + msg)
                n = int.from_bytes(await _recv_exact(self.loop, s, 2), "big")
                return await _recv_exact(self.loop, s, n)

            answer = await asyncio.wait_for(ask(), FORWARD_TIMEOUT)
        except (OSError, EOFError, asyncio.TimeoutError):
            return None
        finally:
            s.close()
        got = question_of(answer, answer=True)
        if got is None or got[0] != new_id or got[1] != q[1]:
            return None
        return q[0].to_bytes(2, "big") + answer[2:]

    def expire(self, c: _Client, now: float) -> None:
        for p in list(c.pending.values()):
            if p.deadline >= now:
                break  # oldest first: the rest are younger
            self.finish(p)

    # -------------------------------------------------------- housekeeping
    def tick(self) -> None:
        """Every half second: expired forwards, containers whose leases are
        gone (a killed owner's, collected), and the idle exit."""
        now = time.monotonic()
        for c in self.clients.values():
            self.expire(c, now)
        for cid, c in list(self.clients.items()):
            c.paths = {p for p in c.paths if cid in self.tables[p].fresh().ids}
            if not c.paths:
                self.drop(cid)
        used = {p for c in self.clients.values() for p in c.paths}
        for p in [p for p in self.tables if p not in used]:
            del self.tables[p]
        if self.idle_since is not None and now - self.idle_since >= IDLE and self.quit():
            self.loop.stop()
            return
        self.loop.call_later(0.5, self.tick)

    def quit(self) -> bool:
        """Leave, unless a join came in meanwhile (under the start lock: a
        client that finds no socket starts a new resolver after this)."""
        with FileLock(_lock_path()):
            try:
                os.unlink(control_path())
            except FileNotFoundError:
                pass
            self.on_control()
            if self.clients:
                self.ctl.close()
                self.ctl = _bind_control()
                self.loop.add_reader(self.ctl.fileno(), self.on_control)
                return False
            try:
                os.unlink(os.path.join(HOST_DIR, _NAME + ".pid"))
            except FileNotFoundError:
                pass
        return True

    def adopt(self) -> list[str]:
        """The containers on the host's networks that have no resolver socket
        (the resolver before this one was killed): each one's namespace is
        found by its inode among the host's processes, and a new socket at
        127.0.0.11:53 is made in it.  Names are forwarded to the upstreams of
        its lease (the container's own), else of this process's environment."""
        from nsprim.namespace import Namespace

        wanted: dict[int, tuple[str, str, bool, Any]] = {}
        base = os.path.join(HOST_DIR, "networks")
        try:
            nets = os.listdir(base)
        except OSError:
            return []
        for nid in nets:
            path = os.path.join(base, nid, "leases.json")
            for lease in (_Table(path).fresh_leases()).values():
                if isinstance(lease, dict) and isinstance(lease.get("netns"), int):
                    cid = str(lease.get("id", ""))
                    wanted.setdefault(lease["netns"], (cid, path, bool(lease.get("internal")),
                                                       lease.get("upstream")))
                    if cid in self.clients:
                        self.clients[cid].paths.add(path)
        if not wanted:
            return []
        pids: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ino = os.stat(f"/proc/{entry}/ns/net").st_ino
                except OSError:
                    continue
                if ino in wanted:
                    pids.setdefault(ino, int(entry))
        out = []
        for ino, pid in pids.items():
            cid, path, internal, ups = wanted[ino]
            if cid in self.clients:
                continue
            try:
                ns = Namespace.of(pid, "net")
                try:
                    if os.fstat(ns.fd).st_ino != ino:
                        continue
                    socks = _dns_sockets(ns)
                finally:
                    ns.close()
            except OSError:
                continue
            if not socks:
                continue
            self.control({"op": "join", "cid": cid, "leases": path, "internal": internal,
                          "upstream": [] if internal else
                          (ups if isinstance(ups, list) else upstreams())},
                         [sk.detach() for sk in socks])
            for other in wanted.values():  # its other networks
                if other[0] == cid:
                    self.clients[cid].paths.add(other[1])
                    self.tables.setdefault(other[1], _Table(other[1]))
            out.append(cid)
        return out

    def run(self) -> None:
        self.loop.add_reader(self.ctl.fileno(), self.on_control)
        self.loop.call_later(0.5, self.tick)
        self.loop.run_forever()


async def _recv_exact(loop: Any, sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        got = await loop.sock_recv(sock, n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return buf


def _norm(host: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return host


def _refused(q: Any, code: int | None = None) -> bytes:
    from dnslib import RCODE

    r = q.reply()
    r.header.rcode = RCODE.REFUSED if code is None else code
    return bytes(r.pack())


def _bind_control() -> socket.socket:
    private_dir(HOST_DIR)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(control_path() + ".new")
    finally:
        os.umask(old)
    os.rename(control_path() + ".new", control_path())
    s.setblocking(False)
    return s


def main() -> int:
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:  # a socket per forwarded question: room for all of them
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4 * MAX_PENDING + 1024
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (want if hard == resource.RLIM_INFINITY else min(want, hard),
                                hard))
    except (OSError, ValueError):
        pass
    # the pid first: a starter that sees the socket sees this pid
    private_dir(HOST_DIR)
    with open(os.path.join(HOST_DIR, _NAME + ".pid.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.rename(os.path.join(HOST_DIR, _NAME + ".pid.tmp"), os.path.join(HOST_DIR, _NAME + ".pid"))
    ctl = _bind_control()
    r = Resolver(ctl)
    r.adopt()
    r.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
