"""User-defined networks with real namespaces, nftables and DNS packets: a
three-tier app found by name, isolation, --internal, connect/disconnect,
aliases, --ip, IPv6, bad input, two state roots side by side.  Traffic goes
only to loopback and the tests' own containers (names outside the networks
are forwarded to a fake upstream on 127.0.0.1)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.network import dns, user

from .conftest import cli_at, need


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines()]


def _tables() -> list[str]:
    return subprocess.run(["nft", "list", "tables"], capture_output=True,
                          text=True).stdout.splitlines()


class FakeUpstream:
    """A DNS server on loopback answering ``*.outside.test`` with `answer`
    (what the resolver forwards to, instead of the host's resolvers): on
    127.0.0.1 at a free port, or with ``own_address`` on 127.a.b.c:53, a
    random address of 127/8 (a container's ``--dns`` has no port)."""

    def __init__(self, answer: str = "192.0.2.7", own_address: bool = False) -> None:
        import random

        from dnslib import QTYPE, RR, A, DNSRecord

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if own_address:
            for _ in range(20):
                self.addr = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}." \
                            f"{random.randint(1, 254)}"
                try:
                    self.sock.bind((self.addr, 53))
                    break
                except OSError:
                    continue
        else:
            self.addr = "127.0.0.1"
            self.sock.bind((self.addr, 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []

        def serve() -> None:
            while True:
                try:
                    data, addr = self.sock.recvfrom(4096)
                    q = DNSRecord.parse(data)
                except OSError:
                    return
                except Exception:
                    continue
                name = str(q.q.qname).rstrip(".")
                self.seen.append(name)
                r = q.reply()
                if name.endswith("outside.test") and q.q.qtype == QTYPE.A:
                    r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(answer), ttl=5))
                else:
                    r.header.rcode = 3
                self.sock.sendto(r.pack(), addr)

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    u = FakeUpstream()
    yield u
    u.close()


class Root:
    def __init__(self, path: str, rootfs: str, upstream: FakeUpstream) -> None:
        self.path = path
        self.rootfs = rootfs
        self.env = {**os.environ, "NSPRIM_DNS_UPSTREAM": f"127.0.0.1:{upstream.port}"}

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return cli_at(self.path, *args, timeout=timeout, env=self.env)

    def ok(self, *args: str) -> str:
        p = self(*args)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    def run_d(self, name: str, *args: str, cmd: tuple[str, ...] = ("sleep", "300")) -> str:
        return self.ok("run", "-d", "--name", name, *args, "--rootfs", self.rootfs,
                       *cmd).strip()

    def sh(self, ctr: str, script: str) -> subprocess.CompletedProcess[str]:
        return self("exec", ctr, "sh", "-c", script)

    def ip_of(self, ctr: str, net: str) -> str:
        eps = json.loads(self.ok("network", "inspect", net))[0]["Containers"]
        for ep in eps.values():
            if ep["Name"] == ctr:
                return str(ep["IPv4Address"].split("/")[0])
        raise AssertionError(f"{ctr} not on {net}: {eps}")

    def cleanup(self) -> list[str]:
        """Remove every container and network; what their host links were
        named (container ids, network bridges)."""
        ids = self("ps", "-a", "-q", "--no-trunc").stdout.split()
        for cid in ids:
            self("rm", "-f", cid)
        nets = [json.loads(line) for line in self("network", "ls", "--no-trunc", "--filter",
                                                  "type=custom", "--format",
                                                  "{{json .}}").stdout.splitlines()]
        self("network", "prune", "-f")
        assert self("network", "ls", "-q", "--filter", "type=custom").stdout.strip() == ""
        return ["nsp" + cid[:11] for cid in ids] + ["nspbr-" + n["ID"][:9] for n in nets]


def _make_root(tmp: Path, rootfs: str, upstream: FakeUpstream) -> Iterator[Root]:
    need(os.geteuid() == 0, "needs root")
    need(subprocess.run(["nft", "--version"], capture_output=True).returncode == 0,
         "needs nftables (apt-get install nftables)")
    # other state roots (other test runs) use the host too: only what this
    # root made must be gone afterwards
    r = Root(str(tmp), rootfs, upstream)
    try:
        yield r
    finally:
        prefixes = tuple(r.cleanup())

    def ours() -> list[str]:
        return [n for n in _links() if prefixes and n.startswith(prefixes)]

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and ours():
        time.sleep(0.05)
    assert not ours()
    owners = os.path.join(r.path, "run", "network", "owners")
    assert not (os.path.isdir(owners) and os.listdir(owners))  # no lease lock left
    tables = [p[len("nspbr-"):] for p in prefixes if p.startswith("nspbr-")]
    assert not [t for t in _tables() if any(f"nsprim-{n}" in t for n in tables)]


@pytest.fixture
def root(tmp_path: Path, rootfs: str, upstream: FakeUpstream) -> Iterator[Root]:
    yield from _make_root(tmp_path / "a", rootfs, upstream)


@pytest.fixture
def root_b(tmp_path: Path, rootfs: str, upstream: FakeUpstream) -> Iterator[Root]:
    yield from _make_root(tmp_path / "b", rootfs, upstream)


def _cgi(d: Path, name: str, body: str) -> None:
    (d / "cgi-bin").mkdir(parents=True, exist_ok=True)
    p = d / "cgi-bin" / name
    p.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n" + body)
    p.chmod(0o755)


# ------------------------------------------------------------------ the app

def test_three_tier_app_by_name(root: Root, tmp_path: Path) -> None:
    """web -> api (by name) -> db (by alias); a real HTTP client on web's
    published port sees the whole chain."""
    root.ok("network", "create", "shop")
    db, api, web = tmp_path / "db", tmp_path / "api", tmp_path / "web"
    db.mkdir()
    (db / "rows").write_text("db-rows-42\n")
    _cgi(api, "q", "echo api-saw:$(wget -qO- http://database/rows)\n")
    _cgi(web, "index", "echo web-saw:$(wget -qO- http://api/cgi-bin/q)\n")
    root.run_d("db", "--network", "shop", "--network-alias", "database", "-v", f"{db}:/www",
               cmd=("httpd", "-f", "-p", "80", "-h", "/www"))
    root.run_d("api", "--network", "shop", "-v", f"{api}:/www",
               cmd=("httpd", "-f", "-p", "80", "-h", "/www"))
    root.run_d("web", "--network", "shop", "-p", "127.0.0.1::80", "-v", f"{web}:/www",
               cmd=("httpd", "-f", "-p", "80", "-h", "/www"))
    port = root.ok("port", "web", "80").split(":")[-1].strip()
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/index",
                                        timeout=5) as resp:
                body = resp.read().decode()
            if "db-rows-42" in body:
                break
        except OSError:
            body = ""
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body.strip() == "web-saw:api-saw:db-rows-42"


