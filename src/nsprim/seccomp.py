"""seccomp: docker's default profile, docker's JSON profile format, and their
compilation to the BPF program the spawn engine installs.

A profile is docker's JSON shape (``defaultAction``, ``archMap``,
``syscalls: [{names, action, errnoRet, args, includes, excludes}]``), so
``--security-opt seccomp=FILE.json`` takes the files docker and podman take
(``/usr/share/containers/seccomp.json`` is one).  :func:`default_profile`
builds docker's default from the tables below.

Compilation uses libseccomp (Debian's ``libseccomp2``, present wherever
systemd is) through cffi in ABI mode: it knows every architecture's syscall
numbers and multiplexed calls, and emits a checked program.  A compiled
program depends on the profile, the container's capabilities (the
``includes``/``excludes`` rules) and the host; it is cached per process, and
on disk under the state root's run dir so that a CLI process pays it once per
machine boot, not once per command.  The C child installs it with no
allocation (NSP_OP_SECCOMP).
"""

from __future__ import annotations

import _thread
import json
import os
import struct
from collections.abc import Iterable, Mapping

from nsprim._digest import sha256_hex
from nsprim._record import record
from nsprim.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SeccompProfile", "default_profile", "load_profile", "compile_bpf", "DEFAULT"]

# --------------------------------------------------------------- the default
# docker's default profile (moby, 2024 and later): an allow list, argument
# filters for socket/personality/clone, arch-specific calls, and calls that
# the matching capability unlocks.  Everything else fails with EPERM.

