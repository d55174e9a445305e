"""User-defined networks, attacked from a container:

- the DNS resolver's control plane (a unix socket on the host) is out of
  reach, and the resolver listens on no address of the host or the bridge;
- a container with NET_ADMIN that routes itself towards another network's
  subnet still cannot reach its containers, nor the loopback of the host;
- hostile DNS packets (garbage, oversized, many questions, compression loops,
  a flood of questions to forward) cannot grow the resolver or stop it;
- a container (default capabilities: CAP_NET_RAW) that forges the source
  address of its packets (spoof.c, a raw socket) reaches neither another
  container nor the host with them, on the default bridge or a network;
- a container flooding questions the upstream never answers does not starve
  the forwarding of containers on other networks (a quota per container);
- forged upstream answers (right id from another port, or with another
  question) are not taken; each forwarded question has a port and a random
  id of its own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nsprim.namespace import Namespace
from nsprim.network import dns

from ..conftest import need
from ..test_networks import FakeUpstream, Root, _make_root


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    u = FakeUpstream()
    yield u
    u.close()


@pytest.fixture
def root(tmp_path: Path, rootfs: str, upstream: FakeUpstream) -> Iterator[Root]:
    yield from _make_root(tmp_path / "a", rootfs, upstream)


def _pid(root: Root, ctr: str) -> int:
    return int(root.ok("inspect", "-f", "{{.State.Pid}}", ctr).strip())


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_control_plane_and_host_side_out_of_reach(root: Root) -> None:
    root.ok("network", "create", "n")
    root.run_d("c", "--network", "n")
    assert os.path.exists(dns.control_path())
    st = os.stat(dns.control_path())
    assert st.st_mode & 0o077 == 0 and st.st_uid == 0
    p = root.sh("c", f"ls {os.path.dirname(dns.control_path())}")
    assert p.returncode != 0
    gw = json.loads(root.ok("network", "inspect", "n"))[0]["IPAM"]["Config"][0]["Gateway"]
    # the resolver has no socket on the host's side: the gateway answers no DNS
    p = root.sh("c", f"nslookup -timeout=1 -retry=0 c {gw}")
    assert p.returncode != 0 and "Address:" not in p.stdout.split("\n\n", 1)[-1]
    # and the 127.0.0.11 a container sees is its own namespace's
    p = root.sh("c", "nslookup c 127.0.0.11")
    assert p.returncode == 0


def test_a_routing_container_reaches_no_other_network(root: Root) -> None:
    root.ok("network", "create", "a")
    root.ok("network", "create", "b")
    root.run_d("victim", "--network", "b", cmd=("httpd", "-f", "-p", "80", "-h", "/etc"))
    root.run_d("attacker", "--network", "a", "--cap-add", "NET_ADMIN")
    vip = root.ip_of("victim", "b")
    info = json.loads(root.ok("network", "inspect", "a"))[0]
    gw = info["IPAM"]["Config"][0]["Gateway"]
    bnet = json.loads(root.ok("network", "inspect", "b"))[0]["IPAM"]["Config"][0]["Subnet"]
    root.sh("attacker", f"ip route add {bnet} via {gw}")
    assert root.sh("attacker", f"timeout 3 wget -qO- http://{vip}/hostname").returncode != 0
    assert root.sh("attacker", f"ping -c1 -W1 {vip}").returncode != 0
    # the host's loopback through the bridge (route_localnet): dropped
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    try:
        root.sh("attacker", f"ip route add 127.0.0.0/8 via {gw} dev eth0 table 100; "
                            "ip rule add to 127.0.0.1 lookup 100 pref 10")
        root.sh("attacker", f"timeout 2 nc 127.0.0.1 {port} </dev/null")
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


def test_hostile_queries_cannot_grow_the_resolver(root: Root, tmp_path: Path) -> None:
    from dnslib import DNSRecord

    # names to forward go to a loopback port where nothing answers: every one
    # waits in the resolver's table until it expires
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    root.env["NSPRIM_DNS_UPSTREAM"] = f"127.0.0.1:{dead.getsockname()[1]}"
    root.ok("network", "create", "n")
    root.run_d("target", "--network", "n")
    root.run_d("hostile", "--network", "n")
    pid = dns.resolver_pid()
    assert pid is not None
    ns = Namespace.of(_pid(root, "hostile"), "net")
    s = ns.run_in(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    ns.close()
    s.connect(("127.0.0.11", 53))
    s.settimeout(2)

    def ask(name: str) -> bytes:
        s.send(DNSRecord.question(name).pack())
        return s.recv(4096)

    assert DNSRecord.parse(ask("target")).rr  # it answers
    time.sleep(0.3)
    before = _rss_kib(pid)
    loop = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
    many = DNSRecord.question("target")
    many.add_question(*DNSRecord.question("hostile").questions)
    hostile = [os.urandom(n) for n in (3, 12, 40, 511)] + [b"\0" * 4000, loop,
                                                           many.pack()]
    for i in range(20000):
        s.send(hostile[i % len(hostile)])
        if i % 4 == 0:  # a flood of questions to forward (never answered)
            s.send(DNSRecord.question(f"n{i}.outside.test").pack())
    s.settimeout(0.05)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        pass
    s.settimeout(5)
    time.sleep(0.3)
    got = DNSRecord.parse(ask("target"))  # still answers
    assert got.rr and str(got.rr[0].rdata) == root.ip_of("target", "n")
    grown = _rss_kib(pid) - before
    assert grown < 2048, f"the resolver grew by {grown} KiB"
    s.close()
    dead.close()


@pytest.fixture(scope="module")
def spoof(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory holding the static forger (spoof.c), bound into containers."""
    cc = shutil.which("cc") or shutil.which("gcc")
    need(cc is not None, "needs a C compiler (apt-get install gcc libc6-dev)")
    assert cc is not None
    out = tmp_path_factory.mktemp("spoof")
    os.chmod(out, 0o755)
    src = Path(__file__).with_name("spoof.c")
    r = subprocess.run([cc, "-static", "-O1", "-Wall", "-Wextra", "-Werror", "-o",
                        str(out / "spoof"), str(src)], capture_output=True, text=True)
    need(r.returncode == 0, f"the forger could not be built: {r.stderr[-300:]}")
    return str(out)


