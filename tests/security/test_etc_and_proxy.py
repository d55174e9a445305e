"""The /etc files nsprim binds into every container, and the userland proxy
of IPv6 published ports, tried the way an attacker would:

- a rootfs whose /etc/hosts, /etc/resolv.conf or /etc itself is a symlink
  pointing out of the root does not make nsprim write, or bind over, a host
  file (the targets are resolved inside the root);
- a value given to --add-host/--dns* cannot forge another line of
  /etc/hosts or resolv.conf (tests/security/test_input.py has the rows; here
  the Python API's mapping form);
- the proxy a detached container leaves for its IPv6 ports holds nothing but
  its listening sockets and the container's pidfd (no lock file, no pipe of
  the container's, no state dir), and it ends with the container;
- a container cannot use the proxy to reach a host service on loopback:
  it connects only to the container's own address;
- a client flooding connections to a container that does not accept them
  cannot grow the proxy: connections count from accept (connecting ones
  too), connects time out, and out of fds it pauses instead of spinning.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsprim import ConfigError, run

from ..conftest import need


def _cli(root: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nsprim", "--root", root, *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def state(tmp_path: Path) -> str:
    need(os.geteuid() == 0, "needs root")
    return str(tmp_path / "state")


@pytest.mark.parametrize("link", ["etc/hosts", "etc/resolv.conf", "etc/hostname", "etc"])
def test_symlinked_etc_files_stay_inside_the_root(hostile_rootfs: str, tmp_path: Path,
                                                  state: str, link: str) -> None:
    host = tmp_path / "host-etc"
    host.mkdir()
    for name in ("hosts", "resolv.conf", "hostname"):
        (host / name).write_text(f"host {name}\n")
    target = os.path.join(hostile_rootfs, link)
    if os.path.isdir(target) and not os.path.islink(target):
        import shutil

        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)
    # the link names the host's directory; resolved inside the root it names a
    # decoy there, which is what must be used
    depth = "../" * 12
    dest = f"{depth}{host}" if link == "etc" else f"{depth}{host}/{os.path.basename(link)}"
    decoy = Path(hostile_rootfs + str(host))
    decoy.mkdir(parents=True)
    for name in ("hosts", "resolv.conf", "hostname"):
        (decoy / name).write_text(f"decoy {name}\n")
    if link == "etc":
        for name in ("passwd", "group"):
            (decoy / name).write_text(_etc_db(name))
    os.symlink(dest, target)
    r = _cli(state, "run", "--rm", "--network", "none", "--add-host", "db:10.1.2.3",
             "--rootfs", hostile_rootfs, "--", "sh", "-c",
             "cat /etc/hosts; ping -c1 -W2 localhost | head -1")
    assert r.returncode == 0, r.stderr
    assert "10.1.2.3\tdb" in r.stdout and "PING localhost (127.0.0.1)" in r.stdout
    # the host's files are untouched and nothing was bound over them; the decoy
    # inside the root was the mount point (its own content stays on disk)
    for name in ("hosts", "resolv.conf", "hostname"):
        assert (host / name).read_text() == f"host {name}\n"
        assert (decoy / name).read_text() == f"decoy {name}\n"
    with open("/proc/self/mountinfo") as f:
        assert str(host) not in f.read()


def _etc_db(name: str) -> str:
    return "root:x:0:0:root:/root:/bin/sh\n" if name == "passwd" else "root:x:0:\n"


def test_api_mapping_form_cannot_forge_lines() -> None:
    for bad in ({"db\n10.0.0.1 evil": "10.0.0.2"}, {"db": "10.0.0.1\n6.6.6.6 evil"},
                {"db 10.0.0.1 evil": "10.0.0.2"}):
        with pytest.raises(ConfigError) as e:
            run(["true"], rootfs="/nonexistent", network="none", add_hosts=bad)
        assert "\n" not in str(e.value)


def _proxy_pids(port: int) -> set[int]:
    """Pids of the processes that have a socket listening on [::]:port."""
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    pids = set()
    for line in out.splitlines():
        if "[::]" not in line.split()[3]:
            continue
        for part in line.split("pid=")[1:]:
            pids.add(int(part.split(",")[0]))
    return pids


def test_proxy_process_holds_only_its_sockets_and_ends_with_the_container(
        hostile_rootfs: str, state: str) -> None:
    need(subprocess.run(["ss", "-V"], capture_output=True).returncode == 0,
         "needs ss (iproute2)")
    port = 19195
    r = _cli(state, "run", "-d", "--name", "px", "-p", f"{port}:80", "--rootfs",
             hostile_rootfs, "--", "httpd", "-f", "-p", "80", "-h", "/etc")
    assert r.returncode == 0, r.stderr
    try:
        # (the supervisor reports "started" before it execs its shim: until
        # then it holds the socket too)
        deadline = time.monotonic() + 10
        while True:
            pids = _proxy_pids(port)
            proxies = [p for p in pids
                       if open(f"/proc/{p}/comm").read().strip().startswith("python")]
            if len(proxies) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(proxies) == 1, pids
        proxy = proxies[0]
        kinds = []
        for fd in os.listdir(f"/proc/{proxy}/fd"):
            path = os.readlink(f"/proc/{proxy}/fd/{fd}")
            if int(fd) <= 2:
                assert path == "/dev/null", (fd, path)
                continue
            mode = os.stat(f"/proc/{proxy}/fd/{fd}").st_mode
            kinds.append("socket" if stat.S_ISSOCK(mode) else path)
        # the listening socket and the container's pidfd; of its own, an epoll
        # and one pipe (both ends): no file, directory, lock or other pipe
        assert kinds.count("socket") == 1 and kinds.count("anon_inode:[pidfd]") == 1, kinds
        rest = [k for k in kinds if k not in ("socket", "anon_inode:[pidfd]",
                                              "anon_inode:[eventpoll]")]
        assert len(rest) == 2 and rest[0] == rest[1] and rest[0].startswith("pipe:"), kinds
        # its own session: no terminal, nothing of the CLI's
        assert os.getsid(proxy) == proxy
        info = json.loads(_cli(state, "inspect", "px").stdout)[0]
        assert info["State"]["Running"]
    finally:
        assert _cli(state, "rm", "-f", "px").returncode == 0
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{proxy}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{proxy}")


def test_proxy_reaches_only_the_container(hostile_rootfs: str, state: str) -> None:
    """A host service on loopback stays out of reach: the proxy's upstream is
    the container's address, whatever the client sends."""
    port, ctr = 19196, 19197
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as host_srv:
        host_srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host_srv.bind(("127.0.0.1", ctr))
        host_srv.listen()
        host_srv.settimeout(0.5)
        # the container listens on nothing: connections through the proxy end at once
        r = _cli(state, "run", "-d", "--name", "px2", "-p", f"{port}:{ctr}", "--rootfs",
                 hostile_rootfs, "--", "sleep", "60")
        assert r.returncode == 0, r.stderr
        try:
            for _ in range(3):
                try:
                    with socket.create_connection(("::1", port), timeout=2) as c:
                        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                        c.settimeout(2)
                        assert c.recv(100) == b""
                except (ConnectionResetError, ConnectionRefusedError):
                    pass
            with pytest.raises(TimeoutError):
                host_srv.accept()  # the host service saw nothing
        finally:
            assert _cli(state, "rm", "-f", "px2").returncode == 0


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads:")


