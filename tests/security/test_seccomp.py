"""seccomp (docker's default profile), the session keyring, and docker's
no-new-privileges default, tried from inside containers with a static probe."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim import run
from nsprim.errors import ConfigError
from nsprim.seccomp import DEFAULT, compile_bpf, default_profile, load_profile

from ..conftest import need, nsprim_cli

_NR = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl
_KEY_SPEC_SESSION, _KEY_SPEC_USER = -3, -4
_KEYCTL_JOIN_SESSION, _KEYCTL_INVALIDATE = 1, 21


def _probe(rootfs: str, *args: str, **kw: object) -> str:
    r = run(["/probe", *args], rootfs=rootfs, capture_output=True, timeout=30,
            **kw)  # type: ignore[arg-type]
    return (r.stdout + r.stderr).decode().strip()


def _status(rootfs: str, **kw: object) -> dict[str, str]:
    r = run(["cat", "/proc/self/status"], rootfs=rootfs, capture_output=True, timeout=30,
            **kw)  # type: ignore[arg-type]
    return dict(line.split(":\t", 1) for line in r.stdout.decode().splitlines()
                if ":\t" in line)


def test_every_container_is_filtered(hostile_rootfs: str) -> None:
    for kw in ({}, {"memory": "64m"}, {"init": True}, {"no_new_privileges": True},
               {"cap_drop": ["ALL"], "user": "1000"}):
        assert _status(hostile_rootfs, **kw)["Seccomp"] == "2", kw


@pytest.mark.parametrize("what,expected", [
    ("unshare-user", "errno=1"),        # unshare -Ur: full capabilities over new namespaces
    ("clone-newuser", "errno=1"),       # the same through clone's flags
    ("clone3", "errno=38"),             # flags hidden in memory: ENOSYS, libcs fall back
    ("io_uring", "errno=1"),
    ("perf", "errno=1"),
    ("personality-rie", "errno=1"),     # READ_IMPLIES_EXEC
    ("personality-linux", "ok"),
])
def test_docker_default_profile_from_inside(hostile_rootfs: str, what: str,
                                            expected: str) -> None:
    assert _probe(hostile_rootfs, what) == expected


def test_capabilities_unlock_their_calls(hostile_rootfs: str) -> None:
    # docker's rule: CAP_SYS_ADMIN allows unshare/clone namespaces again
    assert _probe(hostile_rootfs, "unshare-user", cap_add=["SYS_ADMIN"]) == "ok"
    assert _probe(hostile_rootfs, "clone3", cap_add=["SYS_ADMIN"]) != "errno=38"


@pytest.fixture
def host_keys() -> Iterator[str]:
    """A key in this process's (new) session keyring and one in root's user
    keyring, as a host admin's tools would leave them."""
    need(os.geteuid() == 0, "needs root")
    nrs = _NR.get(platform.machine())
    need(nrs is not None, "add_key numbers known for x86_64 and aarch64 only")
    assert nrs is not None
    libc = ctypes.CDLL(None, use_errno=True)
    add_key, keyctl = nrs
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(keyctl, _KEYCTL_JOIN_SESSION, b"nsprim-test") < 0:
        need(False, f"keyctl: {os.strerror(ctypes.get_errno())}")
    desc = f"nsprim-secret-{uuid.uuid4().hex[:8]}"
    ids = []
    for ring in (_KEY_SPEC_SESSION, _KEY_SPEC_USER):
        kid = libc.syscall(add_key, b"user", desc.encode(), b"hunter2", 7,
                           ctypes.c_long(ring))
        assert kid > 0, os.strerror(ctypes.get_errno())
        ids.append(kid)
    try:
        yield desc
    finally:
        for kid in ids:
            libc.syscall(keyctl, _KEYCTL_INVALIDATE, ctypes.c_long(kid))


def test_host_keys_are_unreachable(hostile_rootfs: str, host_keys: str) -> None:
    # keyctl itself is refused by the profile
    assert _probe(hostile_rootfs, "key-search-user", host_keys) == "errno=1"
    assert _probe(hostile_rootfs, "key-search-session", host_keys) == "errno=1"
    # unconfined: the session keyring is a fresh one (ENOKEY), as runc does
    assert _probe(hostile_rootfs, "key-search-session", host_keys,
                  seccomp="unconfined") == "errno=126"