def test_published_on_both_families_from_a_user_network(root: Root, tmp_path: Path) -> None:
    """-p without an address on a user network: 0.0.0.0 and [::] as on the
    bridge; [::1]:P reaches the container through the supervisor's proxy."""
    root.ok("network", "create", "pub")
    www = tmp_path / "www"
    www.mkdir()
    (www / "i").write_text("on-a-user-network\n")
    root.run_d("srv", "--network", "pub", "-p", "80", "-v", f"{www}:/www",
               cmd=("httpd", "-f", "-p", "80", "-h", "/www"))
    lines = root.ok("port", "srv").splitlines()
    assert any("0.0.0.0:" in x for x in lines) and any("[::]:" in x for x in lines), lines
    port = lines[0].rsplit(":", 1)[1].strip()
    for host in ("127.0.0.1", "[::1]"):
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/i", timeout=5) as resp:
                    body = resp.read().decode()
                break
            except OSError as e:
                assert time.monotonic() < deadline, (host, e)
                time.sleep(0.1)
        assert body == "on-a-user-network\n", host


def test_names_aliases_short_ids_and_leaving(root: Root, upstream: FakeUpstream) -> None:
    root.ok("network", "create", "n1")
    cid = root.run_d("alpha", "--network", "n1", "--network-alias", "al1",
                     "--network-alias", "al2")
    root.run_d("beta", "--network", "n1")
    ip = root.ip_of("alpha", "n1")
    ep = json.loads(root.ok("inspect", "-f", "{{json .NetworkSettings.Networks.n1}}",
                            "alpha"))
    net = json.loads(root.ok("network", "inspect", "n1"))[0]
    assert (ep["IPAddress"], ep["NetworkID"], ep["Gateway"], ep["Aliases"]) == \
        (ip, net["Id"], net["IPAM"]["Config"][0]["Gateway"], ["al1", "al2"])
    assert ep["DNSNames"] == ["alpha", "al1", "al2", cid[:12]]
    resolv = root.sh("beta", "cat /etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in resolv and "options ndots:0" in resolv
    for name in ("alpha", "al1", "al2", cid[:12]):
        p = root.sh("beta", f"nslookup {name}")
        assert p.returncode == 0 and ip in p.stdout, (name, p.stdout, p.stderr)
    # PTR
    p = root.sh("beta", f"nslookup {ip}")
    assert "alpha" in p.stdout, p.stdout
    # forwarded to the (fake) upstream
    p = root.sh("beta", "nslookup www.outside.test")
    assert "192.0.2.7" in p.stdout, p.stdout + p.stderr
    assert "www.outside.test" in upstream.seen
    # a removed container stops resolving at once; a new one resolves at once
    root.ok("rm", "-f", "alpha")
    p = root.sh("beta", "nslookup alpha")
    assert ip not in p.stdout and p.returncode != 0
    root.run_d("gamma", "--network", "n1")
    p = root.sh("beta", "nslookup gamma")
    assert p.returncode == 0 and root.ip_of("gamma", "n1") in p.stdout


def test_a_killed_resolver_is_replaced_and_adopts_the_containers(root: Root) -> None:
    import signal

    root.ok("network", "create", "n2")
    root.run_d("keep", "--network", "n2", "--network-alias", "kept")
    root.run_d("asker", "--network", "n2")
    assert root.sh("asker", "nslookup kept").returncode == 0
    pid = dns.resolver_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert root.sh("asker", "nslookup -timeout=1 -retry=0 kept").returncode != 0
    root.ok("network", "ls")  # collection starts a new resolver: it adopts both containers
    new = dns.resolver_pid()
    assert new is not None and new != pid
    p = root.sh("asker", "nslookup kept")
    assert p.returncode == 0 and root.ip_of("keep", "n2") in p.stdout, p.stdout + p.stderr


def test_default_bridge_has_no_names(root: Root) -> None:
    root.run_d("plain1")
    p = root("run", "--rm", "--rootfs", root.rootfs, "sh", "-c",
             "grep -c 127.0.0.11 /etc/resolv.conf; nslookup -timeout=1 plain1 127.0.0.11")
    assert p.stdout.startswith("0") and p.returncode != 0


# ---------------------------------------------------------------- isolation

def test_isolation_between_networks_and_the_default_bridge(root: Root) -> None:
    root.ok("network", "create", "front")
    root.ok("network", "create", "back")
    root.run_d("secret", "--network", "back", cmd=("httpd", "-f", "-p", "80", "-h", "/etc"))
    root.run_d("peer", "--network", "back")
    root.run_d("stranger", "--network", "front")
    root.run_d("bridged")
    ip = root.ip_of("secret", "back")
    assert root.sh("peer", "timeout 3 wget -qO- http://secret/hostname").returncode == 0
    for ctr in ("stranger", "bridged"):
        assert root.sh(ctr, "nslookup secret").returncode != 0, ctr
        p = root.sh(ctr, f"timeout 3 wget -qO- http://{ip}/hostname")
        assert p.returncode != 0, (ctr, p.stdout)
    # and back: back's containers reach neither the other network nor the bridge
    other = root.ip_of("stranger", "front")
    assert root.sh("peer", f"ping -c1 -W1 {other}").returncode != 0
    # the host reaches them (docker's behaviour)
    with urllib.request.urlopen(f"http://{ip}/hostname", timeout=5) as resp:
        assert resp.status == 200


def test_internal_network_has_no_way_out(root: Root, upstream: FakeUpstream) -> None:
    root.ok("network", "create", "--internal", "vault")
    root.run_d("v1", "--network", "vault")
    root.run_d("v2", "--network", "vault")
    assert root.sh("v1", "ping -c1 -W1 v2").returncode == 0
    routes = root.sh("v1", "ip route").stdout
    assert "default" not in routes
    p = root.sh("v1", "ping -c1 -W1 127.0.0.1 >/dev/null; timeout 3 wget -qO- http://192.0.2.1/")
    assert "unreachable" in p.stderr.lower() and p.returncode != 0
    before = len(upstream.seen)
    assert root.sh("v1", "nslookup x.outside.test").returncode != 0  # not forwarded
    assert len(upstream.seen) == before
    info = json.loads(root.ok("network", "inspect", "vault"))[0]
    assert info["Internal"] is True


# ------------------------------------------------------- connect, --ip, IPv6

def test_connect_and_disconnect_while_running(root: Root) -> None:
    root.ok("network", "create", "one")
    root.ok("network", "create", "two")
    root.run_d("mover", "--network", "one")
    root.run_d("target", "--network", "two")
    assert root.sh("mover", "nslookup target").returncode != 0
    root.ok("network", "connect", "--alias", "mv", "two", "mover")
    p = root.sh("mover", "ip addr show eth1")
    assert p.returncode == 0 and "inet 10." in p.stdout
    assert root.sh("mover", "ping -c1 -W2 target").returncode == 0
    assert root.sh("target", "ping -c1 -W2 mv").returncode == 0
    info = json.loads(root.ok("network", "inspect", "two"))[0]
    assert {e["Name"] for e in info["Containers"].values()} == {"mover", "target"}
    p = root("network", "connect", "two", "mover")
    assert p.returncode == 1 and "already exists" in p.stderr
    root.ok("network", "disconnect", "two", "mover")
    assert root.sh("mover", "ip addr show eth1").returncode != 0
    assert root.sh("target", "nslookup mv").returncode != 0
    assert root.sh("mover", "ping -c1 -W1 target").returncode != 0


def test_fixed_ip_and_ipv6(root: Root) -> None:
    root.ok("network", "create", "--ipv6", "--subnet", "10.123.0.0/24",
            "--subnet", "fd00:5eed::/64", "six")
    root.run_d("s1", "--network", "six", "--ip", "10.123.0.50", "--ip6", "fd00:5eed::50",
               cmd=("httpd", "-f", "-p", "80", "-h", "/etc"))
    root.run_d("s2", "--network", "six")
    assert root.ip_of("s1", "six") == "10.123.0.50"
    p = root.sh("s2", "nslookup -type=aaaa s1")
    assert "fd00:5eed::50" in p.stdout, p.stdout
    assert root.sh("s2", "ping -6 -c1 -W2 fd00:5eed::50").returncode == 0
    assert "default via fd00:5eed::1" in root.sh("s2", "ip -6 route").stdout
    info = json.loads(root.ok("network", "inspect", "six"))[0]
    assert info["EnableIPv6"] is True
    assert {e["IPv6Address"] for e in info["Containers"].values()} >= {"fd00:5eed::50/64"}
    # NAT66 for what leaves the subnet, as docker does
    table = subprocess.run(["nft", "list", "table", "ip6", "nsprim-" + info["Id"][:12]],
                           capture_output=True, text=True).stdout
    assert "ip6 saddr fd00:5eed::/64" in table and "masquerade" in table
    # the host reaches the container over IPv6 through the bridge
    with urllib.request.urlopen("http://[fd00:5eed::50]/hostname", timeout=5) as resp:
        assert resp.status == 200
    p = root("run", "--rm", "--network", "six", "--ip", "10.123.0.50", "--rootfs",
             root.rootfs, "true")
    assert p.returncode == 125 and "10.123.0.50" in p.stderr


# ----------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, words", [
    (["--subnet", "10.0.0.0/33"], 'invalid argument "10.0.0.0/33" for "--subnet"'),
    (["--subnet", "10.124.0.0/24", "--gateway", "10.125.0.1"],
     "no matching subnet for gateway 10.125.0.1"),
    (["--subnet", "nonsense"], "invalid CIDR address: nonsense"),
    (["-o", "bogus=1"], "invalid option 'bogus'"),
])
def test_bad_create_input(root: Root, args: list[str], words: str) -> None:
    bridges = {n for n in _links() if n.startswith("nspbr-")}
    p = root("network", "create", *args, "bad")
    assert p.returncode == 125 and words in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert {n for n in _links() if n.startswith("nspbr-")} <= bridges
    assert root("network", "inspect", "bad").returncode != 0