_ALLOW = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv
futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
listen listmount listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir
mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat
rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address
setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack
signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs
statfs64 statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee
tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask
uname unlink unlinkat uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice
wait4 waitid waitpid write writev
"""

#: calls a capability unlocks (docker's "includes": {"caps": [...]})
_BY_CAP = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick "
                     "lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open "
                     "quotactl quotactl_fd setdomainname sethostname setns syslog umount "
                     "umount2 unshare",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv "
                      "process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

#: calls of one architecture family (docker's "includes": {"arches": [...]})
_BY_ARCH = (
    ("arch_prctl", ["amd64", "x32"]),
    ("modify_ldt", ["amd64", "x32", "x86"]),
    ("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
     ["arm", "arm64"]),
    ("sync_file_range2 swapcontext", ["ppc64le"]),
    ("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr", ["s390", "s390x"]),
    ("riscv_flush_icache", ["riscv64"]),
)

#: personality(2) values a container may set: PER_LINUX, PER_LINUX32,
#: UNAME26, UNAME26|PER_LINUX32, and the query 0xffffffff (READ_IMPLIES_EXEC
#: and the other flags are refused)
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NS_FLAGS = 0x7E020000
_AF_VSOCK = 40
_ENOSYS = 38


def _names(text: str) -> list[str]:
    return text.split()


def default_profile() -> dict[str, Any]:
    """docker's default seccomp profile, in docker's JSON shape."""
    calls: list[dict[str, Any]] = [{"names": _names(_ALLOW), "action": "SCMP_ACT_ALLOW"}]
    calls.append({"names": ["process_vm_readv", "process_vm_writev", "ptrace"],
                  "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}})
    calls.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_NE"}]})
    for v in _PERSONALITIES:
        calls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]})
    for text, arches in _BY_ARCH:
        calls.append({"names": _names(text), "action": "SCMP_ACT_ALLOW",
                      "includes": {"arches": arches}})
    for cap, text in _BY_CAP.items():
        calls.append({"names": _names(text), "action": "SCMP_ACT_ALLOW",
                      "includes": {"caps": [cap]}})
    calls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _CLONE_NS_FLAGS, "valueTwo": 0,
                            "op": "SCMP_CMP_MASKED_EQ"}],
                  "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}})
    calls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 1, "value": _CLONE_NS_FLAGS, "valueTwo": 0,
                            "op": "SCMP_CMP_MASKED_EQ"}],
                  "includes": {"arches": ["s390", "s390x"]},
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    # clone3 hides its flags in memory: without CAP_SYS_ADMIN, ENOSYS makes
    # libcs fall back to clone, whose flags the rule above checks
    calls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64",
             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": calls,
    }


# ------------------------------------------------------------- validation

_ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
            "SCMP_ACT_LOG"}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_MAX_PROFILE = 1 << 20


@record(frozen=True)
class SeccompProfile:
    """A validated profile.  `key` identifies its content (for caches)."""

    name: str
    key: str
    data: Mapping[str, Any]

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeccompProfile) and other.key == self.key


def _fail(where: str, what: str) -> ConfigError:
    return ConfigError(f"invalid seccomp profile {where}: {what}")


def _str_list(v: object, where: str, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _fail(where, f"{what} must be a list of strings")
    return list(v)


def _check(data: object, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(where, "expected a JSON object")
    act = data.get("defaultAction")
    if not isinstance(act, str) or act not in _ACTIONS:
        raise _fail(where, f"unknown defaultAction {act!r}")
    for k in ("defaultErrnoRet",):
        if k in data and data[k] is not None and (
                not isinstance(data[k], int) or isinstance(data[k], bool)
                or not 0 <= data[k] < 4096):
            raise _fail(where, f"{k} must be an errno number")
    for a in data.get("archMap") or []:
        if not isinstance(a, dict) or not isinstance(a.get("architecture"), str):
            raise _fail(where, "archMap entries need an architecture")
        _str_list(a.get("subArchitectures"), where, "subArchitectures")
    _str_list(data.get("architectures"), where, "architectures")
    calls = data.get("syscalls") or []
    if not isinstance(calls, list):
        raise _fail(where, "syscalls must be a list")
    for i, c in enumerate(calls):
        w = f"syscalls[{i}]"
        if not isinstance(c, dict):
            raise _fail(where, f"{w} must be an object")
        names = _str_list(c.get("names"), where, f"{w}.names")
        if isinstance(c.get("name"), str):
            names.append(c["name"])
        if not names:
            raise _fail(where, f"{w} names no syscall")
        if not isinstance(c.get("action"), str) or c["action"] not in _ACTIONS:
            raise _fail(where, f"{w} has unknown action {c.get('action')!r}")
        er = c.get("errnoRet")
        if er is not None and (not isinstance(er, int) or isinstance(er, bool)
                               or not 0 <= er < 4096):
            raise _fail(where, f"{w}.errnoRet must be an errno number")
        args = c.get("args") or []
        if not isinstance(args, list):
            raise _fail(where, f"{w}.args must be a list")
        for a in args:
            if (not isinstance(a, dict) or not isinstance(a.get("op"), str)
                    or a["op"] not in _OPS
                    or not isinstance(a.get("index"), int) or not 0 <= a["index"] <= 5
                    or not isinstance(a.get("value", 0), int)
                    or not isinstance(a.get("valueTwo", 0), int)):
                raise _fail(where, f"{w}.args: {a!r} is not an argument filter")
        for k in ("includes", "excludes"):
            f = c.get(k) or {}
            if not isinstance(f, dict):
                raise _fail(where, f"{w}.{k} must be an object")
            _str_list(f.get("caps"), where, f"{w}.{k}.caps")
            _str_list(f.get("arches"), where, f"{w}.{k}.arches")
    return data


def _make(name: str, data: dict[str, Any]) -> SeccompProfile:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return SeccompProfile(name, sha256_hex(text.encode())[:32], data)


_default: SeccompProfile | None = None


def DEFAULT() -> SeccompProfile:  # noqa: N802 - a constant, built on first use
    """docker's default profile (validated once)."""
    global _default
    if _default is None:
        _default = _make("default", default_profile())
    return _default