def test_unconfined_and_profile_files(hostile_rootfs: str, tmp_path: Path) -> None:
    assert _status(hostile_rootfs, seccomp="unconfined")["Seccomp"] == "0"
    # a docker-format file that also refuses mkdir
    prof = default_profile()
    prof["syscalls"][0]["names"] = [n for n in prof["syscalls"][0]["names"]
                                    if n not in ("mkdir", "mkdirat")]
    f = tmp_path / "nomkdir.json"
    f.write_text(json.dumps(prof))
    r = run(["sh", "-c", "mkdir /tmp/x; echo rc=$?"], rootfs=hostile_rootfs,
            capture_output=True, seccomp=str(f))
    assert b"rc=1" in r.stdout and b"Operation not permitted" in r.stderr
    podman = "/usr/share/containers/seccomp.json"
    if os.path.exists(podman):  # a real-world profile in docker's format
        assert _status(hostile_rootfs, seccomp=podman)["Seccomp"] == "2"


@pytest.mark.parametrize("content,needle", [
    ("{", "not JSON"),
    ("[]", "JSON object"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "SCMP_ACT_NOPE"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]}',
     "argument filter"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {"names": 1}}', "syscalls"),
])
def test_bad_profiles_are_one_line_errors(hostile_rootfs: str, tmp_path: Path, content: str,
                                          needle: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_profile(str(f))
    r = nsprim_cli("run", "--rm", "--network", "none", "--security-opt", f"seccomp={f}",
                   "--rootfs", hostile_rootfs, "true")
    assert r.returncode == 125 and str(f) in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_setuid_binaries_work_by_default(hostile_rootfs: str) -> None:
    """docker's default: no_new_privs off, so su/ping/sudo-like binaries in
    images work; --security-opt no-new-privileges turns it on."""
    os.chown(os.path.join(hostile_rootfs, "probe"), 0, 0)
    os.chmod(os.path.join(hostile_rootfs, "probe"), 0o4755)
    assert _probe(hostile_rootfs, "ids", user="1000") == "uid=1000 euid=0"
    assert _probe(hostile_rootfs, "ids", user="1000",
                  no_new_privileges=True) == "uid=1000 euid=1000"
    r = nsprim_cli("run", "--rm", "--network", "none", "-u", "1000", "--security-opt",
                   "no-new-privileges", "--rootfs", hostile_rootfs, "/probe", "ids")
    assert r.stdout.strip() == "uid=1000 euid=1000", r
    r = nsprim_cli("run", "--rm", "--network", "none", "-u", "1000",
                   "--rootfs", hostile_rootfs, "/probe", "ids")
    assert r.stdout.strip() == "uid=1000 euid=0", r


def test_exec_and_detached_paths_are_filtered(hostile_rootfs: str) -> None:
    name = f"sec-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--name", name, "--network", "none", "--rootfs",
                   hostile_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = nsprim_cli("exec", name, "sh", "-c", "grep Seccomp: /proc/1/status "
                       "/proc/self/status; /probe unshare-user; /probe io_uring")
        lines = r.stdout.splitlines()
        assert lines[0].endswith("Seccomp:\t2") and lines[1].endswith("Seccomp:\t2"), r
        assert lines[2:] == ["errno=1", "errno=1"], r
    finally:
        nsprim_cli("rm", "-f", name)
    name = f"unc-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--name", name, "--network", "none", "--security-opt",
                   "seccomp=unconfined", "--rootfs", hostile_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = nsprim_cli("exec", name, "grep", "Seccomp:", "/proc/1/status", "/proc/self/status")
        assert [ln[-1] for ln in r.stdout.splitlines()] == ["0", "0"], r
    finally:
        nsprim_cli("rm", "-f", name)


# ------------------------------------------------------------ pure logic

@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(
                        st.sampled_from(["defaultAction", "syscalls", "names", "action",
                                         "args", "index", "op", "includes", "caps",
                                         "archMap", "errnoRet", "x"]), c, max_size=4),
                    max_leaves=12))