def test_overlap_duplicate_in_use_and_bad_ip(root: Root) -> None:
    root.ok("network", "create", "--subnet", "10.126.0.0/16", "used")
    links = {n for n in _links() if n.startswith("nspbr-")}
    p = root("network", "create", "--subnet", "10.126.5.0/24", "clash")
    assert p.returncode == 125 and "Pool overlaps" in p.stderr
    p = root("network", "create", "used")
    assert p.returncode == 125 and "network with name used already exists" in p.stderr
    assert {n for n in _links() if n.startswith("nspbr-")} <= links
    root.run_d("holder", "--network", "used")
    p = root("network", "rm", "used")
    assert p.returncode == 125 and "has active endpoints" in p.stderr
    for bad, words in (("10.9.9.9", "does not belong"), ("x.y", "invalid argument")):
        p = root("run", "--rm", "--network", "used", "--ip", bad, "--rootfs", root.rootfs,
                 "true")
        assert p.returncode == 125 and words in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    p = root("run", "--rm", "--network", "nosuch", "--rootfs", root.rootfs, "true")
    assert p.returncode == 125 and "nosuch" in p.stderr
    root.ok("rm", "-f", "holder")
    root.ok("network", "rm", "used")


def test_ls_filters_prune_and_builtins(root: Root) -> None:
    nid = root.ok("network", "create", "--label", "team=a", "la").strip()
    root.ok("network", "create", "--label", "team=b", "lb")
    root.ok("network", "create", "lc")
    assert root.ok("network", "ls", "-q", "--no-trunc", "--filter", "label=team=a").split() \
        == [nid]
    names = root.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()
    assert {"bridge bridge", "host host", "none null", "la bridge", "lb bridge",
            "lc bridge"} <= set(names)
    assert root.ok("network", "ls", "--filter", "type=custom", "--format",
                   "{{.Name}}").split() == ["la", "lb", "lc"]
    root.run_d("user", "--network", "lc")
    out = root.ok("network", "prune", "-f", "--filter", "label=team=b")
    assert out.split() == ["Deleted", "Networks:", "lb"]
    out = root.ok("network", "prune", "-f")
    assert out.split() == ["Deleted", "Networks:", "la"]  # lc is in use
    for bad, words in ((["rm", "bridge"], "pre-defined"), (["create", "host"], "predefined"),
                       (["rm", "nosuch"], "network nosuch not found")):
        p = root("network", *bad)
        assert p.returncode == 125 and words in p.stderr, p.stderr
    p = root("run", "--rm", "--network-alias", "x", "--rootfs", root.rootfs, "true")
    assert p.returncode == 125 and "user-defined networks" in p.stderr


