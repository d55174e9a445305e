"""Networking with real traffic: TCP and UDP between the host and containers
and between containers -- only on loopback and the containers' own addresses."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim import Bind, ConfigError, Container, run
from nsprim.network import NetworkMode, parse_publish
from nsprim.network.bridge import BRIDGE, TABLE, collect

from .conftest import need, nsprim_cli


def host_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines()]


def nft_tables() -> list[str]:
    """The tables, one line each ("table ip nsprim-x" is not "table ip nsprim")."""
    return subprocess.run(["nft", "list", "tables"], capture_output=True,
                          text=True).stdout.splitlines()


@pytest.fixture(autouse=True)
def _nothing_left() -> Iterator[None]:
    need(os.geteuid() == 0, "needs root")
    need(subprocess.run(["nft", "--version"], capture_output=True).returncode == 0,
         "needs nftables (apt-get install nftables)")
    # other state roots (other test runs on this host) may have containers on
    # the bridge: what was there before the test must stay, nothing new may
    before = {n for n in host_links() if n.startswith(("nsp", BRIDGE))}
    table_before = f"table ip {TABLE}" in nft_tables()
    yield

    def ours() -> list[str]:
        return [n for n in host_links() if n.startswith(("nsp", BRIDGE)) and n not in before]

    # veths of ended containers go with their namespaces, which the kernel
    # tears down in the background: give it a moment
    deadline = time.monotonic() + 5
    while ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ours()
    if not table_before:
        assert f"table ip {TABLE}" not in nft_tables()
        assert f"table bridge {TABLE}" not in nft_tables()  # the anti-spoofing table


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def wait_port(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def httpd(rootfs: str, **kw: object) -> Container:
    # serves /etc: /etc/hostname answers who is behind the port
    return Container(["httpd", "-f", "-p", "80", "-h", "/etc"], rootfs=rootfs, **kw)  # type: ignore[arg-type]


def test_published_port_from_host_and_other_namespace(rootfs: str) -> None:
    with httpd(rootfs, network=NetworkMode.bridge(["18080:80"]), hostname="web") as c:
        assert c.ip_address is not None and c.ip_address.startswith("10.")
        wait_port(c.ip_address, 80)
        assert http_get("http://127.0.0.1:18080/hostname") == b"web\n"
        gateway = c.attachment.gateway if c.attachment else ""
        assert http_get(f"http://{gateway}:18080/hostname") == b"web\n"
        # from another container's network namespace, through the host's port
        r = run(["wget", "-qO-", f"http://{gateway}:18080/hostname"], rootfs=rootfs,
                network="bridge", capture_output=True, timeout=30)
        assert r.stdout == b"web\n", r.stderr
        # and container to container directly
        r = run(["wget", "-qO-", f"http://{c.ip_address}/hostname"], rootfs=rootfs,
                network="bridge", capture_output=True, timeout=30)
        assert r.stdout == b"web\n"


def test_unpublished_port_unreachable(rootfs: str) -> None:
    with httpd(rootfs, network=NetworkMode.bridge(["18081:80"])) as c:
        assert c.ip_address is not None
        wait_port(c.ip_address, 80)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 80), timeout=1).close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 18082), timeout=1).close()
    # after the container, its port is gone
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 18081), timeout=1).close()


def test_bound_host_ip_and_udp(rootfs: str) -> None:
    need(os.path.exists("/usr/bin/python3"), "needs Debian's python3 for a UDP server")
    server = textwrap.dedent("""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 53))
        print("ready", flush=True)
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(b"echo:" + data, peer)
    """)
    libs = [Bind(p, p, readonly=True) for p in ("/usr", "/lib", "/lib64") if os.path.isdir(p)]
    c = Container(["/usr/bin/python3", "-c", server], rootfs=rootfs, mounts=libs,
                  network=NetworkMode.bridge(["127.0.0.1:15353:53/udp"]),
                  stdout=subprocess.PIPE)
    with c:
        assert c.stdout is not None and c.stdout.readline() == b"ready\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"ping", ("127.0.0.1", 15353))
            assert s.recvfrom(100)[0] == b"echo:ping"
        assert c.ports == [{"proto": "udp", "host_ip": "127.0.0.1", "host_port": 15353,
                            "container_port": 53}]


def test_container_mode_shares_loopback(rootfs: str) -> None:
    with Container(["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"], rootfs=rootfs,
                   network="bridge", hostname="first") as a:
        time.sleep(0.2)
        r = run(["wget", "-qO-", "http://127.0.0.1:8080/hostname"], rootfs=rootfs,
                network=NetworkMode.container(a), capture_output=True, timeout=30)
        assert r.stdout == b"first\n", r.stderr
        r = run(["cat", "/sys/class/net/eth0/address"], rootfs=rootfs,
                network=NetworkMode.container(a), capture_output=True)
        assert r.returncode == 0  # the same eth0


def test_none_has_only_lo_and_host_is_host(rootfs: str) -> None:
    r = run(["ls", "/sys/class/net"], rootfs=rootfs, network=NetworkMode.NONE,
            capture_output=True)
    assert r.stdout.split() == [b"lo"]
    r = run(["ls", "/sys/class/net"], rootfs=rootfs, network=NetworkMode.HOST,
            capture_output=True)
    assert sorted(r.stdout.decode().split()) == sorted(os.listdir("/sys/class/net"))


def test_etc_files_written(rootfs: str) -> None:
    r = run(["sh", "-c", "cat /etc/hostname; grep -c $(hostname) /etc/hosts; "
             "grep -c '^nameserver 127' /etc/resolv.conf"], rootfs=rootfs, network="bridge",
            hostname="named", capture_output=True)
    assert r.stdout.split() == [b"named", b"1", b"0"]


def test_twenty_concurrent_containers_distinct_addresses(rootfs: str) -> None:
    script = textwrap.dedent(f"""
        import sys, json
        from nsprim import Container
        cs = [Container(["sleep", "30"], rootfs={rootfs!r}, network="bridge").start()
              for _ in range(5)]
        print(json.dumps([c.ip_address for c in cs]), flush=True)
        sys.stdin.read()
        for c in cs:
            c.kill(); c.wait()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    addrs: list[str] = []
    try:
        for p in procs:
            assert p.stdout is not None
            addrs += json.loads(p.stdout.readline())
    finally:
        for p in procs:
            p.communicate(timeout=60)
    assert len(addrs) == 20 and len(set(addrs)) == 20