def test_profile_validation_raises_only_config_error(data: object) -> None:
    try:
        load_profile(data if isinstance(data, dict) else {"defaultAction": data})
    except ConfigError:
        pass


def test_compiled_program_depends_on_capabilities() -> None:
    a = compile_bpf(DEFAULT(), ["CHOWN"])
    b = compile_bpf(DEFAULT(), ["CHOWN", "SYS_ADMIN"])
    assert a != b and len(a) % 8 == 0 and len(b) % 8 == 0
    assert compile_bpf(DEFAULT(), ["CHOWN"]) is a  # cached


# ------------------------- nsprim's BPF layout against libseccomp's, as an oracle

def _run_bpf(prog: bytes, nr: int, arch: int, args: tuple[int, ...]) -> int:
    """A classic BPF interpreter over struct seccomp_data (little-endian)."""
    import struct as _s

    data = _s.pack("<iIQ6Q", nr, arch, 0, *args)
    ins = [_s.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    a = x = pc = 0
    while True:
        code, jt, jf, k = ins[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # LD
            a = _s.unpack_from("<I", data, k)[0] if code & 0xE0 == 0x20 else k
        elif cls == 0x06:
            return k
        elif cls == 0x07:
            x = a
        elif cls == 0x04:  # ALU
            op, src = code & 0xF0, (x if code & 0x08 else k)
            a = {0x50: a & src, 0x70: a >> src if src < 32 else 0}[op] & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            cond = {0x10: a == k, 0x20: a > k, 0x30: a >= k, 0x40: bool(a & k)}[op]
            pc += jt if cond else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


_ARCHES = {"x86_64": (0xC000003E, 0x40000003), "aarch64": (0xC00000B7, 0x40000028)}


@settings(max_examples=400, deadline=None)
@given(nr=st.integers(0, 600) | st.sampled_from([56, 135, 41, 435, 272, 425, 298]),
       x32=st.booleans(), compat=st.booleans(),
       args=st.tuples(*[st.sampled_from([0, 8, 0x20000, 0x20008, 0xFFFFFFFF, 40, 0x10000000,
                                         0x7E020000, 1 << 40, 17, 0x400000])] * 6),
       caps=st.sampled_from([("CHOWN", "MKNOD"), ("SYS_ADMIN",), ("SYS_PTRACE", "SYS_ADMIN")]))
def test_program_matches_libseccomp(nr: int, x32: bool, compat: bool,
                                    args: tuple[int, ...], caps: tuple[str, ...]) -> None:
    from nsprim.seccomp import _compile, _compile_libseccomp

    arches = _ARCHES.get(platform.machine())
    need(arches is not None, "oracle set up for x86_64 and aarch64")
    assert arches is not None
    capset = frozenset("CAP_" + c for c in caps)
    ours = _compile(DEFAULT(), capset)
    theirs = _compile_libseccomp(DEFAULT(), capset)
    arch = arches[1] if compat else arches[0]
    mine = theirs_ = 0
    if x32 and not compat and platform.machine() == "x86_64":
        nr |= 0x40000000
    mine, theirs_ = _run_bpf(ours, nr, arch, args), _run_bpf(theirs, nr, arch, args)
    if (mine != theirs_ and (compat or nr & 0x40000000) and any(x >> 32 for x in args)
            and theirs_ == 0x7FFF0000):
        # 32-bit ABIs: libseccomp compares only an argument's low word; ours
        # also checks the high word, so it may only refuse more, never allow
        return
    if mine != theirs_ and nr & 0x40000000 and nr & 0xFFFF < 512:
        # x32 below 512 reuses x86_64's checks: allowed only where x86_64
        # allows that number and x32 has no such call (the kernel's ENOSYS)
        from nsprim.seccomp import _libseccomp

        ffi, lib = _libseccomp()
        name = lib.seccomp_syscall_resolve_num_arch(arch, nr & 0xFFFF)
        x32_nr = (lib.seccomp_syscall_resolve_name_arch(
            lib.seccomp_arch_resolve_name(b"x32"), ffi.string(name)) if name else -1)
        assert mine == 0x7FFF0000 and x32_nr != nr, (nr, mine, theirs_)
        return
    assert mine == theirs_, (nr, arch)
    assert len(ours) < len(theirs) // 3