def _heard(root: Root, ctr: str, word: str, timeout: float = 5) -> str:
    """The listener `ctr`'s log once `word` is in it (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        log = root.ok("logs", ctr)
        if word in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def _forge(root: Root, spoof: str, net_args: tuple[str, ...],
           ip_of: Callable[[str], str]) -> None:
    """Sender and listener containers on one bridge: the listener and the host
    hear what the sender sends as itself, nothing it sends as another."""
    vol = ("-v", f"{spoof}:/t:ro")
    root.run_d("listener", *net_args, *vol, cmd=("/t/spoof", "listen", "9999"))
    root.run_d("sender", *net_args, *vol)
    me, peer = ip_of("sender"), ip_of("listener")
    nets = json.loads(root.ok("inspect", "sender"))[0]["NetworkSettings"]["Networks"]
    gateway = str(next(iter(nets.values()))["Gateway"])
    assert gateway
    inside = ".".join(me.split(".")[:3] + ["250" if not me.endswith(".250") else "251"])
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("0.0.0.0", 0))
    host.settimeout(0.2)
    hport = host.getsockname()[1]
    try:
        for src, text in ((inside, "forged-inside"), ("192.0.2.66", "forged-outside")):
            for dst, port in ((peer, 9999), (gateway, hport)):
                p = root("exec", "sender", "/t/spoof", "send", src, dst, str(port), text)
                assert p.returncode == 0 and "sent" in p.stdout, p.stderr  # it was sent
        for dst, port in ((peer, 9999), (gateway, hport)):
            p = root("exec", "sender", "/t/spoof", "send", me, dst, str(port), "real")
            assert p.returncode == 0, p.stderr
        log = _heard(root, "listener", "real")
        assert f"{me} real" in log  # the path works...
        time.sleep(0.3)
        log = root.ok("logs", "listener")
        assert "forged" not in log, log  # ...and no forged packet took it
        got = []
        try:
            while True:
                data, addr = host.recvfrom(512)
                got.append((addr[0], data.decode()))
        except TimeoutError:
            pass
        assert (me, "real") in got
        assert [g for g in got if g[1].startswith("forged")] == [], got
    finally:
        host.close()


def test_forged_sources_are_dropped_on_the_default_bridge(root: Root, spoof: str) -> None:
    def ip_of(ctr: str) -> str:
        return root.ok("inspect", "-f", "{{.NetworkSettings.IPAddress}}", ctr).strip()

    _forge(root, spoof, ("--network", "bridge"), ip_of)


def test_forged_sources_are_dropped_on_a_user_network(root: Root, spoof: str) -> None:
    root.ok("network", "create", "n")
    _forge(root, spoof, ("--network", "n"), lambda ctr: root.ip_of(ctr, "n"))


def test_forged_ipv6_sources_are_dropped(root: Root, spoof: str) -> None:
    root.ok("network", "create", "--ipv6", "n6")
    vol = ("-v", f"{spoof}:/t:ro")
    root.run_d("listener", "--network", "n6", *vol, cmd=("/t/spoof", "listen", "9999"))
    root.run_d("sender", "--network", "n6", *vol)
    eps = json.loads(root.ok("network", "inspect", "n6"))[0]["Containers"].values()
    v6 = {ep["Name"]: ep["IPv6Address"].split("/")[0] for ep in eps}
    me, peer = v6["sender"], v6["listener"]
    assert me and peer
    subnet = json.loads(root.ok("network", "inspect", "n6"))[0]["IPAM"]["Config"][1]["Subnet"]
    net = ipaddress.IPv6Network(subnet)
    inside = str(net.network_address + 0xfffe)
    for src, text in ((inside, "forged-inside"), ("fd00:dead::1", "forged-outside")):
        p = root("exec", "sender", "/t/spoof", "send", src, peer, "9999", text)
        assert p.returncode == 0 and "sent" in p.stdout, p.stderr
    p = root("exec", "sender", "/t/spoof", "send", me, peer, "9999", "real")
    assert p.returncode == 0, p.stderr
    log = _heard(root, "listener", "real")
    assert f"{me} real" in log
    time.sleep(0.3)
    log = root.ok("logs", "listener")
    assert "forged" not in log, log


class _Upstream:
    """A fake upstream DNS server on 127.0.0.1 (loopback only): answers
    ``*.outside.test`` A with 192.0.2.7, never answers ``*.blackhole.test``,
    and for ``forge-*.outside.test`` first sends forged answers (right id from
    another port; right id and port, another question; a wrong id) and only
    then the real one.  Records (id, source port) of every query."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.seen: list[tuple[int, int, str]] = []
        self.clients: list[socket.socket] = []  # closed first: they hold the netns
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        from dnslib import QTYPE, RR, A, DNSQuestion, DNSRecord

        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                q = DNSRecord.parse(data)
            except Exception:
                continue
            name = str(q.q.qname).rstrip(".").lower()
            self.seen.append((q.header.id, addr[1], name))
            if name.endswith("blackhole.test"):
                continue

            def reply(ip: str, qname: str | None = None, qid: int | None = None,
                      q: DNSRecord = q) -> bytes:
                r = q.reply()
                rname = str(q.q.qname) if qname is None else qname
                r.questions = [DNSQuestion(rname, q.q.qtype, q.q.qclass)]
                if qid is not None:
                    r.header.id = qid
                r.add_answer(RR(rname, QTYPE.A, rdata=A(ip), ttl=5))
                return bytes(r.pack())

            if name.startswith("forge-"):
                self.other.sendto(reply("6.6.6.1"), addr)  # right id, wrong source port
                self.sock.sendto(reply("6.6.6.2", qname="evil.outside.test"), addr)
                self.sock.sendto(reply("6.6.6.4", qid=q.header.id ^ 0x5A5A), addr)
                time.sleep(0.05)
                # the real one, its name in another case (0x20 style): taken
                self.sock.sendto(reply("192.0.2.7", qname=str(q.q.qname).upper()), addr)
            elif name.endswith("outside.test") and q.q.qtype == QTYPE.A:
                self.sock.sendto(reply("192.0.2.7"), addr)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.sock.close()
        self.other.close()


