"""A container's /etc/hosts, /etc/hostname and /etc/resolv.conf (docker's, in
every network mode: --add-host, --dns*, --hostname/--domainname), and ports
published on IPv6 as well as IPv4 (``0.0.0.0:P`` and ``[::]:P``, ``[::1]:P``),
shown by ps/inspect/port as docker v28 shows them.  Real containers, real
traffic, only on loopback and the containers' own addresses."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import Container, run
from nsprim.errors import ConfigError
from nsprim.network.etc import (
    DEFAULT_HOSTS,
    EtcOptions,
    etc_options,
    hosts_text,
    parse_add_host,
    resolv_text,
)
from nsprim.network.ports import PortSpec, join_host_port, parse_publish

from .conftest import cli_at, need

# ------------------------------------------------------------ pure logic


@pytest.mark.parametrize("spec,want", [
    ("db:10.0.0.5", ("db", "10.0.0.5")),
    ("db=10.0.0.5", ("db", "10.0.0.5")),
    ("v6:::1", ("v6", "::1")),
    ("v6=[2001:db8::1]", ("v6", "2001:db8::1")),
    ("v6:2001:DB8:0::1", ("v6", "2001:db8::1")),
    ("host.docker.internal:host-gateway", ("host.docker.internal", "host-gateway")),
    ("a.b-c_d:1.2.3.4", ("a.b-c_d", "1.2.3.4")),
])
def test_add_host_parsed(spec: str, want: tuple[str, str]) -> None:
    assert parse_add_host(spec) == want


@pytest.mark.parametrize("spec,needle", [
    ("db", "bad format for add-host: 'db'"),
    ("db:", "bad format"),
    (":1.2.3.4", "bad format"),
    ("db:1.2.3", "'1.2.3'"),
    ("db:1.2.3.4\nnameserver 6.6.6.6", "\\n"),
    ("d b:1.2.3.4", "'d b'"),
    ("db#x:1.2.3.4", "'db#x'"),
    ("db:fe80::1%eth0", "fe80::1%eth0"),
    ("db:[1.2.3.4", "[1.2.3.4"),
])
def test_bad_add_host(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_add_host(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


_v4 = st.ip_addresses(v=4)
_v6 = st.ip_addresses(v=6)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_name = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(_name, st.one_of(_v4, _v6), st.sampled_from([":", "="]), st.booleans())
def test_add_host_any_address_roundtrips(name: str, ip: ipaddress.IPv4Address |
                                         ipaddress.IPv6Address, sep: str,
                                         brackets: bool) -> None:
    text = f"[{ip}]" if brackets and ip.version == 6 else str(ip)
    got = parse_add_host(f"{name}{sep}{text}")
    assert got == (name, str(ip))
    # what /etc/hosts gets is one line: the address and the name
    line = hosts_text(None, None, extra=[got]).removeprefix(DEFAULT_HOSTS)
    assert line == f"{ip}\t{name}\n"


@given(st.text(max_size=40))
def test_add_host_value_or_one_line_error(text: str) -> None:
    try:
        name, ip = parse_add_host(text)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert name and "\n" not in name and not any(c.isspace() for c in name)
    assert ip == "host-gateway" or ipaddress.ip_address(ip)


@given(st.one_of(_v6, _v4), st.integers(1, 65535), st.integers(0, 65535),
       st.sampled_from(["tcp", "udp"]))
def test_publish_with_any_address_roundtrips(ip: ipaddress.IPv4Address |
                                             ipaddress.IPv6Address, ctr: int, host: int,
                                             proto: str) -> None:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return
    where = f"[{ip}]" if ip.version == 6 else str(ip)
    (p,) = parse_publish(f"{where}:{host or ''}:{ctr}/{proto}")
    assert p == PortSpec(ctr, host, proto, str(ip))
    assert parse_publish(str(p)) == [p]  # str() is a spec again


@pytest.mark.parametrize("spec", ["::1:80:80", "[::1]:80", "[::1]80:80", "[127.0.0.1]:1:80",
                                  "[::1]:1:2:3", "[fe80::1%lo]:1:2", "[::ffff:1.2.3.4]:1:2",
                                  "[]:1:2", "[::1:1:2"])
def test_bad_ipv6_publish_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match="invalid port specification"):
        parse_publish(spec)


def test_join_host_port_as_go() -> None:
    assert [join_host_port(ip, 8080) for ip in ("", "0.0.0.0", "::", "::1", "10.0.0.1")] \
        == ["0.0.0.0:8080", "0.0.0.0:8080", "[::]:8080", "[::1]:8080", "10.0.0.1:8080"]


def test_hosts_text_docker_lines() -> None:
    text = hosts_text("web", "10.88.0.5", domainname="example.com",
                      extra=[("db", "10.0.0.9"), ("v6", "::1"), ("gw", "host-gateway")],
                      gateway="10.88.0.1")
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                           "ip6-loopback\n")
    assert text.endswith("10.0.0.9\tdb\n::1\tv6\n10.88.0.1\tgw\n"
                         "10.88.0.5\tweb.example.com web\n")
    # no address (--network none): no line of its own
    assert hosts_text("web", None) == DEFAULT_HOSTS
    # the host's file for --network host, the added hosts after it
    assert hosts_text("h", None, base="127.0.0.1 localhost", extra=[("a", "1.2.3.4")]) == \
        "127.0.0.1 localhost\n1.2.3.4\ta\n"


@pytest.fixture
def host_resolv(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "resolv.conf", tmp_path / "systemd-resolv.conf"


def test_resolv_conf_rules(host_resolv: tuple[Path, Path]) -> None:
    host, systemd = host_resolv
    host.write_text("# host\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp.example\n"
                    "options edns0\n")
    kw = {"host_file": str(host), "systemd_file": str(systemd)}
    # loopback dropped, the rest kept
    assert resolv_text(**kw) == ("# host\nnameserver 10.1.1.1\nsearch corp.example\n"
                                 "options edns0\n")
    # the host's network keeps it all
    assert resolv_text(host_network=True, **kw) == host.read_text()
    # --dns replaces the nameservers, --dns-search/--dns-option the rest
    opts = etc_options(dns=["9.9.9.9", "2001:db8::53"], dns_search=["a.example", "b.example"],
                       dns_options=["ndots:2"])
    assert resolv_text(opts, **kw) == ("# host\nnameserver 9.9.9.9\nnameserver 2001:db8::53\n"
                                       "search a.example b.example\noptions ndots:2\n")
    assert "search" not in resolv_text(etc_options(dns_search=["."]), **kw)
    # only loopback: systemd-resolved's upstreams when it has some, else docker's fallback
    host.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n")
    assert resolv_text(**kw) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch .\n" \
        "options edns0 trust-ad\n"
    systemd.write_text("nameserver 192.0.2.53\nsearch lan\n")
    assert resolv_text(**kw) == "nameserver 192.0.2.53\nsearch lan\n"
    # a network's own resolver (the nameservers= of a caller) replaces them too
    # (docker's ndots:0 with it), and wins over --dns
    assert resolv_text(nameservers=["127.0.0.11"], **kw) == \
        "nameserver 127.0.0.11\nsearch lan\noptions ndots:0\n"
    assert resolv_text(etc_options(dns=["9.9.9.9"]), nameservers=["127.0.0.11"], **kw) == \
        "nameserver 127.0.0.11\nsearch lan\noptions ndots:0\n"


@pytest.mark.parametrize("kw,needle", [
    ({"dns": ["1.2.3.x"]}, "'1.2.3.x'"),
    ({"dns": ["10.0.0.1\nnameserver 6.6.6.6"]}, "\\n"),
    ({"dns_search": ["a..b"]}, "'a..b'"),
    ({"dns_search": ["a.example\nnameserver 6.6.6.6"]}, "\\n"),
    ({"dns_options": ["ndots:1 rotate"]}, "'ndots:1 rotate'"),
    ({"dns_options": ["x\nnameserver 6.6.6.6"]}, "\\n"),
    ({"add_hosts": {"db": "nope"}}, "'nope'"),
])
def test_bad_etc_options(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        etc_options(**kw)  # type: ignore[arg-type]
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_options_empty() -> None:
    assert EtcOptions().empty and not etc_options(dns=["1.1.1.1"]).empty


# ------------------------------------------------------ real containers

def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def _run(root: str, rootfs: str, *args: str) -> str:
    return _ok(cli_at(root, "run", "--rm", *args, "--rootfs", rootfs, "--", "sh", "-c",
                      "cat /etc/hosts; echo ==; cat /etc/resolv.conf; echo ==; hostname; "
                      "echo ==; ping -c1 -W2 localhost | head -1"))


@pytest.mark.parametrize("mode", ["none", "host", "bridge"])
def test_localhost_resolves_in_every_mode(private_root: str, rootfs: str, mode: str) -> None:
    hosts, resolv, hostname, ping = _run(private_root, rootfs, "--network", mode).split("==\n")
    assert ping.startswith("PING localhost (127.0.0.1)"), ping
    assert "127.0.0.1" in hosts and "localhost" in hosts
    if mode == "host":
        assert hostname.strip() == os.uname().nodename  # docker: the host's
        with open("/etc/hosts") as f:
            assert hosts == f.read()
    else:
        assert hosts.startswith(DEFAULT_HOSTS)
        assert len(hostname.strip()) == 12
        assert "nameserver 127." not in resolv
    if mode != "host":  # the container's own line: only with an address
        assert (hostname.strip() in hosts) == (mode == "bridge")


def test_localhost_resolves_in_container_mode(private_root: str, rootfs: str) -> None:
    _ok(cli_at(private_root, "run", "-d", "--name", "netowner", "--rootfs", rootfs, "--",
               "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"))
    out = _ok(cli_at(private_root, "run", "--rm", "--network", "container:netowner",
                     "--rootfs", rootfs, "--", "sh", "-c",
                     "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://localhost:8080/hostname"
                     " && break; sleep 0.2; done"))
    rec = json.loads(_ok(cli_at(private_root, "inspect", "netowner")))[0]
    assert out.strip() == rec["Config"]["Hostname"]  # through `localhost`, the owner's lo
    # and the Python API's container mode
    with Container(["sleep", "30"], rootfs=rootfs, network="bridge", hostname="owner") as a:
        from nsprim.network import NetworkMode

        r = run(["sh", "-c", "cat /etc/hosts; ping -c1 -W2 localhost | head -1"],
                rootfs=rootfs, network=NetworkMode.container(a.pid), capture_output=True,
                timeout=30)
        assert b"PING localhost (127.0.0.1)" in r.stdout, r.stderr

        # a Container target: its own files, as docker shares them
        r = run(["cat", "/etc/hosts", "/etc/hostname"], rootfs=rootfs,
                network=NetworkMode.container(a), capture_output=True, timeout=30)
        assert r.stdout.endswith(f"{a.ip_address}\towner\nowner\n".encode()), r.stdout
        a.kill()


def test_add_host_dns_hostname_domainname(private_root: str, rootfs: str) -> None:
    out = _run(private_root, rootfs, "--add-host", "db:10.1.2.3", "--add-host", "v6=[::1]",
               "--add-host", "host.docker.internal:host-gateway", "--hostname", "web",
               "--domainname", "example.com", "--dns", "192.0.2.53", "--dns", "2001:db8::53",
               "--dns-search", "corp.example", "--dns-option", "ndots:3")
    hosts, resolv, hostname, ping = out.split("==\n")
    assert ping.startswith("PING localhost (127.0.0.1)")
    assert hostname == "web\n"
    lines = hosts.splitlines()
    assert lines[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert lines[6:9] == ["10.1.2.3\tdb", "::1\tv6", lines[8]]
    gw, name = lines[8].split("\t")
    assert name == "host.docker.internal" and gw.endswith(".1")
    addr, names = lines[9].split("\t")
    assert names == "web.example.com web" and addr.startswith(gw.rsplit(".", 2)[0])
    assert resolv.splitlines()[-4:] == ["nameserver 192.0.2.53", "nameserver 2001:db8::53",
                                        "search corp.example", "options ndots:3"]
    assert not any(line.startswith("nameserver") for line in resolv.splitlines()[:-4])


def test_added_names_resolve_inside(private_root: str, rootfs: str) -> None:
    out = _ok(cli_at(private_root, "run", "--rm", "--network", "none", "--add-host",
                     "me4:127.0.0.1", "--add-host", "me6:::1", "--rootfs", rootfs, "--",
                     "sh", "-c", "ping -c1 -W2 me4 | head -1; ping -c1 -W2 me6 | head -1"))
    assert out.splitlines() == ["PING me4 (127.0.0.1): 56 data bytes",
                                "PING me6 (::1): 56 data bytes"]


def test_inspect_shows_etc_fields(private_root: str, rootfs: str) -> None:
    _ok(cli_at(private_root, "create", "--name", "etcs", "--add-host", "db:10.1.2.3",
               "--dns", "192.0.2.53", "--dns-search", "corp.example", "--dns-option",
               "ndots:3", "--domainname", "example.com", "--rootfs", rootfs, "--", "true"))
    info = json.loads(_ok(cli_at(private_root, "inspect", "etcs")))[0]
    hc = info["HostConfig"]
    assert (hc["ExtraHosts"], hc["Dns"], hc["DnsSearch"], hc["DnsOptions"]) == \
        (["db:10.1.2.3"], ["192.0.2.53"], ["corp.example"], ["ndots:3"])
    assert info["Config"]["Domainname"] == "example.com"
    _ok(cli_at(private_root, "create", "--name", "plain", "--rootfs", rootfs, "--", "true"))
    hc = json.loads(_ok(cli_at(private_root, "inspect", "plain")))[0]["HostConfig"]
    # docker's shape when none is given
    assert (hc["ExtraHosts"], hc["Dns"], hc["DnsSearch"], hc["DnsOptions"]) == \
        (None, [], [], [])


def test_library_api(rootfs: str) -> None:
    need(os.geteuid() == 0, "needs root")
    r = run(["sh", "-c", "cat /etc/hosts /etc/resolv.conf"], rootfs=rootfs, network="none",
            add_hosts={"db": "10.1.2.3"}, dns=["192.0.2.53"], dns_options=["edns0"],
            capture_output=True)
    assert r.returncode == 0, r.stderr
    assert b"10.1.2.3\tdb\n" in r.stdout and r.stdout.startswith(DEFAULT_HOSTS.encode())
    assert r.stdout.endswith(b"nameserver 192.0.2.53\noptions edns0\n")
    # a bare rootfs run (network=None) keeps the rootfs's own files: nothing bound
    r = run(["grep", "-c", " /etc/hosts ", "/proc/self/mountinfo"], rootfs=rootfs,
            capture_output=True)
    assert r.stdout == b"0\n"
    r = run(["grep", "-c", " /etc/hosts ", "/proc/self/mountinfo"], rootfs=rootfs,
            network="none", capture_output=True)
    assert r.stdout == b"1\n"
    with pytest.raises(ConfigError, match="'1.2.3.x'"):
        Container(["true"], rootfs=rootfs, dns=["1.2.3.x"])


def test_run_rm_leaves_no_etc_dir(private_root: str, rootfs: str) -> None:
    for mode in ("none", "host", "bridge"):
        _run(private_root, rootfs, "--network", mode, "--add-host", "a:1.2.3.4")
    for d in ("containers", "etc"):
        path = os.path.join(private_root, "run", d)
        assert not os.path.isdir(path) or os.listdir(path) == [], d


# ------------------------------------------------------- IPv6 publishing

def _get(url: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def _can_bind(family: socket.AddressFamily, ip: str, port: int) -> bool:
    """Whether a host server could listen there (SO_REUSEADDR, as servers
    bind: the proxied connections' TIME_WAIT does not count)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            s.listen()
        except OSError:
            return False
    return True


def _ipv6() -> bool:
    return _can_bind(socket.AF_INET6, "::1", 0)


def test_publish_on_ipv4_and_ipv6(private_root: str, rootfs: str) -> None:
    need(_ipv6(), "needs IPv6 on the host's loopback")
    port = 19190
    _ok(cli_at(private_root, "run", "-d", "--name", "web6", "--hostname", "web6", "-p",
               f"{port}:80", "--rootfs", rootfs, "--", "httpd", "-f", "-p", "80", "-h",
               "/etc"))
    try:
        # a real HTTP client on both families reaches the container
        assert _get(f"http://127.0.0.1:{port}/hostname") == b"web6\n"
        assert _get(f"http://[::1]:{port}/hostname") == b"web6\n"
        for _ in range(20):  # many connections, one after another
            assert _get(f"http://[::1]:{port}/hostname") == b"web6\n"
        # both addresses are held: no host process can take them
        assert not _can_bind(socket.AF_INET, "127.0.0.1", port)
        assert not _can_bind(socket.AF_INET6, "::1", port)
        # docker v28's shapes
        ps = _ok(cli_at(private_root, "ps", "--format", "{{.Ports}}"))
        assert ps == f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp\n"
        assert _ok(cli_at(private_root, "port", "web6")) == \
            f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
        assert _ok(cli_at(private_root, "port", "web6", "80")) == \
            f"0.0.0.0:{port}\n[::]:{port}\n"
        info = json.loads(_ok(cli_at(private_root, "inspect", "web6")))[0]
        assert info["NetworkSettings"]["Ports"] == {"80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": str(port)},
            {"HostIp": "::", "HostPort": str(port)}]}
        assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "",
                                                                  "HostPort": str(port)}]}
        js = json.loads(_ok(cli_at(private_root, "ps", "--format", "json")))
        assert js["Ports"] == f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp"
    finally:
        _ok(cli_at(private_root, "rm", "-f", "web6"))
    # everything let go: the ports, and the proxy process with them
    deadline = time.monotonic() + 5
    while not _can_bind(socket.AF_INET6, "::", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _can_bind(socket.AF_INET6, "::", port)
    assert _can_bind(socket.AF_INET, "0.0.0.0", port)


def test_publish_on_one_family_only(private_root: str, rootfs: str) -> None:
    need(_ipv6(), "needs IPv6 on the host's loopback")
    _ok(cli_at(private_root, "run", "-d", "--name", "fam", "--hostname", "fam",
               "-p", "[::1]:19191:80", "-p", "0.0.0.0:19192:80", "-p", "[::]::80",
               "--rootfs", rootfs, "--", "httpd", "-f", "-p", "80", "-h", "/etc"))
    try:
        assert _get("http://[::1]:19191/hostname") == b"fam\n"
        assert _refused("127.0.0.1", 19191)
        assert _get("http://127.0.0.1:19192/hostname") == b"fam\n"
        assert _refused("::1", 19192)
        ports = json.loads(_ok(cli_at(private_root, "inspect", "fam")))[0][
            "NetworkSettings"]["Ports"]["80/tcp"]
        any6 = [p for p in ports if p["HostIp"] == "::"]
        assert len(any6) == 1 and 32768 <= int(any6[0]["HostPort"]) <= 60999
        assert _get(f"http://[::1]:{any6[0]['HostPort']}/hostname") == b"fam\n"
        assert {(p["HostIp"], p["HostPort"]) for p in ports} >= {("::1", "19191"),
                                                                ("0.0.0.0", "19192")}
        ps = _ok(cli_at(private_root, "ps", "--format", "{{.Ports}}")).strip()
        assert "[::1]:19191->80/tcp" in ps and "0.0.0.0:19192->80/tcp" in ps
        # a second container cannot have an address the first holds, in docker's words
        r = cli_at(private_root, "run", "--rm", "-p", "[::1]:19191:80", "--rootfs", rootfs,
                   "--", "true")
        assert r.returncode == 125
        assert r.stderr.strip() == "nsprim: Bind for [::1]:19191 failed: port is already " \
            "allocated", r.stderr
    finally:
        _ok(cli_at(private_root, "rm", "-f", "fam"))


def test_api_ipv6_udp_through_the_proxy(rootfs: str) -> None:
    need(_ipv6(), "needs IPv6 on the host's loopback")
    need(os.path.exists("/usr/bin/python3"), "needs Debian's python3 for a UDP server")
    from nsprim import Bind
    from nsprim.network import NetworkMode

    server = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.bind(('0.0.0.0', 53))\nprint('ready', flush=True)\nwhile True:\n"
              "    d, peer = s.recvfrom(2048)\n    s.sendto(b'echo:' + d, peer)\n")
    libs = [Bind(p, p, readonly=True) for p in ("/usr", "/lib", "/lib64") if os.path.isdir(p)]
    c = Container(["/usr/bin/python3", "-c", server], rootfs=rootfs, mounts=libs,
                  network=NetworkMode.bridge(["[::1]:15354:53/udp", "15355:53/udp"]),
                  stdout=subprocess.PIPE)
    with c:
        assert c.stdout is not None and c.stdout.readline() == b"ready\n"
        for host, port in (("::1", 15354), ("::1", 15355), ("127.0.0.1", 15355)):
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                for i in range(3):
                    s.sendto(b"ping%d" % i, (host, port))
                    assert s.recvfrom(100)[0] == b"echo:ping%d" % i
        assert sorted((p["host_ip"], p["host_port"]) for p in c.ports) == \
            [("", 15355), ("::", 15355), ("::1", 15354)]
        c.kill()
