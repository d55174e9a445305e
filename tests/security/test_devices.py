"""Host devices: a container (docker's CAP_MKNOD included) can make device
nodes, but none opens -- nodev everywhere it can write or that comes from an
image, and docker's device rules on its cgroup.  The victim is a loop device
over a file with a known secret, made by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim import Bind, Tmpfs, run
from nsprim.cgroup import Cgroup, host_layout
from nsprim.devices import DEFAULT_RULES, apply_v1, attach_bpf, bpf_program, parse_device
from nsprim.errors import ConfigError

from ..conftest import need, nsprim_cli

SECRET = "LOOP-SECRET-0123456789"


@pytest.fixture(scope="module")
def loopdev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    """(path, major, minor) of a loop device holding SECRET."""
    need(os.geteuid() == 0, "needs root")
    need(shutil.which("losetup") is not None, "needs losetup (util-linux)")
    f = tmp_path_factory.mktemp("loop") / "disk.img"
    f.write_bytes(SECRET.encode() + b"\0" * (1 << 20))
    r = subprocess.run(["losetup", "-f", "--show", str(f)], capture_output=True, text=True)
    need(r.returncode == 0, f"no loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    st = os.stat(dev)
    try:
        yield dev, os.major(st.st_rdev), os.minor(st.st_rdev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _probe(rootfs: str, script: str, **kw: object) -> str:
    r = run(["sh", "-c", script], rootfs=rootfs, capture_output=True, timeout=30,
            **kw)  # type: ignore[arg-type]
    return r.stdout.decode() + r.stderr.decode()


@pytest.mark.parametrize("limits", [{}, {"memory": "64m"}], ids=["no-cgroup", "cgroup"])
def test_mknod_of_the_host_disk_opens_nowhere(hostile_rootfs: str, tmp_path: Path,
                                              loopdev: tuple[str, int, int],
                                              limits: dict[str, object]) -> None:
    _, major, minor = loopdev
    data = tmp_path / "bind"
    data.mkdir()
    places = ["/tmp", "/", "/dev", "/dev/shm", "/data", "/run"]
    script = "; ".join(
        f"mknod {p.rstrip('/')}/d b {major} {minor} && echo made; /probe open-rw "
        f"{p.rstrip('/')}/d; /probe open-r {p.rstrip('/')}/d" for p in places)
    out = _probe(hostile_rootfs, script, mounts=[Bind(str(data), "/data"), Tmpfs("/run")],
                 **limits)
    assert out.count("made") == len(places), out  # CAP_MKNOD is docker's default
    assert SECRET not in out and "ok" not in out, out
    assert "errno=13" in out or "errno=1" in out


def test_device_nodes_shipped_in_the_image_do_not_open(hostile_rootfs: str,
                                                       loopdev: tuple[str, int, int]) -> None:
    _, major, minor = loopdev
    os.mknod(os.path.join(hostile_rootfs, "disk"), 0o666 | 0o060000, os.makedev(major, minor))
    os.mknod(os.path.join(hostile_rootfs, "kmsg"), 0o666 | 0o020000, os.makedev(1, 11))
    os.mknod(os.path.join(hostile_rootfs, "tty1"), 0o666 | 0o020000, os.makedev(4, 1))
    for kw in ({}, {"cap_drop": ["ALL"], "user": "1000"}, {"memory": "64m"}):
        out = _probe(hostile_rootfs, "/probe open-rw /disk; /probe open-w /kmsg; "
                     "/probe open-w /tty1", **kw)
        assert SECRET not in out and "ok" not in out, (kw, out)


def test_kmsg_and_loop_control_made_inside_do_not_open(hostile_rootfs: str) -> None:
    out = _probe(hostile_rootfs, "mknod /tmp/kmsg c 1 11; mknod /tmp/lc c 10 237; "
                 "mknod /tmp/kvm c 10 232; /probe open-w /tmp/kmsg; /probe open-rw /tmp/lc; "
                 "/probe open-rw /tmp/kvm")
    assert "ok" not in out and out.count("errno=") == 3, out


def test_the_default_nodes_work(hostile_rootfs: str) -> None:
    out = _probe(hostile_rootfs, "for d in null zero full random urandom tty ptmx; do "
                 "/probe open-r /dev/$d; done; echo hi > /dev/null && echo null-ok",
                 memory="64m")
    # tty has no controlling terminal here (ENXIO): every other one opens
    assert out.count("ok") >= 7 and "null-ok" in out, out


def test_device_flag_gives_the_node_and_the_cgroup_enforces_its_access(
        hostile_rootfs: str, loopdev: tuple[str, int, int]) -> None:
    dev, _, _ = loopdev
    out = _probe(hostile_rootfs, "/probe open-r /dev/xvda; /probe open-w /dev/xvda",
                 devices=[f"{dev}:/dev/xvda:r"], memory="64m")
    lines = out.splitlines()
    assert lines[0] == "ok", out                 # read allowed
    assert lines[1] == "errno=1", out            # write refused by the cgroup rule
    out = _probe(hostile_rootfs, "/probe open-rw /dev/xvda", devices=[f"{dev}:/dev/xvda"])
    assert f"ok read={SECRET}" in out, out


def test_privileged_sees_the_host_devices(hostile_rootfs: str,
                                          loopdev: tuple[str, int, int]) -> None:
    dev, _, _ = loopdev
    out = _probe(hostile_rootfs, f"/probe open-rw {dev}; grep -E '^(CapEff|Seccomp):' "
                 "/proc/self/status", privileged=True)
    assert f"ok read={SECRET}" in out, out
    with open("/proc/self/status") as f:
        bnd = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    assert f"CapEff:\t{bnd}" in out and "Seccomp:\t0" in out, out


def test_device_specs_are_checked(loopdev: tuple[str, int, int]) -> None:
    dev, major, minor = loopdev
    d = parse_device(f"{dev}:/dev/xvda:rw")
    assert (d.type, d.major, d.minor, d.access, d.container) == ("b", major, minor, "rw",
                                                                  "/dev/xvda")
    assert parse_device(f"{dev}:r").container == dev
    for bad in ("/etc/passwd", "/nonexistent", f"{dev}:/dev/x:rwx", f"{dev}:relative",
                f"{dev}:/proc/x", "rel", f"{dev}:/a:r:x"):
        with pytest.raises(ConfigError):
            parse_device(bad)


def test_cli_device_and_privileged_flags(hostile_rootfs: str,
                                         loopdev: tuple[str, int, int]) -> None:
    dev, _, _ = loopdev
    r = nsprim_cli("run", "--rm", "--network", "none", "--device", f"{dev}:/dev/xvda",
                   "--rootfs", hostile_rootfs, "/probe", "open-rw", "/dev/xvda")
    assert r.returncode == 0 and SECRET in r.stdout, r
    r = nsprim_cli("run", "--rm", "--network", "none", "--device", "/etc/passwd",
                   "--rootfs", hostile_rootfs, "true")
    assert r.returncode == 125 and "/etc/passwd" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = nsprim_cli("run", "--rm", "--network", "none", "--privileged",
                   "--rootfs", hostile_rootfs, "/probe", "open-rw", dev)
    assert r.returncode == 0 and SECRET in r.stdout, r


# ------------------------------------------- the cgroup mechanisms themselves

def _open_in(procs: str, probe: str, path: str, mode: str = "open-r") -> str:
    r = subprocess.run(["sh", "-c", f'echo $$ > {procs} && exec "$0" {mode} {path}', probe],
                       capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def test_bpf_device_program_on_a_v2_cgroup(probe: str) -> None:
    """On the host's own /dev (no nodev): the program alone refuses a node
    outside docker's list (/dev/kmsg, c 1:11) and allows null."""
    dev = "/dev/kmsg"
    need(host_layout().v2 is not None, "needs a cgroup v2 hierarchy")
    cg = Cgroup.create(f"devtest{uuid.uuid4().hex[:6]}")
    try:
        assert cg.fd >= 0 and cg.v2_path is not None
        attach_bpf(cg.fd, DEFAULT_RULES)
        procs = os.path.join(cg.v2_path, "cgroup.procs")
        assert _open_in(procs, probe, dev).strip() == "errno=1"
        assert _open_in(procs, probe, "/dev/null").strip() == "ok"
        assert _open_in(procs, probe, "/dev/null", "open-w").strip() == "ok"
    finally:
        cg.remove()


