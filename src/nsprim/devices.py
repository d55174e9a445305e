"""Device access: docker's default rules, ``--device``, and their enforcement.

Two mechanisms keep a container away from the host's devices:

- **nodev** (always, with or without a cgroup): every filesystem the
  container can write to or that comes from an image -- the root, binds,
  volumes, tmpfs, ``/dev`` itself -- is mounted ``nodev``, so a device node
  there (shipped in an image, or made with ``mknod``, which docker's
  ``CAP_MKNOD`` allows) opens nowhere.  The nodes a container may use are
  bind-mounted from the host's ``/dev`` (those binds keep their device
  access).  This is what holds for containers without a cgroup (no limits
  asked) and, later, rootless ones.
- **the cgroup device rules** (when the container has a cgroup): docker's
  list -- ``mknod`` of anything, read/write of null, zero, full, random,
  urandom, tty, console, ptmx, the pts and tun -- plus each ``--device``.
  On a v1 ``devices`` hierarchy they are written to ``devices.deny`` /
  ``devices.allow``; on a pure cgroup v2 host a ``BPF_PROG_TYPE_CGROUP_DEVICE``
  program is attached to the container's cgroup.

``privileged=True`` lifts both (all host devices in ``/dev``, no rules), as
``docker run --privileged`` does.
"""

from __future__ import annotations

import _thread
import os
import stat
import struct
from collections.abc import Iterable

from nsprim._record import record
from nsprim.errors import ConfigError

__all__ = ["Device", "DeviceRule", "DEFAULT_RULES", "parse_device", "rules_for",
           "apply", "apply_v1", "attach_bpf", "bpf_program"]

_ACCESS = frozenset("rwm")


@record(frozen=True)
class DeviceRule:
    """One allow rule: type ``c``, ``b`` or ``a`` (all), major and minor
    (-1: any), access (a subset of ``rwm``)."""

    type: str
    major: int
    minor: int
    access: str

    def v1(self) -> str:
        """The rule as written to devices.allow (``c 1:3 rwm``)."""
        def n(v: int) -> str:
            return "*" if v < 0 else str(v)
        return f"{self.type} {n(self.major)}:{n(self.minor)} {self.access}"


#: docker's default allow list (after "deny everything")
DEFAULT_RULES: tuple[DeviceRule, ...] = (
    DeviceRule("c", -1, -1, "m"),      # mknod of any node (opening is what is refused)
    DeviceRule("b", -1, -1, "m"),
    DeviceRule("c", 1, 3, "rwm"),      # null
    DeviceRule("c", 1, 5, "rwm"),      # zero
    DeviceRule("c", 1, 7, "rwm"),      # full
    DeviceRule("c", 1, 8, "rwm"),      # random
    DeviceRule("c", 1, 9, "rwm"),      # urandom
    DeviceRule("c", 5, 0, "rwm"),      # tty
    DeviceRule("c", 5, 1, "rwm"),      # console
    DeviceRule("c", 5, 2, "rwm"),      # ptmx
    DeviceRule("c", 136, -1, "rwm"),   # pts
    DeviceRule("c", 10, 200, "rwm"),   # tun
)


@record(frozen=True)
class Device:
    """``--device HOST[:CONTAINER[:PERMS]]``: the host node, where it shows in
    the container, and the access the cgroup allows (``rwm`` by default)."""

    host: str
    container: str
    access: str = "rwm"
    type: str = "c"
    major: int = 0
    minor: int = 0

    def rule(self) -> DeviceRule:
        return DeviceRule(self.type, self.major, self.minor, self.access)


def parse_device(spec: str | Device) -> Device:
    """Check a ``--device`` spec against the host (it must name a character or
    block device); ConfigError naming the bad value otherwise."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str) or not spec or "\x00" in spec:
        raise ConfigError(f"invalid device {spec!r}")
    parts = spec.split(":")
    if len(parts) > 3:
        raise ConfigError(f"invalid device {spec!r}: expected HOST[:CONTAINER[:PERMISSIONS]]")
    host = parts[0]
    container = host
    access = "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= _ACCESS and not parts[1].startswith("/"):
            access = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, access = parts[1], parts[2]
    if not access or not set(access) <= _ACCESS:
        raise ConfigError(f"invalid device {spec!r}: bad permissions {access!r} "
                          "(a combination of r, w and m)")
    if not host.startswith("/") or not container.startswith("/"):
        raise ConfigError(f"invalid device {spec!r}: paths must be absolute")
    if os.path.normpath(container) in ("/", "/proc") or container.startswith("/proc/"):
        raise ConfigError(f"invalid device {spec!r}: cannot be mounted at {container}")
    try:
        st = os.stat(host)
    except OSError as e:
        raise ConfigError(f"error gathering device information while adding custom device "
                          f"{host!r}: {e.strerror}") from e
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise ConfigError(f"invalid device {spec!r}: {host!r} is not a device node")
    access = "".join(c for c in "rwm" if c in access)
    return Device(host, os.path.normpath(container), access, kind,
                  os.major(st.st_rdev), os.minor(st.st_rdev))


def rules_for(devices: Iterable[Device]) -> tuple[DeviceRule, ...]:
    """docker's rules plus one per --device."""
    return DEFAULT_RULES + tuple(d.rule() for d in devices)


