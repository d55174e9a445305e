"""What nsprim leaves on the host belongs to nsprim's owner and to its own
state root, tried the way an attacker would:

- another host user can neither read a container's files or volume data nor
  run, from the host, a setuid-root binary a container wrote (issue 10, #7);
- one state root never kills another root's containers, nor removes the
  cgroups, bridge or nft table they use (#8);
- a container cannot reach a host service on 127.0.0.1 through the bridge
  (route_localnet, the CVE-2020-8558 class), while ports published on
  127.0.0.1 still work (#9).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim import Cgroup, Container, run, volumes
from nsprim.cgroup import iter_nsprim_cgroups
from nsprim.namespace import Namespace
from nsprim.network import NetworkMode, bridge
from nsprim.rootfs import OverlayRootfs
from nsprim.state import run_dir, state_root
from nsprim.volumes import Volume

from ..conftest import need

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run `argv` as an unprivileged host user (shell tools only: the test's
    Python is not executable by other users).  Through /bin/sh: setpriv itself
    still holds root's capabilities when it calls execve."""
    return subprocess.run([*NOBODY, "/bin/sh", "-c", 'exec "$@"', "sh", *argv],
                          capture_output=True, text=True, timeout=20)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every host user can traverse (pytest's are 0700), so that
    only nsprim's own modes stand between another user and its state."""
    d = Path(tempfile.mkdtemp(prefix="nsprim-sec-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def payload_layer(tmp_path: Path) -> str:
    """An image layer with /payload: a static binary printing its euid (it
    does not drop a setuid identity, unlike busybox)."""
    need(os.geteuid() == 0, "needs root")
    need(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    need(shutil.which("gcc") is not None, "needs gcc with a static libc")
    src = tmp_path / "euid.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                   'int main(void) { printf("euid=%d\\n", (int)geteuid()); return 0; }\n')
    layer = tmp_path / "layer"
    layer.mkdir()
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(layer / "payload"), str(src)],
                       capture_output=True, text=True)
    need(r.returncode == 0, f"gcc -static failed: {r.stderr[-200:]}")
    return str(layer)


_PLANT = ("cp /payload /suid && chmod 4755 /suid && echo s3cret > /secret && "
          "chmod 644 /secret && cp /payload /vol/suid && chmod 4755 /vol/suid && "
          "echo s3cret > /vol/secret && chmod 644 /vol/secret")


@pytest.mark.parametrize("old_layout", [False, True], ids=["new-root", "root-of-older-version"])
def test_other_users_reach_no_container_file_and_no_setuid_binary(
        rootfs: str, payload_layer: str, public_dir: Path, monkeypatch: pytest.MonkeyPatch,
        old_layout: bool) -> None:
    root = public_dir / "state"
    if old_layout:  # the modes older versions of nsprim left
        for d, mode in ((root, 0o755), (root / "containers", 0o711),
                        (root / "volumes", 0o711), (root / "run", 0o755)):
            d.mkdir(exist_ok=True)
            os.chmod(d, mode)
    monkeypatch.setenv("NSPRIM_ROOT", str(root))
    try:
        with OverlayRootfs([rootfs, payload_layer]) as ov:
            r = run(["sh", "-c", _PLANT], rootfs=ov, mounts=[Volume("secvol", "/vol")],
                    capture_output=True)
            assert r.returncode == 0, r.stderr
            data = volumes.get("secvol").mountpoint
            for d in (ov.path, ov.upper, data):
                # the container did plant them: a setuid-root binary and a secret
                st = os.stat(os.path.join(d, "suid"))
                assert st.st_uid == 0 and st.st_mode & stat.S_ISUID, d
                with open(os.path.join(d, "secret")) as f:
                    assert f.read() == "s3cret\n"
                # ... that no other host user reaches
                cat = as_nobody("/bin/cat", os.path.join(d, "secret"))
                assert cat.returncode != 0 and "s3cret" not in cat.stdout, (d, cat)
                assert "Permission denied" in cat.stderr, cat.stderr
                ex = as_nobody(os.path.join(d, "suid"))
                assert ex.returncode != 0 and "euid=" not in ex.stdout, (d, ex)
                assert "Permission denied" in ex.stderr, ex.stderr
            for d in (state_root(), run_dir()):
                assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0, oct(os.stat(d).st_mode)
                assert as_nobody("/bin/ls", d).returncode != 0
    finally:
        try:
            volumes.remove("secvol")
        except LookupError:
            pass


def test_a_root_owned_by_another_user_is_refused(public_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    need(os.geteuid() == 0, "needs root")
    root = public_dir / "planted"
    root.mkdir(0o777)
    os.chown(root, 65534, 65534)  # another user made it: they could swap anything in it
    monkeypatch.setenv("NSPRIM_ROOT", str(root))
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        state_root()


# --------------------------------------------------------- two state roots


def _cgroup_dirs(c: Container) -> list[str]:
    assert c.cgroup is not None
    return [*c.cgroup.v1_paths.values(), *([c.cgroup.v2_path] if c.cgroup.v2_path else [])]


def _nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return bytes(r.read())


def _wait_http(url: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _http_get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_second_root_never_kills_or_unplugs_the_first_roots_containers(
        rootfs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need(os.geteuid() == 0, "needs root")
    need(shutil.which("nft") is not None, "needs nftables")
    root_a, root_b = str(tmp_path / "root-a"), str(tmp_path / "root-b")
    monkeypatch.setenv("NSPRIM_ROOT", root_a)
    a: list[Container] = []
    dirs_b: set[str] = set()
    addrs_b: set[str | None] = set()
    try:
        for i in range(3):
            c = Container(["httpd", "-f", "-p", "80", "-h", "/etc"], rootfs=rootfs,
                          hostname=f"a{i}", memory="64m", pids=64,
                          network=NetworkMode.bridge())
            a.append(c)
            c.start()
        dirs_a = {d for c in a for d in _cgroup_dirs(c)}
        addrs_a = {c.ip_address for c in a}
        for c in a:
            assert _wait_http(f"http://{c.ip_address}/hostname").startswith(b"a")

        # root B: runs, collects and loses its last container again and again
        monkeypatch.setenv("NSPRIM_ROOT", root_b)
        for _ in range(8):
            with Container(["sleep", "30"], rootfs=rootfs, memory="64m", pids=64,
                           network=NetworkMode.bridge()) as b:
                dirs_b.update(_cgroup_dirs(b))
                addrs_b.add(b.ip_address)
                Cgroup.collect()
                bridge.collect()
            r = run(["true"], rootfs=rootfs, memory="64m", network=NetworkMode.bridge())
            assert r.returncode == 0
            Cgroup.collect()  # what every nsprim command of root B does first
            bridge.collect()

        # root A's containers live, in their cgroups, on their bridge and table
        assert [c.poll() for c in a] == [None] * len(a)
        assert all(os.path.isdir(d) for d in dirs_a), dirs_a
        assert os.path.isdir(f"/sys/class/net/{bridge.BRIDGE}")
        assert f"table ip {bridge.TABLE}" in _nft_tables()
        for i, c in enumerate(a):
            assert _http_get(f"http://{c.ip_address}/hostname") == f"a{i}\n".encode()
        assert not list(iter_nsprim_cgroups())  # root B left nothing of its own
        # every cgroup is named nsprim's and its root's
        from nsprim.cgroup import leaf_name

        assert all(os.path.basename(d).startswith(leaf_name("")) for d in dirs_b)
        assert all("/nsprim/" in d for d in dirs_a | dirs_b)
        assert not addrs_a & addrs_b  # one bridge: no address handed out twice
    finally:
        monkeypatch.setenv("NSPRIM_ROOT", root_a)
        for c in a:
            c.__exit__(None, None, None)
    # the last container of each root took its cgroups with it
    assert not [d for d in dirs_a | dirs_b if os.path.exists(d)]
    assert not list(iter_nsprim_cgroups())
    monkeypatch.setenv("NSPRIM_ROOT", root_b)
    assert not list(iter_nsprim_cgroups())


# ------------------------------------------------------ loopback from the bridge

_SIOCGIFHWADDR = 0x8927


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, dport: int,
               payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def _send_raw_from(c: Container, dst: str, dport: int, payload: bytes) -> None:
    """What a container with CAP_NET_RAW (docker's default) can do: a
    hand-made frame out of its eth0, addressed to the gateway's MAC."""
    with open(f"/sys/class/net/{bridge.BRIDGE}/address") as f:
        gw_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    assert c.ip_address is not None and c.pid is not None
    src = c.ip_address

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind(("eth0", 0))
            import fcntl
            mac = fcntl.ioctl(s.fileno(), _SIOCGIFHWADDR, struct.pack("256s", b"eth0"))[18:24]
            s.send(_udp_frame(mac, gw_mac, src, dst, dport, payload))

    with Namespace.of(c.pid, "net") as ns:
        ns.run_in(send)


def test_container_cannot_reach_host_loopback_but_published_loopback_port_works(
        rootfs: str) -> None:
    need(os.geteuid() == 0, "needs root")
    need(shutil.which("nft") is not None, "needs nftables")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_lo, \
            Container(["httpd", "-f", "-p", "80", "-h", "/etc"], rootfs=rootfs, hostname="web",
                      network=NetworkMode.bridge([f"127.0.0.1:{port}:80"])) as c:
        host_lo.bind(("127.0.0.1", 0))  # a host service only loopback should reach
        host_lo.settimeout(1.0)
        assert c.ip_address is not None
        assert c.attachment is not None
        gateway = c.attachment.gateway
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as on_gw:
            # the same hand-made frame to the gateway's own address arrives: the
            # attack is well formed, only its target is refused
            on_gw.bind((gateway, 0))
            on_gw.settimeout(5.0)
            _send_raw_from(c, gateway, on_gw.getsockname()[1], b"control")
            assert on_gw.recvfrom(100)[0] == b"control"
        for _ in range(3):
            _send_raw_from(c, "127.0.0.1", host_lo.getsockname()[1], b"attack")
        with pytest.raises(TimeoutError):
            print(host_lo.recvfrom(100))
        # a port published on 127.0.0.1 still reaches the container (DNAT)
        assert _wait_http(f"http://127.0.0.1:{port}/hostname") == b"web\n"