# ------------------------------------------------------------ two state roots

def test_two_state_roots_side_by_side(root: Root, root_b: Root) -> None:
    """Each root's containers stay reachable (by address from the host, by
    name inside their network) while the other root's come and go, on the
    default bridge and on networks of the same name."""
    root.ok("network", "create", "app")
    root.run_d("a-web", "--network", "app", cmd=("httpd", "-f", "-p", "80", "-h", "/etc"))
    root.run_d("a-cli", "--network", "app")
    root.run_d("a-bridge", cmd=("httpd", "-f", "-p", "80", "-h", "/etc"))
    a_ip = root.ip_of("a-web", "app")
    a_bridge_ip = root.ok("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "a-bridge").strip()

    def a_alive() -> None:
        for ip in (a_ip, a_bridge_ip):
            with urllib.request.urlopen(f"http://{ip}/hostname", timeout=5) as resp:
                assert resp.status == 200
        assert root.sh("a-cli", "timeout 3 wget -qO- http://a-web/hostname").returncode == 0

    a_alive()
    for _ in range(2):
        root_b.ok("network", "create", "app")  # the same name in another root
        root_b.run_d("b-web", "--network", "app")
        root_b.ok("run", "--rm", "--rootfs", root_b.rootfs, "true")  # default bridge
        assert root_b("exec", "b-web", "nslookup", "a-web").returncode != 0
        a_alive()
        root_b.ok("rm", "-f", "b-web")
        root_b.ok("network", "rm", "app")
        a_alive()


def test_two_roots_creating_at_once_get_distinct_subnets(root: Root, root_b: Root) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "nsprim", "--root", r.path, "network",
                               "create", f"race{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=r.env)
             for r in (root, root_b) for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    subnets = [json.loads(r.ok("network", "inspect", f"race{i}"))[0]["IPAM"]["Config"][0]
               ["Subnet"] for r in (root, root_b) for i in range(3)]
    nets = [ipaddress.ip_network(x) for x in subnets]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:]), subnets