# ------------------------------------------------------------------ v1

def apply_v1(path: str, rules: Iterable[DeviceRule]) -> None:
    """Deny everything in the v1 devices cgroup `path`, then allow `rules`."""
    fd = os.open(os.path.join(path, "devices.deny"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"a")
    finally:
        os.close(fd)
    fd = os.open(os.path.join(path, "devices.allow"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        for r in rules:
            os.write(fd, r.v1().encode())
    finally:
        os.close(fd)


# ------------------------------------------------------------------ v2 (BPF)
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = (access << 16) | type; type 1 = block, 2 = char;
# access 1 = mknod, 2 = read, 4 = write.  The program returns 1 (allow) if
# some rule matches, else 0.

_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2
_TYPES = {"b": 1, "c": 2}
_ACC = {"m": 1, "r": 2, "w": 4}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDXW, _MOV64X, _AND64K, _RSH64K, _JNEK, _MOV64K, _EXIT = (
    0x61, 0xBF, 0x57, 0x77, 0x55, 0xB7, 0x95)


def bpf_program(rules: Iterable[DeviceRule]) -> bytes:
    """The device program for `rules`, as ``struct bpf_insn[]``."""
    out = [
        _insn(_LDXW, 2, 1, 0),          # r2 = ctx->access_type
        _insn(_MOV64X, 3, 2),           # r3 = r2 & 0xffff: the type
        _insn(_AND64K, 3, imm=0xFFFF),
        _insn(_RSH64K, 2, imm=16),      # r2 >>= 16: the access asked
        _insn(_LDXW, 4, 1, 4),          # r4 = major
        _insn(_LDXW, 5, 1, 8),          # r5 = minor
    ]
    for r in rules:
        body: list[tuple[int, int, int, int]] = []  # (code, dst, src, imm); jumps patched
        if r.type != "a":
            body.append((_JNEK, 3, 0, _TYPES[r.type]))
        mask = sum(_ACC[c] for c in r.access)
        if mask != 7:
            body.append((_MOV64X, 1, 2, 0))
            body.append((_AND64K, 1, 0, ~mask & 7))
            body.append((_JNEK, 1, 0, 0))
        if r.major >= 0:
            body.append((_JNEK, 4, 0, r.major))
        if r.minor >= 0:
            body.append((_JNEK, 5, 0, r.minor))
        n = len(body) + 2  # then: r0 = 1; exit
        for i, (code, dst, src, imm) in enumerate(body):
            off = n - i - 1 if code == _JNEK else 0
            out.append(_insn(code, dst, src, off, imm))
        out.append(_insn(_MOV64K, 0, imm=1))
        out.append(_insn(_EXIT))
    out.append(_insn(_MOV64K, 0, imm=0))
    out.append(_insn(_EXIT))
    return b"".join(out)


_prog_lock = _thread.allocate_lock()
_progs: dict[tuple[DeviceRule, ...], int] = {}


def _load(rules: tuple[DeviceRule, ...]) -> int:
    from nsprim._native import ffi, lib

    prog = bpf_program(rules)
    insns = ffi.from_buffer(prog)
    license = ffi.new("char[]", b"Apache-2.0")
    attr = ffi.new("char[]", struct.pack(
        "<IIQQIIQII16s", _BPF_PROG_TYPE_CGROUP_DEVICE, len(prog) // 8,
        int(ffi.cast("uintptr_t", insns)), int(ffi.cast("uintptr_t", license)),
        0, 0, 0, 0, 0, b"nsprim_devices"))
    fd = lib.nsp_bpf(_BPF_PROG_LOAD, attr, len(attr))
    if fd < 0:
        err = ffi.errno
        raise OSError(err, f"loading the device program failed: {os.strerror(err)}")
    os.set_inheritable(fd, False)
    return int(fd)


def attach_bpf(cgroup_fd: int, rules: Iterable[DeviceRule]) -> None:
    """Attach the device program of `rules` to the v2 cgroup `cgroup_fd`.
    The program is loaded once per process per rule set."""
    from nsprim._native import ffi, lib

    key = tuple(rules)
    with _prog_lock:
        fd = _progs.get(key)
        if fd is None:
            fd = _progs[key] = _load(key)
    attr = ffi.new("char[]", struct.pack("<IIIII", cgroup_fd, fd, _BPF_CGROUP_DEVICE,
                                         _BPF_F_ALLOW_MULTI, 0))
    if lib.nsp_bpf(_BPF_PROG_ATTACH, attr, len(attr)) < 0:
        err = ffi.errno
        raise OSError(err, f"attaching the device program failed: {os.strerror(err)}")


def apply(cgroup_fd: int, v1_devices: str | None, rules: Iterable[DeviceRule]) -> str:
    """Enforce `rules` on a container's cgroup: the BPF program on its v2
    cgroup (pure v2 and hybrid hosts: the kernel runs it for every process of
    the v2 cgroup), else the v1 devices controller.  Returns which."""
    if cgroup_fd >= 0:
        attach_bpf(cgroup_fd, rules)
        return "bpf"
    if v1_devices is not None:
        apply_v1(v1_devices, rules)
        return "v1"
    raise OSError(95, "no cgroup to hold device rules (no v2 hierarchy, no v1 devices)")