def test_v1_devices_controller_rules(probe: str) -> None:
    dev = "/dev/kmsg"
    mnt = host_layout().v1.get("devices")
    need(mnt is not None, "needs a cgroup v1 devices hierarchy (hybrid host)")
    assert mnt is not None
    path = os.path.join(mnt, f"nsprim-devtest-{uuid.uuid4().hex[:6]}")
    os.mkdir(path)
    try:
        apply_v1(path, DEFAULT_RULES)
        procs = os.path.join(path, "cgroup.procs")
        assert _open_in(procs, probe, dev).strip() == "errno=1"
        assert _open_in(procs, probe, "/dev/zero").strip() == "ok"
    finally:
        os.rmdir(path)


def test_container_cgroup_enforces_device_access(hostile_rootfs: str) -> None:
    """--device NODE:...:r on a container with a cgroup: reading works, writing
    is refused by the cgroup's rule (BPF on v2, the devices controller on v1);
    no loop device needed, so it runs in the pure-v2 VM too."""
    # /dev/kmsg: opening it write-only needs no capability (reading needs
    # CAP_SYSLOG), so the cgroup rule's "w" is what decides
    out = _probe(hostile_rootfs, "/probe open-w /dev/k; mknod /tmp/k c 1 11; "
                 "/probe open-w /tmp/k", devices=["/dev/kmsg:/dev/k:w"], memory="64m")
    assert out.splitlines() == ["ok", "errno=13"], out
    out = _probe(hostile_rootfs, "/probe open-w /dev/k", devices=["/dev/kmsg:/dev/k:r"],
                 memory="64m")
    assert out.strip() == "errno=1", out


def test_bpf_program_shape() -> None:
    prog = bpf_program(DEFAULT_RULES)
    assert len(prog) % 8 == 0
    # every rule ends in "r0 = 1; exit", the program in "r0 = 0; exit"
    assert prog.count(bytes([0x95, 0, 0, 0, 0, 0, 0, 0])) == len(DEFAULT_RULES) + 1