# ------------------------------------------------------- pure logic (hypothesis)

_net4 = st.builds(lambda a, p: str(ipaddress.IPv4Network((a, p), strict=False)),
                  st.integers(0, 2**32 - 1), st.integers(8, 29))


@settings(max_examples=200, deadline=None)
@given(taken=st.lists(_net4, max_size=6), wanted=st.one_of(st.none(), _net4),
       ipv6=st.booleans())
def test_plan_never_overlaps(taken: list[str], wanted: str | None, ipv6: bool) -> None:
    try:
        plan = user.plan_network("n", subnets=[wanted] if wanted else [], taken=taken,
                                 ipv6=ipv6)
    except user.NetworkError as e:
        assert "overlaps" in str(e) or "pool" in str(e)
        assert wanted is None or any(ipaddress.ip_network(t).overlaps(
            ipaddress.ip_network(wanted)) for t in taken)
        return
    net = ipaddress.ip_network(str(plan["subnet"]))
    assert not any(net.overlaps(ipaddress.ip_network(t)) for t in taken)
    assert ipaddress.ip_address(str(plan["gateway"])) in net
    if wanted:
        assert str(net) == wanted
    assert (plan["subnet6"] is not None) == ipv6
    if ipv6:
        n6 = ipaddress.ip_network(str(plan["subnet6"]))
        assert n6.is_private and ipaddress.ip_address(str(plan["gateway6"])) in n6


@settings(max_examples=200, deadline=None)
@given(gw=st.integers(0, 2**32 - 1), net=_net4)
def test_gateway_inside_the_subnet_or_refused(gw: int, net: str) -> None:
    g = str(ipaddress.IPv4Address(gw))
    n = ipaddress.IPv4Network(net)
    try:
        plan = user.plan_network("n", subnets=[net], gateway=g)
    except user.NetworkError as e:
        assert f"no matching subnet for gateway {g}" in str(e)
        assert ipaddress.IPv4Address(g) not in n or g in (str(n.network_address),
                                                          str(n.broadcast_address))
        return
    assert plan["gateway"] == g and ipaddress.IPv4Address(g) in n


_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(_label, st.lists(_label, max_size=3)), max_size=8,
                        unique_by=lambda e: e[0]))
def test_name_table(entries: list[tuple[str, list[str]]]) -> None:
    leases = {}
    for i, (name, aliases) in enumerate(entries):
        leases[f"10.0.{i // 250}.{i % 250 + 2}"] = {
            "id": f"{i:064x}", "name": name, "aliases": aliases,
            "ip6": f"fd00::{i + 2:x}"}
    names, ptr, ids = dns.build_table(leases)
    assert ids == {lease["id"] for lease in leases.values()}
    for addr, lease in leases.items():
        for nm in [lease["name"], *lease["aliases"], lease["id"][:12]]:
            v4, v6 = names[nm.lower()]
            assert addr in v4 and lease["ip6"] in v6
        assert ptr[ipaddress.ip_address(addr).reverse_pointer] == lease["name"].lower()
    every = {a for v4, _ in names.values() for a in v4}
    assert every <= set(leases)


# ------------------------------------------------------------ the Python API