def test_bandwidth_limit_is_roughly_the_rate(rootfs: str) -> None:
    size = 1_500_000  # bytes; at 8 Mbit/s about 1.5 s

    def transfer(bandwidth: str | None) -> float:
        # busybox nc stops when its stdin ends: give it one that does not
        with Container(["sh", "-c", "sleep 60 | nc -l -p 5000 | wc -c"], rootfs=rootfs,
                       network=NetworkMode.bridge(bandwidth=bandwidth),
                       stdout=subprocess.PIPE) as srv:
            assert srv.ip_address is not None and srv.stdout is not None
            time.sleep(0.2)
            t = time.monotonic()
            # the sender stays up until everything is delivered (its namespace
            # going away would drop what is still queued)
            with Container(["sh", "-c", f"head -c {size} /dev/zero | "
                            f"nc {srv.ip_address} 5000; sleep 60"], rootfs=rootfs,
                           network="bridge"):
                received = srv.stdout.readline()
                elapsed = time.monotonic() - t
        assert int(received) == size
        return elapsed

    limited = transfer("8mbit")
    unlimited = transfer(None)
    expected = size * 8 / 8e6
    assert expected * 0.5 < limited < expected * 4, (limited, expected)
    assert limited / unlimited > 3, (limited, unlimited)