def _dns_client(root: Root, ctr: str, up: _Upstream) -> socket.socket:
    """A UDP socket in `ctr`'s network namespace, connected to its 127.0.0.11:53
    (what a program in the container uses)."""
    ns = Namespace.of(_pid(root, ctr), "net")
    try:
        s = ns.run_in(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    finally:
        ns.close()
    up.clients.append(s)
    s.connect(("127.0.0.11", 53))
    return s


def _lookup(s: socket.socket, name: str, timeout: float = 2.0) -> list[str] | None:
    """The A records of one question sent once (no retry); None: no answer."""
    from dnslib import DNSRecord

    q = DNSRecord.question(name)
    s.send(q.pack())
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            r = DNSRecord.parse(s.recv(4096))
        except TimeoutError:
            return None
        if r.header.id == q.header.id:
            return [str(rr.rdata) for rr in r.rr]
    return None


@pytest.fixture
def fake_upstream(root: Root) -> Iterator[_Upstream]:
    u = _Upstream()
    root.env["NSPRIM_DNS_UPSTREAM"] = f"127.0.0.1:{u.port}"
    yield u
    u.close()


def test_a_flooding_container_does_not_starve_other_networks(
        root: Root, fake_upstream: _Upstream) -> None:
    """One container floods ~2,500 questions/s at names the upstream never
    answers; a container on another network still gets every one of its
    forwarded lookups answered (each asked once, no retry)."""
    import threading

    root.ok("network", "create", "flood")
    root.ok("network", "create", "calm")
    root.run_d("flooder", "--network", "flood")
    root.run_d("victim", "--network", "calm")
    from dnslib import DNSRecord

    flood = _dns_client(root, "flooder", fake_upstream)
    victim = _dns_client(root, "victim", fake_upstream)
    stop = threading.Event()
    sent = [0]

    def flooder() -> None:
        while not stop.is_set():
            for _ in range(25):
                try:
                    flood.send(DNSRecord.question(f"f{sent[0]}.blackhole.test").pack())
                except OSError:
                    pass
                sent[0] += 1
            time.sleep(0.01)

    t = threading.Thread(target=flooder, daemon=True)
    t.start()
    try:
        time.sleep(1.0)  # the flood fills whatever it can
        answers = [_lookup(victim, f"v{i}.outside.test") for i in range(8)]
        time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert sent[0] > 1000
    flooded = sum(1 for _, _, n in fake_upstream.seen if n.endswith("blackhole.test"))
    assert flooded > 50  # the flood did reach the upstream (it is forwarded, up to a quota)
    assert answers == [["192.0.2.7"]] * 8, answers
    assert dns.resolver_pid() is not None


def test_forged_upstream_answers_are_not_taken(root: Root, fake_upstream: _Upstream) -> None:
    """An answer with the right id from another port, with the right id but
    another question, or with a wrong id is dropped; the real one (its name
    in another case) is taken.  Each forwarded question leaves from a port of
    its own with an id that is not the previous one plus one."""
    root.ok("network", "create", "n")
    root.run_d("c", "--network", "n")
    s = _dns_client(root, "c", fake_upstream)
    for i in range(3):
        assert _lookup(s, f"forge-{i}.outside.test") == ["192.0.2.7"]
    before = len(fake_upstream.seen)
    for i in range(20):
        assert _lookup(s, f"r{i}.outside.test") == ["192.0.2.7"]
    seen = fake_upstream.seen[before:]
    ids = [i for i, _, _ in seen]
    ports = [p for _, p, _ in seen]
    assert len(set(ports)) >= 15, ports
    assert sum(1 for a, b in zip(ids, ids[1:], strict=False) if (b - a) & 0xFFFF == 1) <= 2, ids