def test_python_api(tmp_path: Path, rootfs: str, upstream: FakeUpstream,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """nsprim.network.create, Network objects, NetworkMode.network: in-process
    containers resolve each other by alias, and everything goes with them."""
    need(os.geteuid() == 0, "needs root")
    import nsprim.network as network
    from nsprim import Container, run, state
    from nsprim.network import NetworkMode
    from nsprim.state import use_root

    monkeypatch.setattr(state, "_chosen", state._chosen)  # restored afterwards
    monkeypatch.setenv("NSPRIM_DNS_UPSTREAM", f"127.0.0.1:{upstream.port}")
    use_root(str(tmp_path / "api-root"))
    net = network.create("pyapi", subnet="10.127.3.0/24", labels={"tier": "test"})
    try:
        assert isinstance(net, network.Network) and net.subnet == "10.127.3.0/24"
        assert network.get("pyapi").id == net.id
        svc = Container(["sleep", "60"], rootfs=rootfs,
                        network=NetworkMode.network("pyapi", aliases=["svc"],
                                                    ip="10.127.3.9")).start()
        try:
            assert svc.ip_address == "10.127.3.9"
            assert set(net.containers()) == {svc.id}
            done = run(["nslookup", "svc"], rootfs=rootfs, capture_output=True,
                       network=NetworkMode.network("pyapi"))
            assert done.returncode == 0 and b"10.127.3.9" in done.stdout
            with pytest.raises(network.user.NetworkError, match="active endpoints"):
                net.remove()
        finally:
            svc.kill()
            svc.wait()
        assert net.containers() == {}
    finally:
        net.remove()
    assert "pyapi" not in [n.name for n in network.networks()]
    assert net.bridge not in _links()


@pytest.fixture
def own_upstream() -> Iterator[FakeUpstream]:
    u = FakeUpstream("192.0.2.99", own_address=True)
    yield u
    u.close()


def test_dns_option_is_the_containers_upstream_on_a_user_network(
        root: Root, own_upstream: FakeUpstream) -> None:
    """--dns on a user network: resolv.conf still says 127.0.0.11 and the
    container's other names are forwarded to its --dns (as docker), also
    after `network connect` from a command whose upstream is another one."""
    root.ok("network", "create", "n1")
    root.ok("network", "create", "n2")
    root.run_d("own", "--network", "n1", "--dns", own_upstream.addr)
    root.run_d("plain", "--network", "n1")
    assert "nameserver 127.0.0.11" in root.ok("exec", "own", "cat", "/etc/resolv.conf")
    p = root.sh("own", "nslookup a.outside.test")
    assert "192.0.2.99" in p.stdout, p.stdout
    p = root.sh("plain", "nslookup b.outside.test")
    assert "192.0.2.7" in p.stdout, p.stdout  # the host's (the test's NSPRIM_DNS_UPSTREAM)
    assert "a.outside.test" in own_upstream.seen and "b.outside.test" not in own_upstream.seen
    root.ok("network", "connect", "n2", "own")  # this CLI's upstream is the 192.0.2.7 one
    p = root.sh("own", "nslookup c.outside.test")
    assert "192.0.2.99" in p.stdout, p.stdout


def test_a_bridge_container_connected_to_a_network_gets_its_dns(
        root: Root, own_upstream: FakeUpstream) -> None:
    """docker's behaviour: a default-bridge container `network connect`ed to
    a user network has its resolv.conf pointed at the network's resolver
    (127.0.0.11, ndots:0); it resolves the network's names, and forwards
    others to its own --dns."""
    root.ok("network", "create", "n")
    root.run_d("srv", "--network", "n")
    root.run_d("b", "--dns", own_upstream.addr, "--dns-option", "edns0")
    before = root.ok("exec", "b", "cat", "/etc/resolv.conf")
    assert f"nameserver {own_upstream.addr}" in before
    root.ok("network", "connect", "n", "b")
    after = root.ok("exec", "b", "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in after and own_upstream.addr not in after, after
    assert "edns0" in after and "ndots:0" in after, after
    p = root.sh("b", "nslookup srv")
    assert root.ip_of("srv", "n") in p.stdout, p.stdout
    p = root.sh("b", "nslookup d.outside.test")
    assert "192.0.2.99" in p.stdout, p.stdout


def _tcp_query(s: socket.socket, name: str) -> list[str]:
    """One length-prefixed query over TCP; the answer's A records."""
    from dnslib import DNSRecord

    q = DNSRecord.question(name).pack()
    s.sendall(len(q).to_bytes(2, "big") + q)
    n = int.from_bytes(_recv_n(s, 2), "big")
    r = DNSRecord.parse(_recv_n(s, n))
    return [str(rr.rdata) for rr in r.rr]


def _recv_n(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return buf


def test_dns_over_tcp(root: Root, upstream: FakeUpstream) -> None:
    """127.0.0.11:53 answers over TCP too (RFC 7766: clients that use TCP,
    answers too large for UDP): the network's names, and forwarded names
    over TCP to the upstream (here 40 addresses: over 512 bytes); at most 8
    connections at once per container."""
    from dnslib import QTYPE, RR, A, DNSRecord

    from nsprim.namespace import Namespace

    big = [f"198.51.100.{i}" for i in range(1, 41)]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", upstream.port))  # the UDP fake's port, over TCP
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                try:
                    q = DNSRecord.parse(_recv_n(c, int.from_bytes(_recv_n(c, 2), "big")))
                except (OSError, EOFError):
                    continue
                r = q.reply()
                for ip in big:
                    r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(ip), ttl=5))
                out = r.pack()
                c.sendall(len(out).to_bytes(2, "big") + out)

    threading.Thread(target=serve, daemon=True).start()
    conns: list[socket.socket] = []
    try:
        root.ok("network", "create", "n")
        root.run_d("alpha", "--network", "n")
        root.run_d("beta", "--network", "n")
        pid = int(root.ok("inspect", "-f", "{{.State.Pid}}", "beta").strip())
        ns = Namespace.of(pid, "net")
        try:
            for _ in range(9):
                conns.append(ns.run_in(lambda: socket.socket(socket.AF_INET,
                                                             socket.SOCK_STREAM)))
        finally:
            ns.close()
        for c in conns:
            c.settimeout(5)
        conns[0].connect(("127.0.0.11", 53))
        assert _tcp_query(conns[0], "alpha") == [root.ip_of("alpha", "n")]
        got = _tcp_query(conns[0], "big.outside.test")  # same connection, forwarded
        assert got == big
        assert len(DNSRecord.question("big.outside.test").pack()) < 512
        for c in conns[1:8]:
            c.connect(("127.0.0.11", 53))
        time.sleep(0.2)
        conns[8].connect(("127.0.0.11", 53))  # the 9th: closed by the resolver
        with pytest.raises((EOFError, ConnectionResetError)):
            _tcp_query(conns[8], "alpha")
        assert _tcp_query(conns[7], "alpha") == [root.ip_of("alpha", "n")]
    finally:
        for c in conns:
            c.close()
        srv.close()


# ---------------------------------------------- pure logic of the hardening

_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                 min_size=1, max_size=20)


@given(labels=st.lists(_label, min_size=1, max_size=5),
       qtype=st.integers(1, 65535), qclass=st.sampled_from([1, 3, 254, 255]),
       qid=st.integers(0, 65535))