def test_host_port_already_published(rootfs: str) -> None:
    with httpd(rootfs, network=NetworkMode.bridge(["18090:80"])):
        with pytest.raises(OSError, match="18090"):
            httpd(rootfs, network=NetworkMode.bridge(["18090:80"])).start()


def test_subnet_clash_is_refused(rootfs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    route = subprocess.run(["ip", "-o", "-4", "route"], capture_output=True, text=True).stdout
    link_routes = [ln.split()[0] for ln in route.splitlines()
                   if "/" in ln.split()[0] and not ln.startswith("10.88.")]
    need(bool(link_routes), "needs a host route to clash with")
    monkeypatch.setenv("NSPRIM_SUBNET", link_routes[0])
    with pytest.raises(ConfigError, match="overlaps"):
        run(["true"], rootfs=rootfs, network="bridge")


def test_killed_owner_is_collected(rootfs: str) -> None:
    script = textwrap.dedent(f"""
        import time
        from nsprim import Container
        c = Container(["sleep", "60"], rootfs={rootfs!r}, network="bridge",
                      die_with_parent=True).start()
        print(c.ip_address, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    addr = p.stdout.readline().strip()
    assert addr.startswith("10.")
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(0.2)  # the container died with its parent
    assert collect()  # its lease, veth and ports are collected
    assert f"table ip {TABLE}" not in nft_tables()
    assert f"table bridge {TABLE}" not in nft_tables()


@pytest.mark.parametrize("spec", ["abc", "70000:80", "80:0", "1:2:3:4", "80/sctp",
                                  "9000-9001:80-82", "::1:80:80"])
def test_bad_publish_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match="invalid port specification"):
        parse_publish(spec)


@pytest.mark.parametrize("args,needle", [
    (["-p", "abc"], "'abc'"),
    (["-p", "70000:80"], "70000"),
    (["--network", "moon"], "moon"),
    (["--network", "none", "-p", "80:80"], "bridge"),
    (["--network", "host", "--network-bandwidth", "8mbit"], "bridge"),
    (["--network-bandwidth", "fast"], "fast"),
])
def test_cli_bad_network_input(rootfs: str, args: list[str], needle: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, *args, "--", "true")
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_cli_publish(rootfs: str, tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "run", "--rm", "--rootfs", rootfs,
                          "-p", "18085:80", "--hostname", "cli", "--", "httpd", "-f", "-p",
                          "80", "-h", "/etc"], stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", 18085)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert http_get("http://127.0.0.1:18085/hostname") == b"cli\n"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)  # forwarded; httpd as PID 1 ignores it...
        try:
            p.wait(2)
        except subprocess.TimeoutExpired:
            p.kill()  # ...so the CLI dies, and the container with it (die_with_parent)
            p.wait()
    time.sleep(0.3)
    collect()


# ------------------------------------------- published ports and host sockets

def host_socket(proto: str, ip: str, port: int) -> socket.socket:
    """A host process's socket on `ip`:`port`, bound as servers bind (TCP:
    SO_REUSEADDR, like python's http.server, and listening)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp"
                      else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        if proto == "tcp":
            s.listen()
    except BaseException:
        s.close()
        raise
    return s


def can_bind(proto: str, ip: str, port: int) -> bool:
    try:
        host_socket(proto, ip, port).close()
    except OSError as e:
        assert e.errno == errno.EADDRINUSE, e
        return False
    return True


def cli_names(*args: str) -> list[str]:
    r = nsprim_cli("ps", *args, "--format", "json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["Names"] for line in r.stdout.splitlines()]


@pytest.mark.parametrize("listen,spec,message", [
    (("tcp", "127.0.0.1"), "{port}:80", "Bind for 0.0.0.0:{port} failed"),
    (("tcp", "0.0.0.0"), "127.0.0.1:{port}:80", "Bind for 127.0.0.1:{port} failed"),
    (("udp", "127.0.0.1"), "{port}:53/udp", "Bind for 0.0.0.0:{port}/udp failed"),
])
def test_cli_publish_refuses_a_port_a_host_process_holds(
        rootfs: str, listen: tuple[str, str], spec: str, message: str) -> None:
    port = 19110
    with host_socket(*listen, port):
        for extra in (["--rm"], []):
            name = f"taken{len(extra)}"
            r = nsprim_cli("run", "-d", *extra, "--name", name, "--rootfs", rootfs,
                           "-p", spec.format(port=port), "--", "sleep", "30")
            assert r.returncode == 125, r.stdout
            lines = r.stderr.strip().splitlines()
            want = "nsprim: " + message.format(port=port)
            assert len(lines) == 1 and lines[0].startswith(want), r.stderr
            assert "already in use" in lines[0]
            assert name not in cli_names()  # nothing runs
            if extra:
                assert name not in cli_names("-a")  # and --rm leaves no record
            else:
                assert nsprim_cli("rm", name).returncode == 0
        # the host process keeps its port, and nothing of nsprim's is on it
        assert not can_bind(listen[0], "127.0.0.1", port)
    assert can_bind(listen[0], "127.0.0.1", port)


def test_api_publish_refuses_a_port_a_host_process_holds(rootfs: str) -> None:
    with host_socket("tcp", "0.0.0.0", 19111):
        c = httpd(rootfs, network=NetworkMode.bridge(["19111:80"]))
        with pytest.raises(OSError, match=r"^Bind for 0\.0\.0\.0:19111 failed: address "
                           "already in use$") as e:
            c.start()
        assert e.value.errno == errno.EADDRINUSE
        assert c.attachment is None


def test_published_port_is_held_while_the_container_lives(rootfs: str) -> None:
    port = 19112
    with httpd(rootfs, network=NetworkMode.bridge([f"{port}:80", f"{port}:53/udp"]),
               hostname="held") as c:
        assert c.ip_address is not None
        wait_port(c.ip_address, 80)
        for proto, ip in (("tcp", "127.0.0.1"), ("tcp", "0.0.0.0"), ("udp", "127.0.0.1"),
                          ("udp", "0.0.0.0")):
            assert not can_bind(proto, ip, port), (proto, ip)
        # the holder does not take the traffic: DNAT still delivers to the container
        for _ in range(3):
            assert http_get(f"http://127.0.0.1:{port}/hostname") == b"held\n"
        # another container cannot have it either, in docker's words
        with pytest.raises(OSError, match=f"Bind for 0.0.0.0:{port} failed: port is "
                           "already allocated"):
            httpd(rootfs, network=NetworkMode.bridge([f"{port}:80"])).start()
    for proto in ("tcp", "udp"):
        assert can_bind(proto, "0.0.0.0", port)


def test_detached_container_holds_its_port_across_a_restart(rootfs: str,
                                                            tmp_path: Path) -> None:
    port = 19113
    # fails once (the supervisor restarts it), then serves
    script = ("[ -e /state/ran ] && exec httpd -f -p 80 -h /etc; touch /state/ran; exit 1")
    r = nsprim_cli("run", "-d", "--name", "heldd", "--restart", "on-failure:3", "--hostname",
                   "heldd", "-v", f"{tmp_path}:/state", "-p", f"{port}:80", "--rootfs", rootfs,
                   "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert http_get(f"http://127.0.0.1:{port}/hostname", timeout=1) == b"heldd\n"
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        info = json.loads(nsprim_cli("inspect", "heldd").stdout)[0]
        assert info["RestartCount"] == 1, info
        assert not can_bind("tcp", "127.0.0.1", port)
        # the CLI that started it is gone: the supervisor (the shim) holds the port
        assert http_get(f"http://127.0.0.1:{port}/hostname") == b"heldd\n"
    finally:
        assert nsprim_cli("rm", "-f", "heldd").returncode == 0
    assert can_bind("tcp", "127.0.0.1", port)