def load_profile(spec: str | os.PathLike[str] | Mapping[str, Any]) -> SeccompProfile:
    """A profile from a JSON file (docker's format) or a dict; ConfigError
    naming the file and the bad field if it is not one."""
    if isinstance(spec, Mapping):
        return _make("custom", _check(dict(spec), "(dict)"))
    path = os.fspath(spec)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_PROFILE + 1)
    except OSError as e:
        raise ConfigError(f"opening seccomp profile {path!r} failed: {e.strerror}") from e
    if len(raw) > _MAX_PROFILE:
        raise _fail(repr(path), "larger than 1 MiB")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(repr(path), f"not JSON ({e})") from e
    return _make(path, _check(data, repr(path)))


# ------------------------------------------------------------- compilation

_CDEF = """
typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
uint32_t seccomp_arch_native(void);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
int seccomp_arch_exist(const scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name);
char *seccomp_syscall_resolve_num_arch(uint32_t arch_token, int num);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
"""

_SCMP_ACT_KILL_PROCESS = 0x80000000
_SCMP_ACT_KILL_THREAD = 0x00000000
_SCMP_ACT_TRAP = 0x00030000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000
_SCMP_ACT_LOG = 0x7FFC0000
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_FLTATR_CTL_NNP = 3
_NR_ERROR = -1

# docker's arch names (Go's) for the host
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

_lib_lock = _thread.allocate_lock()
_lib: tuple[Any, Any] | None = None
_cache: dict[tuple[str, frozenset[str]], bytes] = {}


def _libseccomp() -> tuple[Any, Any]:
    global _lib
    if _lib is None:
        from cffi import FFI

        ffi = FFI()
        ffi.cdef(_CDEF)
        try:
            lib = ffi.dlopen("libseccomp.so.2")
        except OSError as e:
            raise ConfigError("seccomp needs libseccomp (apt-get install libseccomp2), or "
                              "--security-opt seccomp=unconfined") from e
        _lib = (ffi, lib)
    return _lib


def _action(name: str, errno_ret: int) -> int:
    return {
        "SCMP_ACT_KILL": _SCMP_ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": _SCMP_ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": _SCMP_ACT_KILL_PROCESS, "SCMP_ACT_TRAP": _SCMP_ACT_TRAP,
        "SCMP_ACT_ERRNO": _SCMP_ACT_ERRNO | (errno_ret & 0xFFFF),
        "SCMP_ACT_TRACE": _SCMP_ACT_TRACE | (errno_ret & 0xFFFF),
        "SCMP_ACT_LOG": _SCMP_ACT_LOG, "SCMP_ACT_ALLOW": _SCMP_ACT_ALLOW,
    }[name]