@settings(max_examples=200, deadline=None)
def test_question_of_reads_id_and_question(labels: list[str], qtype: int, qclass: int,
                                           qid: int) -> None:
    from dnslib import DNSQuestion, DNSRecord

    name = ".".join(labels)
    q = DNSRecord(q=DNSQuestion(name, qtype, qclass))
    q.header.id = qid
    data = q.pack()
    assert dns.question_of(data, answer=False) == (qid, (name.lower(), qtype, qclass))
    assert dns.question_of(data, answer=True) is None  # a query is not an answer
    r = q.reply()
    assert dns.question_of(r.pack(), answer=True) == (qid, (name.lower(), qtype, qclass))


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_question_of_never_raises_on_garbage(data: bytes) -> None:
    got = dns.question_of(data, answer=True)
    assert got is None or (isinstance(got[0], int) and len(got[1]) == 3)


_ns = st.ip_addresses(v=4).map(str)
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=12)


@given(servers=st.lists(_ns, max_size=4), search=st.lists(_word, max_size=3),
       opts=st.lists(st.sampled_from(["edns0", "rotate", "ndots:3", "timeout:2",
                                      "attempts:1"]), max_size=3, unique=True),
       comments=st.lists(st.just("# a comment"), max_size=2))
@settings(max_examples=300, deadline=None)
def test_embedded_resolv_text(servers: list[str], search: list[str], opts: list[str],
                              comments: list[str]) -> None:
    from nsprim.network.etc import embedded_resolv_text

    lines = comments + [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if opts:
        lines.append("options " + " ".join(opts))
    out = embedded_resolv_text("\n".join(lines) + "\n", "127.0.0.11")
    if servers == ["127.0.0.11"]:
        assert out is None
        return
    assert out is not None
    got = out.splitlines()
    assert [x for x in got if x.startswith("nameserver")] == ["nameserver 127.0.0.11"]
    if search:
        assert "search " + " ".join(search) in got
    words = [w for x in got if x.startswith("options") for w in x.split()[1:]]
    assert all(o in words for o in opts)
    assert sum(w.startswith("ndots:") for w in words) == 1
    assert ("ndots:0" in words) == ("ndots:3" not in opts)
    assert comments == [x for x in got if x.startswith("#")]
    assert embedded_resolv_text(out, "127.0.0.11") is None  # idempotent


# ------------------------------------------- several networks before start

def _networks_of(root: Root, ctr: str) -> dict[str, Any]:
    nets = json.loads(root.ok("inspect", ctr))[0]["NetworkSettings"]["Networks"]
    assert isinstance(nets, dict)
    return nets


def test_created_container_connected_to_a_second_network(root: Root) -> None:
    root.ok("network", "create", "mna")
    root.ok("network", "create", "mnb")
    root.run_d("ona", "--network", "mna")
    root.run_d("onb", "--network", "mnb")
    root.ok("create", "--name", "both", "--network", "mna", "--rootfs", root.rootfs,
            "sleep", "300")
    root.ok("network", "connect", "--alias", "bee", "mnb", "both")
    assert set(_networks_of(root, "both")) == {"mna", "mnb"}
    assert _networks_of(root, "both")["mnb"]["Aliases"] == ["bee"]
    root.ok("start", "both")
    for ifname in ("eth0", "eth1"):
        p = root.sh("both", f"ip -4 addr show {ifname}")
        assert p.returncode == 0 and "inet 10." in p.stdout, (ifname, p.stdout, p.stderr)
    assert "default via" in root.sh("both", "ip route").stdout
    # it resolves and reaches a container of each network by name ...
    for other in ("ona", "onb"):
        assert root.sh("both", f"ping -c1 -W2 {other}").returncode == 0, other
    # ... and is found by name and alias on the second one
    for name in ("both", "bee"):
        assert root.sh("onb", f"ping -c1 -W2 {name}").returncode == 0, name
    assert root.sh("ona", "nslookup bee").returncode != 0
    nets = _networks_of(root, "both")
    assert nets["mnb"]["IPAddress"] == root.ip_of("both", "mnb")
    assert nets["mna"]["IPAddress"] == root.ip_of("both", "mna")
    assert nets["mna"]["IPAddress"] != nets["mnb"]["IPAddress"]


def test_disconnect_before_start_leaves_one_interface(root: Root) -> None:
    root.ok("network", "create", "mnc")
    root.ok("network", "create", "mnd")
    root.ok("create", "--name", "once", "--network", "mnc", "--rootfs", root.rootfs,
            "sleep", "300")
    root.ok("network", "connect", "mnd", "once")
    root.ok("network", "disconnect", "mnd", "once")
    assert set(_networks_of(root, "once")) == {"mnc"}
    p = root("network", "disconnect", "mnd", "once")
    assert p.returncode == 1 and "is not connected to network mnd" in p.stderr
    root.ok("start", "once")
    assert root.sh("once", "ip addr show eth0").returncode == 0
    assert root.sh("once", "ip addr show eth1").returncode != 0
    info = json.loads(root.ok("network", "inspect", "mnd"))[0]
    assert info["Containers"] == {}


def test_a_restarted_container_comes_back_on_its_connected_network(root: Root) -> None:
    root.ok("network", "create", "mne")
    root.ok("network", "create", "mnf")
    root.run_d("peer", "--network", "mnf")
    root.run_d("back", "--network", "mne")
    root.ok("network", "connect", "mnf", "back")
    assert root.sh("peer", "ping -c1 -W2 back").returncode == 0
    root.ok("stop", "-t", "1", "back")
    info = json.loads(root.ok("network", "inspect", "mnf"))[0]
    assert {e["Name"] for e in info["Containers"].values()} == {"peer"}
    assert set(_networks_of(root, "back")) == {"mne", "mnf"}
    root.ok("start", "back")
    assert root.sh("back", "ip -4 addr show eth1").returncode == 0
    assert root.sh("peer", "ping -c1 -W2 back").returncode == 0
    assert root.sh("back", "ping -c1 -W2 peer").returncode == 0
    info = json.loads(root.ok("network", "inspect", "mnf"))[0]
    assert {e["Name"] for e in info["Containers"].values()} == {"peer", "back"}
    # disconnected while running: gone from its record too
    root.ok("network", "disconnect", "mnf", "back")
    assert set(_networks_of(root, "back")) == {"mne"}
    root.ok("restart", "-t", "1", "back")
    assert root.sh("back", "ip addr show eth1").returncode != 0


def test_connecting_a_created_container_badly(root: Root) -> None:
    root.ok("network", "create", "--subnet", "10.127.0.0/24", "mng")
    root.ok("network", "create", "mnh")
    root.ok("create", "--name", "bad", "--network", "mnh", "--rootfs", root.rootfs, "true")
    before = json.loads(root.ok("inspect", "bad"))[0]
    for args, words in (
            (["nosuch"], "nosuch"),
            (["--ip", "10.9.9.9", "mng"], "Invalid address 10.9.9.9"),
            (["--ip", "10.127.0.1", "mng"], "Address already in use: 10.127.0.1"),
            (["mnh"], "endpoint with name bad already exists in network mnh")):
        p = root("network", "connect", *args, "bad")
        assert p.returncode == 1 and words in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1
        assert json.loads(root.ok("inspect", "bad"))[0] == before
    p = root("network", "connect", "--ip", "x.y", "mng", "bad")
    assert p.returncode == 125 and 'invalid argument "x.y"' in p.stderr, p.stderr
    assert json.loads(root.ok("inspect", "bad"))[0] == before
    root.ok("network", "connect", "--ip", "10.127.0.9", "mng", "bad")
    p = root("network", "connect", "mng", "bad")
    assert p.returncode == 1 and "already exists in network mng" in p.stderr
    assert _networks_of(root, "bad")["mng"]["IPAMConfig"] == {"IPv4Address": "10.127.0.9"}
    root.ok("create", "--name", "hosty", "--network", "host", "--rootfs", root.rootfs, "true")
    p = root("network", "connect", "mng", "hosty")
    assert p.returncode == 1 and "cannot be connected" in p.stderr
    assert set(_networks_of(root, "hosty")) == {"host"}


def test_the_supervisors_restart_keeps_a_connected_network(root: Root) -> None:
    root.ok("network", "create", "mni")
    root.ok("network", "create", "mnj")
    root.run_d("watch", "--network", "mnj")
    root.run_d("flaky", "--network", "mni", "--restart", "on-failure",
               cmd=("sh", "-c", "test -e /tmp/once || { touch /tmp/once; sleep 3; exit 1; }; "
                                "exec sleep 300"))
    root.ok("network", "connect", "mnj", "flaky")
    deadline = time.monotonic() + 30
    while json.loads(root.ok("inspect", "flaky"))[0]["RestartCount"] < 1:
        assert time.monotonic() < deadline, "no restart"
        time.sleep(0.2)
    for _ in range(50):
        if json.loads(root.ok("inspect", "flaky"))[0]["State"]["Running"]:
            break
        time.sleep(0.1)
    assert root.sh("flaky", "test -e /tmp/once && ip -4 addr show eth1").returncode == 0
    assert root.sh("watch", "ping -c1 -W2 flaky").returncode == 0


_endpoint_st = st.fixed_dictionaries({
    "name": st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True),
    "aliases": st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), max_size=3),
    "ip": st.none() | st.ip_addresses(v=4).map(str),
    "ip6": st.none() | st.ip_addresses(v=6).map(str)})


