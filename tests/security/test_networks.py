"""User-defined networks, attacked from a container:

- the DNS resolver's control plane (a unix socket on the host) is out of
  reach, and the resolver listens on no address of the host or the bridge;
- a container with NET_ADMIN that routes itself towards another network's
  subnet still cannot reach its containers, nor the loopback of the host;
- hostile DNS packets (garbage, oversized, many questions, compression loops,
  a flood of questions to forward) cannot grow the resolver or stop it;
- a container (default capabilities: CAP_NET_RAW) that forges the source
  address of its packets (spoof.c, a raw socket) reaches neither another
  container nor the host with them, on the default bridge or a network.
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