def _kernel_at_least(version: str) -> bool:
    def nums(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split(".")[:2]:
            digits = "".join(ch for ch in part if ch in "0123456789")
            out.append(int(digits) if digits else 0)
        return tuple(out)
    return nums(os.uname().release) >= nums(version)


def _applies(rule: Mapping[str, Any], caps: frozenset[str], arch: str) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("caps") and not all(c.upper() in caps for c in inc["caps"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and not _kernel_at_least(str(inc["minKernel"])):
        return False
    if exc.get("caps") and any(c.upper() in caps for c in exc["caps"]):
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    return True


def _default_action(data: Mapping[str, Any]) -> tuple[int, int]:
    """(the default action, the errno of ERRNO actions without their own)."""
    default_errno = data.get("defaultErrnoRet")
    default_errno = 1 if default_errno is None else int(default_errno)
    return _action(data["defaultAction"], default_errno), default_errno


def _compile_libseccomp(profile: SeccompProfile, caps: frozenset[str]) -> bytes:
    ffi, lib = _libseccomp()
    data = profile.data
    default, default_errno = _default_action(data)
    arch = _GOARCH.get(os.uname().machine, os.uname().machine)
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise ConfigError("seccomp_init failed")
    try:
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0)
        native = lib.seccomp_arch_native()
        arches: list[str] = []
        for a in data.get("archMap") or []:
            token = lib.seccomp_arch_resolve_name(
                a["architecture"].removeprefix("SCMP_ARCH_").lower().encode())
            if token == native:
                arches = list(a.get("subArchitectures") or [])
        arches += list(data.get("architectures") or [])
        for a in arches:
            token = lib.seccomp_arch_resolve_name(
                a.removeprefix("SCMP_ARCH_").lower().encode())
            if token and token != native and lib.seccomp_arch_exist(ctx, token) != 0:
                lib.seccomp_arch_add(ctx, token)
        for name, action, groups in _rules(profile, caps, arch, default, default_errno):
            if action == default:
                continue  # libseccomp refuses a rule of the default action
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_ERROR:
                continue  # unknown to this libseccomp / architecture: docker skips it
            for group in groups or [[]]:
                cmps = ffi.new("struct scmp_arg_cmp[]", max(1, len(group)))
                for i, a in enumerate(group):
                    cmps[i].arg = a["index"]
                    cmps[i].op = _OPS[a["op"]]
                    cmps[i].datum_a = a.get("value", 0) & 0xFFFFFFFFFFFFFFFF
                    cmps[i].datum_b = a.get("valueTwo", 0) & 0xFFFFFFFFFFFFFFFF
                r = lib.seccomp_rule_add_array(ctx, action, nr, len(group), cmps)
                if r < 0 and r != -17:  # -EEXIST: the same rule twice
                    raise ConfigError(
                        f"invalid seccomp profile {profile.name!r}: rule for {name!r} "
                        f"refused by libseccomp: {os.strerror(-r)}")
        fd = os.memfd_create("nsprim-seccomp", os.MFD_CLOEXEC)
        try:
            r = lib.seccomp_export_bpf(ctx, fd)
            if r < 0:
                raise OSError(-r, f"seccomp_export_bpf failed: {os.strerror(-r)}")
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


# ------------------------------------------------- nsprim's own code generator
# seccomp(2) costs about 1 us per instruction to install here (the kernel
# checks, converts and JIT-compiles the program for every container), and
# libseccomp's program for docker's profile is about 1000 instructions (0.7
# ms).  So nsprim lays the program out itself, with libseccomp only naming
# the syscalls of each architecture: per architecture, the syscalls with
# argument filters or other actions as short inline checks, then the plain
# allow list as a bitmap (32 syscalls a word: a shift and a test), about 150
# instructions for docker's profile with its x86 and x32 sub-architectures.
# x32 calls arrive with x86_64's audit arch and bit 30 set: below 512 they
# share x86_64's numbers (or are ENOSYS for x32), so they reuse its checks.

_LD_ABS, _LD_IMM, _JEQ, _JGE, _JGT, _JSET, _JA = 0x20, 0x00, 0x15, 0x35, 0x25, 0x45, 0x05
_AND, _RSHX, _TAX, _RET = 0x54, 0x7C, 0x07, 0x06
_X32_BIT = 0x40000000
# i386's direct socket and SysV IPC calls (Linux 4.3+), which libseccomp names
# as multiplexed pseudo-calls (negative numbers) but also filters directly
_I386_DIRECT = dict(zip(
    "socket socketpair bind connect listen accept4 getsockopt setsockopt getsockname "
    "getpeername sendto sendmsg recvfrom recvmsg shutdown".split(), range(359, 374), strict=True))
_I386_DIRECT.update(zip("semget semctl shmget shmctl shmat shmdt msgget msgsnd msgrcv "
                        "msgctl".split(), range(393, 403), strict=True))
_I386_DIRECT.update(recvmmsg=337, sendmmsg=345)
_RESTRICTIVE = {_SCMP_ACT_KILL_PROCESS: 7, _SCMP_ACT_KILL_THREAD: 6, _SCMP_ACT_TRAP: 5,
                _SCMP_ACT_ERRNO: 4, _SCMP_ACT_TRACE: 3, _SCMP_ACT_LOG: 2, _SCMP_ACT_ALLOW: 1}


def _rank(action: int) -> int:
    return _RESTRICTIVE.get(action & 0xFFFF0000 if action & 0xFFFF0000 else action, 0)


class _TooFar(Exception):
    pass


class _Asm:
    """cBPF with labels: jt/jf (and JA's k) may name a label further on."""

    def __init__(self) -> None:
        self.ins: list[list[Any]] = []
        self.labels: dict[str, int] = {}
        self._n = 0

    def new(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def op(self, code: int, k: Any = 0, jt: Any = 0, jf: Any = 0) -> None:
        self.ins.append([code, jt, jf, k])

    def _rel(self, i: int, t: Any, limit: int) -> int:
        if isinstance(t, str):
            t = self.labels[t] - i - 1
        if not 0 <= t <= limit:
            raise _TooFar(t)
        return int(t)

    def link(self) -> bytes:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.ins):
            if code == _JA:
                k = self._rel(i, k, 0xFFFFFFFF)
            else:
                jt, jf = self._rel(i, jt, 255), self._rel(i, jf, 255)
            out.append(struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF))
        return b"".join(out)


if TYPE_CHECKING:
    Entry = tuple[int, list[list[Mapping[str, Any]]] | None]  # (action, arg groups or None)


def _arg_group(a: _Asm, group: list[Mapping[str, Any]], action: int) -> None:
    """Every compare of `group` holds -> return `action`; else fall through."""
    fail = a.new()
    for cmp in group:
        lo, hi = 16 + 8 * cmp["index"], 20 + 8 * cmp["index"]
        v = cmp.get("value", 0) & 0xFFFFFFFFFFFFFFFF
        v2 = cmp.get("valueTwo", 0) & 0xFFFFFFFFFFFFFFFF
        vh, vl = v >> 32, v & 0xFFFFFFFF
        op = cmp["op"]
        ok = a.new()
        if op == "SCMP_CMP_EQ":
            a.op(_LD_ABS, hi)
            a.op(_JEQ, vh, 0, fail)
            a.op(_LD_ABS, lo)
            a.op(_JEQ, vl, 0, fail)
        elif op == "SCMP_CMP_NE":
            a.op(_LD_ABS, hi)
            a.op(_JEQ, vh, 0, ok)
            a.op(_LD_ABS, lo)
            a.op(_JEQ, vl, fail, 0)
        elif op == "SCMP_CMP_MASKED_EQ":
            a.op(_LD_ABS, hi)
            a.op(_AND, vh)
            a.op(_JEQ, v2 >> 32, 0, fail)
            a.op(_LD_ABS, lo)
            a.op(_AND, vl)
            a.op(_JEQ, v2 & 0xFFFFFFFF, 0, fail)
        elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
            a.op(_LD_ABS, hi)
            a.op(_JGT, vh, ok, 0)
            a.op(_JEQ, vh, 0, fail)
            a.op(_LD_ABS, lo)
            a.op(_JGT if op == "SCMP_CMP_GT" else _JGE, vl, 0, fail)
        else:  # LT, LE
            a.op(_LD_ABS, hi)
            a.op(_JGT, vh, fail, 0)
            a.op(_JEQ, vh, 0, ok)
            a.op(_LD_ABS, lo)
            a.op(_JGT if op == "SCMP_CMP_LE" else _JGE, vl, fail, 0)
        a.label(ok)
    a.op(_RET, action)
    a.label(fail)


def _special(a: _Asm, nr: int, entries: list[Entry], default: int) -> None:
    """jeq nr -> the rules of nr, most restrictive action first (libseccomp's
    precedence when several match), then the default."""
    skip = a.new()
    a.op(_JEQ, nr, 0, skip)
    for action, groups in sorted(entries, key=lambda e: -_rank(e[0])):
        if groups is None:
            a.op(_RET, action)
            break
        for g in groups:
            _arg_group(a, g, action)
    else:
        a.op(_RET, default)
    a.label(skip)  # (every rule body returns: A is still the number here)


def _bitmap(a: _Asm, allowed: Iterable[int], base: int, allow: int, default: int) -> None:
    """A (the number, >= `base`, a multiple of 32) in `allowed` -> `allow`,
    else `default`."""
    words: dict[int, int] = {}
    for nr in allowed:
        words[(nr - base) // 32] = words.get((nr - base) // 32, 0) | 1 << ((nr - base) % 32)
    yes, no = a.new(), a.new()
    covered = 0  # A >= 32 * covered is known here
    for w in sorted(words):
        nxt = a.new()
        a.op(_JGE, base + (w + 1) * 32, nxt, 0)
        if w > covered:
            a.op(_JGE, base + w * 32, 0, no)
        if words[w] == 0xFFFFFFFF:
            a.op(_JA, yes)
        else:
            a.op(_AND, 31)
            a.op(_TAX)
            a.op(_LD_IMM, words[w])
            a.op(_RSHX)
            a.op(_JSET, 1, yes, no)
        a.label(nxt)
        covered = w + 1
    a.label(no)
    a.op(_RET, default)
    a.label(yes)
    a.op(_RET, allow)


def _rules(profile: SeccompProfile, caps: frozenset[str], goarch: str, default: int,
           default_errno: int) -> list[tuple[str, int, list[list[Mapping[str, Any]]] | None]]:
    """(name, action, arg groups or None) of every rule that applies here.
    docker's rule: filters on one argument are ANDed, but several filters on
    the same argument mean "any of them" (one group each)."""
    out: list[tuple[str, int, list[list[Mapping[str, Any]]] | None]] = []
    for rule in profile.data.get("syscalls") or []:
        if not _applies(rule, caps, goarch):
            continue
        er = rule.get("errnoRet")
        action = _action(rule["action"], default_errno if er is None else int(er))
        args = rule.get("args") or []
        indexes = [x["index"] for x in args]
        groups = None if not args else (
            [[x] for x in args] if len(set(indexes)) != len(indexes) else [list(args)])
        names = list(rule.get("names") or [])
        if isinstance(rule.get("name"), str):
            names.append(rule["name"])
        out.extend((n, action, groups) for n in names)
    return out


def _compile(profile: SeccompProfile, caps: frozenset[str]) -> bytes:
    ffi, lib = _libseccomp()
    data = profile.data
    default, default_errno = _default_action(data)
    goarch = _GOARCH.get(os.uname().machine, os.uname().machine)
    native = lib.seccomp_arch_native()
    x32 = lib.seccomp_arch_resolve_name(b"x32")
    x86_64 = lib.seccomp_arch_resolve_name(b"x86_64")
    i386 = lib.seccomp_arch_resolve_name(b"x86")
    subs: list[str] = []
    for m in data.get("archMap") or []:
        if lib.seccomp_arch_resolve_name(
                m["architecture"].removeprefix("SCMP_ARCH_").lower().encode()) == native:
            subs = list(m.get("subArchitectures") or [])
    subs += list(data.get("architectures") or [])
    arches = [native]
    for name in subs:
        tok = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
        if tok and tok not in arches:
            arches.append(tok)
    with_x32 = native == x86_64 and x32 in arches
    rules = _rules(profile, caps, goarch, default, default_errno)

    def table(arch: int) -> tuple[dict[int, list[Entry]], set[int]]:
        special: dict[int, list[Entry]] = {}
        plain: set[int] = set()
        for name, action, groups in rules:
            nr = lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
            if nr < 0 and arch == i386:
                nr = _I386_DIRECT.get(name, -1)
            if nr < 0:
                continue  # not a syscall of this architecture (or a multiplexed one)
            if arch == x32:
                nr &= ~_X32_BIT
            if groups is None and action == _SCMP_ACT_ALLOW:
                plain.add(nr)
            elif action != default or groups is not None:
                special.setdefault(nr, []).append((action, groups))
        for nr in special:  # an unconditional allow of a special one joins its rules
            if nr in plain:
                special[nr].append((_SCMP_ACT_ALLOW, None))
        return special, plain - set(special)

    a = _Asm()
    a.op(_LD_ABS, 4)  # seccomp_data.arch
    blocks = []
    for arch in arches:
        if arch == x32 and with_x32:
            continue  # in x86_64's block
        lab = a.new()
        blocks.append((arch, lab))
        a.op(_JEQ, arch, 0, 1)
        a.op(_JA, lab)
    a.op(_RET, _SCMP_ACT_KILL_PROCESS)  # an architecture the profile does not name
    for arch, lab in blocks:
        a.label(lab)
        a.op(_LD_ABS, 0)  # seccomp_data.nr
        special, plain = table(arch)
        high: set[int] = set()
        if arch == x86_64:
            main, x32_high = a.new(), a.new()
            if with_x32:
                xs, xp = table(x32)
                high = {nr for nr in xp if nr >= 512}
                a.op(_JGE, _X32_BIT, 0, main)
                a.op(_AND, ~_X32_BIT & 0xFFFFFFFF)
                a.op(_JGE, 512, 0, 1)
                a.op(_JA, x32_high)
            else:
                a.op(_JGE, _X32_BIT, 0, main)
                a.op(_RET, default)
            a.label(main)
        for nr in sorted(special):
            _special(a, nr, special[nr], default)
        _bitmap(a, plain, 0, _SCMP_ACT_ALLOW, default)
        if arch == x86_64 and with_x32:
            a.label(x32_high)
            _bitmap(a, high, 512, _SCMP_ACT_ALLOW, default)
    return a.link()


def _program(profile: SeccompProfile, caps: frozenset[str]) -> bytes:
    try:
        return _compile(profile, caps)
    except _TooFar:  # a profile too large for short jumps: libseccomp's layout
        return _compile_libseccomp(profile, caps)


#: changes with the code generator, so that a cached program of an older
#: layout is never reused
_LAYOUT = "nsprim-bpf-2"


def _disk_cache_path(key: str) -> str:
    from nsprim.state import run_dir

    return os.path.join(run_dir(), "seccomp", key + ".bpf")


def compile_bpf(profile: SeccompProfile, caps: Iterable[str]) -> bytes:
    """The BPF program (``struct sock_filter[]``) of `profile` for a container
    with capabilities `caps` (names without ``CAP_``), on this host."""
    given = caps if isinstance(caps, frozenset) else frozenset(caps)
    key = (profile.key, given)
    prog = _cache.get(key)
    if prog is not None:
        return prog
    capset = frozenset("CAP_" + c.upper().removeprefix("CAP_") for c in given)
    with _lib_lock:
        prog = _cache.get(key)
        if prog is not None:
            return prog
        # the disk cache: one file per (profile, capabilities, host)
        ident = "\0".join([_LAYOUT, profile.key, *sorted(capset), os.uname().machine,
                           os.uname().release])
        path = _disk_cache_path(sha256_hex(ident.encode())[:40])
        try:
            with open(path, "rb") as f:
                prog = f.read(1 << 20)
            if not prog or len(prog) % 8:
                prog = None
        except OSError:
            prog = None
        if prog is None:
            prog = _program(profile, capset)
            try:
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "wb", opener=lambda p, fl: os.open(p, fl, 0o600)) as f:
                    f.write(prog)
                os.replace(tmp, path)
            except OSError:
                pass  # a cache only
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = prog
        return prog
