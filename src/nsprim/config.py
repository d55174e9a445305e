"""Container configuration as frozen data, validated apart from applying it.

Every check here runs before anything touches the kernel, and a failure is a
`ConfigError` whose message names the bad value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from nsprim import _record
from nsprim import seccomp as seccomp_mod
from nsprim._record import field, record
from nsprim.caps import resolve_caps
from nsprim.devices import Device, parse_device
from nsprim.errors import ConfigError
from nsprim.namespace import Namespace, NamespaceKind
from nsprim.rootless import UserMapping
from nsprim.seccomp import SeccompProfile
from nsprim.volumes import Volume

__all__ = [
    "IdMap", "Bind", "Tmpfs", "MountSpec", "ContainerConfig", "DEFAULT_PATH",
    "DEFAULT_NAMESPACES", "DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS",
    "validate_hostname", "validate_env", "validate_env_key", "validate_abs_path",
    "validate_mount_target", "parse_user",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: namespaces a container gets unless told otherwise (docker's set)
DEFAULT_NAMESPACES = frozenset(
    {NamespaceKind.PID, NamespaceKind.NET, NamespaceKind.MNT, NamespaceKind.UTS,
     NamespaceKind.IPC, NamespaceKind.CGROUP}
)

#: docker's masked paths: hidden behind /dev/null or an empty read-only tmpfs
DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)

#: docker's read-only paths
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

_MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change"
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
_USER = re.compile(r"([^:\x00]+)(?::([^:\x00]+))?")
_ID = re.compile(r"[0-9]+", re.ASCII)


def validate_hostname(name: str) -> str:
    """A hostname: dot-separated RFC 1123 labels, at most 64 bytes (the kernel's limit)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"invalid hostname {name!r}: empty")
    if len(name.encode()) > 64:
        raise ConfigError(f"invalid hostname {name!r}: longer than 64 bytes")
    if not all(_LABEL.match(label) for label in name.split(".")):
        raise ConfigError(
            f"invalid hostname {name!r}: labels are letters, digits and '-', "
            "not starting or ending with '-'"
        )
    return name


def validate_env_key(key: str) -> str:
    """An environment variable name: not empty, no '=', no whitespace or
    control characters (a newline would forge a second variable in
    ``env``-style listings and in docker's own files)."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"invalid environment variable name {key!r}: empty")
    if "=" in key:
        raise ConfigError(f"invalid environment variable name {key!r}: contains '='")
    if not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigError(f"invalid environment variable name {key!r}: contains whitespace "
                          "or control characters")
    return key


def validate_env(env: Mapping[str, str] | Iterable[str] | None) -> tuple[str, ...]:
    """Environment as ``KEY=VALUE`` strings; later keys override earlier ones."""
    if env is None:
        return ()
    items: Iterable[tuple[str, str]]
    if isinstance(env, Mapping):
        items = env.items()
    else:
        pairs = []
        for entry in env:
            if not isinstance(entry, str) or "=" not in entry:
                raise ConfigError(f"invalid environment entry {entry!r}: expected KEY=VALUE")
            k, _, v = entry.partition("=")
            pairs.append((k, v))
        items = pairs
    out: dict[str, str] = {}
    for k, v in items:
        validate_env_key(k)
        if not isinstance(v, str) or "\x00" in v:
            raise ConfigError(f"invalid value for environment variable {k!r}: {v!r}")
        out[k] = v
    return tuple(f"{k}={v}" for k, v in out.items())


#: the kernel's longest path, with its NUL (linux/limits.h)
PATH_MAX = 4096


def validate_abs_path(path: str | os.PathLike[str], what: str) -> str:
    p = os.fspath(path)
    if not isinstance(p, str) or not p.startswith("/") or "\x00" in p:
        raise ConfigError(f"invalid {what} {p!r}: must be an absolute path")
    try:
        size = len(p.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate: no byte string names it
        raise ConfigError(f"invalid {what} {p[:48]!r}: not a valid file name") from None
    if size >= PATH_MAX:  # the kernel's bound
        raise ConfigError(f"invalid {what} {p[:48]!r}...: longer than {PATH_MAX - 1} bytes")
    return p


#: what runc lets a bind cover under /proc (lxcfs's files), as docker does
_PROC_BINDABLE = frozenset({
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
})


def validate_mount_target(path: str | os.PathLike[str], what: str,
                          proc_files: bool = False) -> str:
    """A mount's place in the container, cleaned (``//a/./b/`` -> ``/a/b``).

    Refused: relative paths, ``..`` components, the container's root itself,
    and /proc or anything under it (a mount there would hide or replace the
    container's procfs and its masks); `proc_files` allows the files runc
    allows binds over (lxcfs's)."""
    p = validate_abs_path(path, what)
    parts = [c for c in p.split("/") if c not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"invalid {what} {p!r}: '..' is not allowed in a mount target")
    if not parts:
        raise ConfigError(f"invalid {what} {p!r}: cannot mount over the container's root '/'")
    clean = "/" + "/".join(parts)
    if parts[0] == "proc" and not (proc_files and clean in _PROC_BINDABLE):
        raise ConfigError(f"invalid {what} {p!r}: cannot be mounted at /proc or under it")
    return clean


def _check_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise ConfigError(f"invalid {what} {value!r}: must be an integer from 0 to {_MAX_ID}")
    return value


def parse_user(spec: str | int | tuple[int, int] | None) -> tuple[str, str | None] | None:
    """Check a user spec (``UID``, ``UID:GID``, ``NAME``, ``NAME:GROUP``) and split it.

    Names are looked up later, in the container's /etc/passwd and /etc/group.
    """
    if spec is None:
        return None
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ConfigError(f"invalid user {spec!r}: expected (uid, gid)")
        return str(_check_id(spec[0], "uid")), str(_check_id(spec[1], "gid"))
    if isinstance(spec, int) and not isinstance(spec, bool):
        return str(_check_id(spec, "uid")), None
    if not isinstance(spec, str):
        raise ConfigError(f"invalid user {spec!r}")
    m = _USER.fullmatch(spec)
    if not m:
        raise ConfigError(f"invalid user {spec!r}: expected UID[:GID] or NAME[:GROUP]")
    user, group = m.group(1), m.group(2)
    for part in (user, group):
        if part is None:
            continue
        if not part.isprintable() or any(c.isspace() for c in part):
            raise ConfigError(f"invalid user {spec!r}: whitespace or control characters")
        if part.isdigit() and not _ID.fullmatch(part):
            raise ConfigError(f"invalid user {spec!r}: ids are ASCII digits")
    for part, what in ((user, "uid"), (group, "gid")):
        if part is not None and _ID.fullmatch(part):
            if len(part.lstrip("0")) > 10:
                raise ConfigError(f"invalid {what} {part!r}: must be an integer from 0 to "
                                  f"{_MAX_ID}")
            _check_id(int(part), what)
    return user, group


@record(frozen=True)
class IdMap:
    """A user namespace's id mapping: container ids ``container_id ..
    container_id+size-1`` are host ids ``host_uid ..`` (and ``host_gid ..``)."""

    host_uid: int
    host_gid: int | None = None
    size: int = 65536
    container_id: int = 0

    def __post_init__(self) -> None:
        _check_id(self.host_uid, "host uid")
        _check_id(self.container_id, "container id")
        if self.host_gid is not None:
            _check_id(self.host_gid, "host gid")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"invalid id map size {self.size!r}: must be a positive integer")
        hg = self.host_uid if self.host_gid is None else self.host_gid
        for start, what in ((self.host_uid, "host uid"), (hg, "host gid"),
                            (self.container_id, "container id")):
            if start + self.size - 1 > _MAX_ID:
                raise ConfigError(
                    f"invalid id map: {what} range {start}+{self.size} passes {_MAX_ID}"
                )

    @property
    def gid(self) -> int:
        return self.host_uid if self.host_gid is None else self.host_gid

    def uid_map(self) -> str:
        return f"{self.container_id} {self.host_uid} {self.size}\n"

    def gid_map(self) -> str:
        return f"{self.container_id} {self.gid} {self.size}\n"

    def to_host_uid(self, uid: int) -> int | None:
        off = uid - self.container_id
        return self.host_uid + off if 0 <= off < self.size else None

    def to_host_gid(self, gid: int) -> int | None:
        off = gid - self.container_id
        return self.gid + off if 0 <= off < self.size else None


@record(frozen=True)
class Bind:
    """Bind-mount host path `source` at `target` inside the container."""

    source: str
    target: str
    readonly: bool = False

    def __post_init__(self) -> None:
        validate_abs_path(self.source, "bind mount source")
        object.__setattr__(self, "target", validate_mount_target(
            self.target, "bind mount target", proc_files=True))


@record(frozen=True)
class Tmpfs:
    """A tmpfs at `target` (docker's ``--tmpfs``)."""

    target: str
    size: int | str | None = None  # bytes, or docker's size syntax ("16m", "1.5g")
    mode: int = 0o1777
    readonly: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", validate_mount_target(self.target, "tmpfs target"))
        if isinstance(self.size, str):  # the one size parser the CLI uses too
            from nsprim.units import parse_size

            object.__setattr__(self, "size", parse_size(self.size, "tmpfs size"))
        if self.size is not None and (isinstance(self.size, bool) or
                                      not isinstance(self.size, int) or self.size <= 0):
            raise ConfigError(f"invalid tmpfs size {self.size!r}")
        if isinstance(self.mode, bool) or not isinstance(self.mode, int) or \
                not 0 <= self.mode <= 0o7777:
            raise ConfigError(f"invalid tmpfs mode {self.mode!r}")

    def data(self) -> str:
        d = f"mode={self.mode:o}"
        if self.size is not None:
            d += f",size={self.size}"
        return d


MountSpec = Bind | Tmpfs | Volume

NamespaceSetting = bool | Namespace


@record(frozen=True)
class ContainerConfig:
    """What to run and how: the validated, immutable input of a plan."""

    argv: tuple[str, ...]
    rootfs: str | None = None
    hostname: str | None = None
    env: tuple[str, ...] = ()
    cwd: str | None = None
    user: tuple[str, str | None] | None = None
    namespaces: Mapping[NamespaceKind, NamespaceSetting] = field(default_factory=dict)
    user_namespace: IdMap | UserMapping | None = None
    capabilities: frozenset[str] = field(default_factory=lambda: resolve_caps())
    no_new_privileges: bool = False  # docker's default: setuid binaries work
    #: docker's default profile unless told otherwise; None: unconfined
    seccomp: SeccompProfile | None = field(default_factory=lambda: seccomp_mod.DEFAULT())
    privileged: bool = False
    devices: tuple[Device, ...] = ()
    read_only: bool = False
    mounts: tuple[MountSpec, ...] = ()
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    mount_dev: bool = True
    mount_sys: bool = True
    pass_fds: tuple[int, ...] = ()
    new_session: bool = False
    die_with_parent: bool = False
    tty: bool = False
    init: bool = False
    nondumpable: bool = False
    user_root: str | None = None  # where /etc/passwd and /etc/group are (default rootfs)
    #: supplementary groups added to the user's (OCI additionalGids)
    extra_groups: tuple[int, ...] = ()
    #: the supplementary groups are extra_groups only, none from /etc/group (OCI)
    groups_only: bool = False
    #: a FIFO fd (O_RDWR): the child waits on it for `start` before it execs (OCI create)
    wait_start_fd: int = -1
    domainname: str | None = None
    # docker's --ulimit, --sysctl, --oom-score-adj, --shm-size, --group-add
    rlimits: tuple[tuple[int, int, int], ...] = ()   # (RLIMIT_*, soft, hard); -1 unlimited
    sysctls: tuple[tuple[str, str], ...] = ()
    oom_score_adj: int | None = None
    shm_size: int | None = None
    group_add: tuple[str, ...] = ()

    def ns_setting(self, kind: NamespaceKind) -> NamespaceSetting:
        return self.namespaces.get(kind, False)


def _own_caps(caps: frozenset[str]) -> frozenset[str]:
    """`caps` less those this process cannot give (its bounding set): --privileged
    means every capability the caller has, as docker's is every one dockerd has."""
    from nsprim.caps import ALL_CAPS

    try:
        with open("/proc/self/status") as f:
            bnd = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return caps
    return frozenset(c for c in caps if bnd >> ALL_CAPS[c] & 1)


def make_config(
    argv: Sequence[str],
    *,
    rootfs: str | os.PathLike[str] | None = None,
    hostname: str | None = None,
    env: Mapping[str, str] | Iterable[str] | None = None,
    cwd: str | None = None,
    user: str | int | tuple[int, int] | None = None,
    namespaces: Mapping[NamespaceKind | str, NamespaceSetting] | None = None,
    user_namespace: IdMap | UserMapping | str | None = None,
    cap_add: Iterable[str] = (),
    cap_drop: Iterable[str] = (),
    no_new_privileges: bool = False,
    seccomp: str | os.PathLike[str] | Mapping[str, object] | SeccompProfile | None = "default",
    privileged: bool = False,
    devices: Iterable[str | Device] = (),
    read_only: bool = False,
    mounts: Iterable[MountSpec] = (),
    masked_paths: Iterable[str] | None = None,
    readonly_paths: Iterable[str] | None = None,
    mount_dev: bool = True,
    mount_sys: bool = True,
    pass_fds: Iterable[int] = (),
    new_session: bool = False,
    die_with_parent: bool = False,
    tty: bool = False,
    init: bool = False,
    nondumpable: bool = False,
    user_root: str | None = None,
    extra_groups: Iterable[int] = (),
    groups_only: bool = False,
    wait_start_fd: int = -1,
    domainname: str | None = None,
    ulimits: Iterable[str] | Mapping[str, int | tuple[int, int]] = (),
    sysctls: Mapping[str, str] | None = None,
    oom_score_adj: int | None = None,
    shm_size: int | str | None = None,
    group_add: Iterable[str | int] = (),
) -> ContainerConfig:
    """Validate keyword arguments into a ContainerConfig (raises ConfigError)."""
    if isinstance(argv, (str, bytes)):
        raise ConfigError(f"invalid command {argv!r}: expected a list of arguments")
    args = tuple(argv)
    if not args:
        raise ConfigError("invalid command []: no command given")
    for a in args:
        if not isinstance(a, str) or "\x00" in a:
            raise ConfigError(f"invalid command argument {a!r}")
    root = None if rootfs is None else validate_abs_path(os.path.abspath(rootfs), "rootfs")
    if hostname is not None:
        validate_hostname(hostname)
    if cwd is not None:
        validate_abs_path(cwd, "working directory")

    ns: dict[NamespaceKind, NamespaceSetting] = {k: True for k in DEFAULT_NAMESPACES}
    for k, v in (namespaces or {}).items():
        kind = NamespaceKind.parse(k)
        if not isinstance(v, (bool, Namespace)):
            raise ConfigError(f"invalid setting for namespace {kind.value}: {v!r}")
        if isinstance(v, Namespace) and v.kind is not kind:
            raise ConfigError(f"namespace {kind.value} given a {v.kind.value} namespace")
        ns[kind] = v
    if isinstance(user_namespace, str) or (
            user_namespace is None and not isinstance(ns.get(NamespaceKind.USER), Namespace)
            and os.geteuid() != 0):
        # rootless (or a mode by name): a user namespace of our own (nsprim.rootless)
        from nsprim import rootless

        if isinstance(ns.get(NamespaceKind.USER), Namespace):
            raise ConfigError("user_namespace and joining a user namespace are exclusive")
        user_namespace = rootless.mapping(
            user_namespace or os.environ.get("NSPRIM_USERNS") or "auto")
    if isinstance(user_namespace, UserMapping) and user_namespace.mode == "keep-id" \
            and user is None:
        user = (os.getuid(), os.getgid())  # podman's keep-id: the user, as itself
    if user_namespace is not None:
        if not isinstance(user_namespace, (IdMap, UserMapping)):
            raise ConfigError(f"invalid user_namespace {user_namespace!r}: expected an IdMap")
        if isinstance(ns.get(NamespaceKind.USER), Namespace):
            raise ConfigError("user_namespace and joining a user namespace are exclusive")
        ns[NamespaceKind.USER] = True
    elif ns.get(NamespaceKind.USER) is True:
        raise ConfigError("a new user namespace needs an IdMap: pass user_namespace=IdMap(...)")
    if root is not None and ns.get(NamespaceKind.MNT) is not True:
        raise ConfigError("rootfs needs a new mount namespace (namespaces={'mnt': True})")
    if hostname is not None and ns.get(NamespaceKind.UTS) is not True:
        raise ConfigError(f"hostname {hostname!r} needs a new uts namespace")

    mspecs = tuple(mounts)
    for m in mspecs:
        if not isinstance(m, (Bind, Tmpfs, Volume)):
            raise ConfigError(f"invalid mount {m!r}: expected Bind, Tmpfs or Volume")
    # Bind and Tmpfs check (and clean) their targets when made; a Volume's here
    mspecs = tuple(
        _record.replace(m, target=validate_mount_target(m.target, "volume target"))
        if isinstance(m, Volume) else m for m in mspecs)
    if mspecs and root is None:
        raise ConfigError("mounts need a rootfs")

    privileged = bool(privileged)
    devs = tuple(parse_device(d) for d in devices)
    if privileged or seccomp is None or seccomp == "unconfined":
        profile = None
    elif seccomp == "default":
        profile = seccomp_mod.DEFAULT()
    elif isinstance(seccomp, SeccompProfile):
        profile = seccomp
    elif isinstance(seccomp, (str, os.PathLike, Mapping)):
        profile = seccomp_mod.load_profile(seccomp)
    else:
        raise ConfigError(f"invalid seccomp {seccomp!r}: 'default', 'unconfined', a JSON "
                          "file or a dict")
    if privileged:
        # docker --privileged: every capability, every device, no masks
        cap_add = list(cap_add) + ["ALL"]
        if masked_paths is None:
            masked_paths = ()
        if readonly_paths is None:
            readonly_paths = ()

    groups = tuple(_check_id(g, "additional gid") for g in extra_groups)
    if domainname is not None:
        validate_hostname(domainname)
        if ns.get(NamespaceKind.UTS) is not True:
            raise ConfigError(f"domainname {domainname!r} needs a new uts namespace")
    fds = tuple(pass_fds) + ((wait_start_fd,) if wait_start_fd != -1 else ())
    for fd in fds:
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise ConfigError(f"invalid fd to pass {fd!r}")

    return ContainerConfig(
        argv=args,
        rootfs=root,
        hostname=hostname,
        env=validate_env(env),
        cwd=cwd,
        user=parse_user(user),
        namespaces=ns,
        user_namespace=user_namespace,
        capabilities=_own_caps(resolve_caps(cap_add, cap_drop)) if privileged
        else resolve_caps(cap_add, cap_drop),
        no_new_privileges=bool(no_new_privileges),
        seccomp=profile,
        privileged=privileged,
        devices=devs,
        read_only=bool(read_only),
        mounts=mspecs,
        masked_paths=DEFAULT_MASKED_PATHS if masked_paths is None else tuple(
            validate_abs_path(p, "masked path") for p in masked_paths),
        readonly_paths=DEFAULT_READONLY_PATHS if readonly_paths is None else tuple(
            validate_abs_path(p, "read-only path") for p in readonly_paths),
        mount_dev=bool(mount_dev),
        mount_sys=bool(mount_sys),
        pass_fds=fds[:len(fds) - 1] if wait_start_fd != -1 else fds,
        new_session=bool(new_session),
        die_with_parent=bool(die_with_parent),
        tty=bool(tty),
        init=bool(init),
        user_root=None if user_root is None else validate_abs_path(user_root, "user root"),
        nondumpable=bool(nondumpable),
        extra_groups=groups,
        groups_only=bool(groups_only),
        wait_start_fd=wait_start_fd,
        domainname=domainname,
        rlimits=tuple(parse_ulimit(u) for u in ulimit_specs(ulimits)),
        sysctls=tuple((validate_sysctl(k, v), v) for k, v in (sysctls or {}).items()),
        oom_score_adj=validate_oom_score_adj(oom_score_adj),
        shm_size=validate_shm_size(shm_size),
        group_add=tuple(validate_group(g) for g in group_add),
    )


# ------------------------------------------ docker's process tuning flags

#: docker's --ulimit names -> RLIMIT_* numbers (Linux, all architectures)
ULIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
           "nofile": 7, "memlock": 8, "as": 9, "locks": 10, "sigpending": 11,
           "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15}
_ULIMIT_VALUE = re.compile(r"-1|[0-9]{1,19}", re.ASCII)
_SYSCTL = re.compile(r"[a-z0-9_]+([./][a-z0-9_-]+)+", re.ASCII)
#: the sysctls docker lets a container set: its namespaces' own (runc's list)
_SYSCTL_IPC = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
               "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def ulimit_specs(ulimits: Iterable[str] | Mapping[str, int | tuple[int, int]]
                 ) -> list[str]:
    """docker's ``NAME=SOFT[:HARD]`` strings, from those or from the Python
    API's mapping ``{"nofile": (1024, 4096), "core": 0}`` (one number: soft
    and hard alike; -1: unlimited)."""
    if not isinstance(ulimits, Mapping):
        return list(ulimits)
    out = []
    for name, v in ulimits.items():
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
            out.append(f"{name}={v[0]}:{v[1]}")
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(f"{name}={v}")
        else:
            raise ConfigError(f"invalid ulimit {name}={v!r}: an integer or (soft, hard)")
    return out


def parse_ulimit(spec: str) -> tuple[int, int, int]:
    """docker's ``--ulimit NAME=SOFT[:HARD]`` (-1: unlimited) -> (RLIMIT_*, soft, hard)."""
    if not isinstance(spec, str):
        raise ConfigError(f"invalid ulimit {spec!r}: expected NAME=SOFT[:HARD]")
    name, sep, vals = spec.partition("=")
    if not sep or name not in ULIMITS:
        raise ConfigError(f"invalid ulimit {spec!r}: expected NAME=SOFT[:HARD] with NAME one "
                          "of " + ", ".join(sorted(ULIMITS)))
    parts = vals.split(":")
    if len(parts) > 2 or not all(_ULIMIT_VALUE.fullmatch(p) for p in parts):
        raise ConfigError(f"invalid ulimit {spec!r}: limits are integers (-1: unlimited)")
    nums = [int(p) for p in parts]
    if any(n > (1 << 63) - 1 for n in nums):
        raise ConfigError(f"invalid ulimit {spec!r}: out of range")
    soft, hard = nums[0], nums[-1]
    if hard != -1 and (soft == -1 or soft > hard):
        raise ConfigError(f"invalid ulimit {spec!r}: the soft limit must be less than or "
                          "equal to the hard limit")
    return ULIMITS[name], soft, hard


def validate_sysctl(key: str, value: str) -> str:
    """A sysctl a container may set (net.*, its IPC namespace's, fs.mqueue.*)."""
    if not isinstance(key, str) or not _SYSCTL.fullmatch(key):
        raise ConfigError(f"invalid sysctl {key!r}")
    if not isinstance(value, str) or "\n" in value or "\0" in value or len(value) > 4096:
        raise ConfigError(f"invalid sysctl value {value!r} for {key}")
    k = key.replace("/", ".")
    if not (k.startswith("net.") or k.startswith("fs.mqueue.") or k in _SYSCTL_IPC):
        raise ConfigError(f"sysctl {key!r} is not allowed: not in a container's own "
                          "namespaces (net.*, fs.mqueue.*, kernel.msg*/sem/shm*)")
    return key


def validate_oom_score_adj(v: int | None) -> int | None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or
                          not -1000 <= v <= 1000):
        raise ConfigError(f"invalid oom-score-adj {v!r}: from -1000 to 1000")
    return v


def validate_shm_size(v: int | str | None) -> int | None:
    if v is None:
        return None
    if isinstance(v, str):
        from nsprim.units import parse_size

        v = parse_size(v, "shm-size")
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(f"invalid shm-size {v!r}: must be greater than 0")
    return v


_GROUP_NAME = re.compile(r"[0-9]{1,10}|[a-zA-Z_][a-zA-Z0-9_.-]{0,31}", re.ASCII)


def validate_group(g: str | int) -> str:
    text = str(g) if isinstance(g, int) and not isinstance(g, bool) else g
    if not isinstance(text, str) or not _GROUP_NAME.fullmatch(text) or \
            text.isdigit() and int(text) > 0xFFFFFFFE:
        raise ConfigError(f"invalid group {g!r}: a group name or number")
    return text