def _cpu_share(pid: int, seconds: float = 1.0) -> float:
    """The share of one core `pid` used over `seconds` (1.0: a busy loop)."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), _cpu_ticks(pid)
    time.sleep(seconds)
    return (_cpu_ticks(pid) - c0) / hz / (time.monotonic() - t0)


def _open_many(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex(("::1", port))
        out.append(c)
    return out


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_proxy_connection_flood_against_a_container_that_does_not_accept(
        hostile_rootfs: str, state: str) -> None:
    """2,000 connections to [::1]:P of a container whose listener never
    accepts, the proxy's process limited to 256 fds: it keeps one thread,
    stays within its fds, uses far less than a core (no spin at EMFILE), and
    serves again once the flood is gone."""
    import resource

    from nsprim.namespace import Namespace

    need(_has_ipv6_loopback(), "needs IPv6 on loopback")
    need(subprocess.run(["ss", "-V"], capture_output=True).returncode == 0,
         "needs ss (iproute2)")
    port = 19198

    def low_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))

    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", state, "run", "-d",
                        "--name", "px3", "-p", f"{port}:80", "--rootfs", hostile_rootfs,
                        "--", "sleep", "300"], capture_output=True, text=True, timeout=60,
                       preexec_fn=low_fds)
    assert r.returncode == 0, r.stderr
    clients: list[socket.socket] = []
    listener: socket.socket | None = None
    try:
        deadline = time.monotonic() + 10
        while True:
            proxies = [p for p in _proxy_pids(port)
                       if open(f"/proc/{p}/comm").read().strip().startswith("python")]
            if len(proxies) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(proxies) == 1
        proxy = proxies[0]
        with open(f"/proc/{proxy}/limits") as f:
            assert any(line.startswith("Max open files") and line.split()[3] == "256"
                       for line in f)
        # the container listens on 80 but never accepts (its backlog fills;
        # further connects from the proxy stay in progress)
        pid = int(_cli(state, "inspect", "-f", "{{.State.Pid}}", "px3").stdout)
        ns = Namespace.of(pid, "net")
        try:
            listener = ns.run_in(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        finally:
            ns.close()
        listener.bind(("0.0.0.0", 80))
        listener.listen(1)
        for _ in range(4):
            clients += _open_many(port, 500)
            time.sleep(0.2)
        time.sleep(1.0)
        assert os.path.exists(f"/proc/{proxy}")
        threads = _threads(proxy)
        fds = len(os.listdir(f"/proc/{proxy}/fd"))
        share = _cpu_share(proxy)
        assert threads == 1, threads
        assert fds <= 256, fds
        assert share < 0.25, f"the proxy used {share:.0%} of a core while flooded"
        # the flood ends, the container accepts: the proxy serves again
        for c in clients:
            c.close()
        clients = []
        listener.close()
        ns = Namespace.of(pid, "net")
        try:
            listener = ns.run_in(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        finally:
            ns.close()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 80))
        listener.listen(16)
        listener.settimeout(1)
        deadline = time.monotonic() + 20
        served = False
        errors: list[str] = []
        while not served and time.monotonic() < deadline:
            try:
                with socket.create_connection(("::1", port), timeout=2) as c:
                    c.sendall(b"ping")
                    # the flood's late connects may complete first: empty ones
                    while not served:
                        conn, _ = listener.accept()
                        with conn:
                            conn.settimeout(2)
                            served = conn.recv(4) == b"ping"
            except OSError as e:
                errors.append(repr(e))
                time.sleep(0.2)
        assert served, errors
    finally:
        for c in clients:
            c.close()
        if listener is not None:
            listener.close()
        assert _cli(state, "rm", "-f", "px3").returncode == 0


def test_proxy_counts_connections_from_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, on loopback: a target that never accepts; 300 clients.
    The proxy holds at most MAX_CONNS connections (those still connecting
    included), resets the rest, starts no thread per connection, and a
    connect that does not complete ends after CONNECT_TIMEOUT."""
    import threading

    from nsprim.network import proxy as px

    need(_has_ipv6_loopback(), "needs IPv6 on loopback")
    monkeypatch.setattr(px, "MAX_CONNS", 50)
    target = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    target.bind(("127.0.0.1", 0))
    target.listen(1)  # never accepts
    front = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    front.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    front.bind(("::1", 0))
    # a backlog that holds every client: beyond it the kernel drops SYNs or
    # answers with syncookies, and a client whose final ACK was dropped thinks
    # it is connected while the proxy never saw it (no reset ever comes)
    front.listen(512)
    front.setblocking(False)
    threads = threading.active_count()
    clients: list[socket.socket] = []
    p = px.Proxy([px.Listener(front, "tcp", target.getsockname())]).start()
    try:
        clients = _open_many(front.getsockname()[1], 300)
        # every client is either held (connecting to the target) or reset
        reset: set[int] = set()
        deadline = time.monotonic() + 10
        while len(reset) < 250 and time.monotonic() < deadline:
            for i, c in enumerate(clients):
                if i in reset:
                    continue
                try:
                    c.recv(1)
                except ConnectionResetError:
                    reset.add(i)
                except OSError:
                    pass
            time.sleep(0.1)
        assert len(reset) == 250
        assert len(p._conns) == 50
        assert threading.active_count() == threads + 1
    finally:
        p.stop()
        for c in clients:
            c.close()
    # connects that never complete end after CONNECT_TIMEOUT
    monkeypatch.setattr(px, "CONNECT_TIMEOUT", 1.0)
    p = px.Proxy([px.Listener(front, "tcp", target.getsockname())]).start()
    try:
        clients = _open_many(front.getsockname()[1], 10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(p._connecting) < 5:
            time.sleep(0.02)
        assert len(p._connecting) >= 5
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p._connecting:
            time.sleep(0.05)
        assert not p._connecting
    finally:
        p.stop()
        for c in clients:
            c.close()
        front.close()
        target.close()