@settings(max_examples=50, deadline=None)
@given(st.lists(_endpoint_st, max_size=4))
def test_extra_networks_survive_the_record(extra: list[dict[str, Any]]) -> None:
    from nsprim.spec import ContainerSpec

    spec = ContainerSpec(id="f" * 64, name="n", network="mnk", extra_networks=tuple(extra))
    data = json.loads(json.dumps(spec.to_json()))
    assert ContainerSpec.from_json(data) == spec
    del data["extra_networks"]  # a record of an older version loads
    assert ContainerSpec.from_json(data).extra_networks == ()


def test_a_bridge_container_comes_back_on_its_connected_network(root: Root) -> None:
    root.ok("network", "create", "mnl")
    root.run_d("lpeer", "--network", "mnl")
    root.run_d("onbridge")
    root.ok("network", "connect", "mnl", "onbridge")
    root.ok("stop", "-t", "1", "onbridge")
    root.ok("start", "onbridge")
    assert root.sh("onbridge", "ip -4 addr show eth1").returncode == 0
    assert root.sh("onbridge", "ping -c1 -W2 lpeer").returncode == 0
    assert root.sh("lpeer", "ping -c1 -W2 onbridge").returncode == 0
    assert set(_networks_of(root, "onbridge")) == {"bridge", "mnl"}
