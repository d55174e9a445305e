"""Turn a ContainerConfig into a flat list of setup operations for the C child.

The plan is pure data (`Op`), built in Python where it can be inspected and
tested; `compile_plan` lays it out as a C array of ``struct nsp_op`` for the
spawn engine (csrc/spawn.c), which executes it after clone3.
"""

from __future__ import annotations

import os
import signal
import stat
from functools import lru_cache

from nsprim._native import ffi, lib
from nsprim._record import record
from nsprim.caps import cap_mask
from nsprim.config import DEFAULT_PATH, Bind, ContainerConfig, Tmpfs
from nsprim.errors import ConfigError
from nsprim.exe import helper_fd
from nsprim.namespace import Namespace, NamespaceKind
from nsprim.rootless import UserMapping
from nsprim.seccomp import compile_bpf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

__all__ = ["Op", "Plan", "build_plan", "compile_plan", "resolve_user"]

@record
class Op:
    """One setup step of the child.  `step` names it in errors; `detail` is
    what an error shows next to it (a path, a name)."""

    kind: int
    step: str
    src: str | None = None
    dst: str | None = None
    fstype: str | None = None
    data: str | None = None
    flags: int = 0
    mflags: int = 0
    arg: int = 0
    fd: int = -1
    caps: int = 0
    uid: int = 0
    gid: int = 0
    ids: tuple[int, ...] = ()
    argv: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    blob: bytes | None = None  # binary data (a seccomp program), as `data`
    detail: str = ""

    def __init__(self, kind: int, step: str, src: str | None = None, dst: str | None = None,
                 fstype: str | None = None, data: str | None = None, flags: int = 0,
                 mflags: int = 0, arg: int = 0, fd: int = -1, caps: int = 0, uid: int = 0,
                 gid: int = 0, ids: tuple[int, ...] = (), argv: tuple[str, ...] = (),
                 env: tuple[str, ...] = (), blob: bytes | None = None,
                 detail: str = "") -> None:
        # written out: a plan makes ~50 ops per container, and the record's
        # generic __init__ cost 0.16 ms of a 3 ms start
        self.kind, self.step, self.src, self.dst, self.fstype = kind, step, src, dst, fstype
        self.data, self.flags, self.mflags, self.arg, self.fd = data, flags, mflags, arg, fd
        self.caps, self.uid, self.gid, self.ids, self.argv = caps, uid, gid, ids, argv
        self.env, self.blob, self.detail = env, blob, detail


if TYPE_CHECKING:
    class CgroupTarget(Protocol):
        """What a plan needs of a cgroup (nsprim.cgroup.Cgroup)."""

        @property
        def fd(self) -> int: ...
        @property
        def v2_path(self) -> str | None: ...
        def procs_files(self) -> list[str]: ...


@record
class Plan:
    ops: list[Op]
    clone_flags: int
    cgroup_fd: int = -1
    timens_fd: int = -1
    exec_fd: int = -1  # the sealed helper that execs the command (nsprim.exe)
    sync: bool = False
    uid: int = 0
    gid: int = 0
    env: tuple[str, ...] = ()


# ------------------------------------------------------------------ users
#
# /etc/passwd and /etc/group come from the image (or a running container's
# root): hostile input.  They are opened without following them anywhere
# special: symlinks resolve inside the root, the file found is first held as
# an O_PATH fd (opening a FIFO or a device this way runs no driver code and
# cannot block), and it is read only if it is a regular file of bounded size.

_ID_MAX = 2**32 - 2  # (uid_t)-1 means "no change"

#: the largest user database read (docker's images have a few KiB)
USER_DB_MAX = 1 << 20

_DB_FILES = ("/etc/passwd", "/etc/group")
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def _open_in_root(root_fd: int, rel: str) -> int:
    """An O_PATH fd of `rel` under the directory `root_fd`, symlinks resolved
    inside it (of the host path `rel` when `root_fd` is -1); -1 when there is none."""
    if root_fd < 0:
        try:
            return os.open(rel, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return -1
    return int(lib.nsp_openat2(root_fd, os.fsencode(rel.lstrip("/")), os.O_PATH | os.O_CLOEXEC,
                               0, lib.RESOLVE_IN_ROOT | lib.RESOLVE_NO_MAGICLINKS))


def _where(rootfs: str | None, path: str) -> str:
    return path if rootfs is None else f"{path} of the container ({rootfs})"


def _check_db(rootfs: str | None, path: str, st: os.stat_result) -> None:
    """A user database is a regular file of at most USER_DB_MAX bytes."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "a special file")
        raise ConfigError(f"cannot read {_where(rootfs, path)}: it is {kind}, "
                          "not a regular file")
    if st.st_size > USER_DB_MAX:
        raise ConfigError(f"cannot read {_where(rootfs, path)}: larger than "
                          f"{USER_DB_MAX} bytes")


def _open_db(root_fd: int, rootfs: str | None, path: str
             ) -> tuple[int, os.stat_result] | None:
    """The O_PATH fd and status of a user database, checked; None if absent."""
    fd = _open_in_root(root_fd, path)
    if fd < 0:
        return None
    try:
        st = os.fstat(fd)
        _check_db(rootfs, path, st)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_db(rootfs: str | None, path: str, held: tuple[int, os.stat_result] | None
             ) -> list[list[str]]:
    """The entries of a user database held by `held` (from _open_db)."""
    if held is None:
        return []
    pfd, st = held
    # reopen the very inode the O_PATH fd holds (no second lookup to race);
    # O_NONBLOCK and O_NOCTTY in case it is not what fstat said
    fd = os.open(f"/proc/self/fd/{pfd}",
                 os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st2 = os.fstat(fd)
        _check_db(rootfs, path, st2)
        if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            raise ConfigError(f"cannot read {_where(rootfs, path)}: it changed while read")
        chunks: list[bytes] = []
        size = 0
        while size <= USER_DB_MAX:
            b = os.read(fd, USER_DB_MAX + 1 - size)
            if not b:
                break
            chunks.append(b)
            size += len(b)
    finally:
        os.close(fd)
    if size > USER_DB_MAX:
        raise ConfigError(f"cannot read {_where(rootfs, path)}: larger than "
                          f"{USER_DB_MAX} bytes")
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


_user_cache: dict[tuple[Any, ...], tuple[int, int, tuple[int, ...], str]] = {}


def _stamp(held: tuple[int, os.stat_result] | None) -> tuple[int, ...] | None:
    if held is None:
        return None
    st = held[1]
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size


def resolve_user(
    rootfs: str | None, user: tuple[str, str | None] | None
) -> tuple[int, int, tuple[int, ...], str]:
    """(uid, gid, supplementary groups, home) for a user spec, looked up in the
    container's /etc/passwd and /etc/group as docker does.  Answers are cached
    until either file changes.  A database that is not a regular file, or is
    larger than USER_DB_MAX, is a ConfigError (never a wait)."""
    held: list[tuple[int, os.stat_result] | None] = [None, None]
    root_fd = -1
    try:
        if rootfs is not None:
            try:
                root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                pass  # no root: no databases, as when they are missing
        if rootfs is None or root_fd >= 0:
            for i, path in enumerate(_DB_FILES):
                held[i] = _open_db(root_fd, rootfs, path)
        key = (rootfs, user, _stamp(held[0]), _stamp(held[1]))
        hit = _user_cache.get(key)
        if hit is None:
            hit = _resolve_user(user, _read_db(rootfs, _DB_FILES[0], held[0]),
                                _read_db(rootfs, _DB_FILES[1], held[1]))
            if len(_user_cache) > 256:
                _user_cache.clear()
            _user_cache[key] = hit
    finally:
        for h in held:
            if h is not None:
                os.close(h[0])
        if root_fd >= 0:
            os.close(root_fd)
    return hit


def _db_id(text: str) -> int | None:
    """A uid or gid field of a user database: ASCII digits in range, else None."""
    if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= _ID_MAX:
        return int(text)
    return None


def _resolve_user(
    user: tuple[str, str | None] | None, passwd: list[list[str]],
    groups_db: list[list[str]],
) -> tuple[int, int, tuple[int, ...], str]:
    if user is None:
        user = ("0", None)
    name, group = user
    numeric = _db_id(name)
    entry = None
    for f in passwd:
        if len(f) >= 6 and (f[0] == name or (numeric is not None and f[2] == name)):
            entry = f
            break
    if numeric is not None:
        uid = numeric
    elif entry is not None and _db_id(entry[2]) is not None:
        uid = int(entry[2])
    else:
        raise ConfigError(f"unable to find user {name!r}: no matching entries in passwd file")
    gid = (_db_id(entry[3]) if entry is not None else None) or 0
    home = entry[5] if entry is not None and len(entry) >= 6 and entry[5] else "/"
    if group is not None:
        gnum = _db_id(group)
        if gnum is not None:
            gid = gnum
        else:
            for g in groups_db:
                if len(g) >= 3 and g[0] == group and _db_id(g[2]) is not None:
                    gid = int(g[2])
                    break
            else:
                raise ConfigError(
                    f"unable to find group {group!r}: no matching entries in group file")
    extra: list[int] = []
    if entry is not None:
        for g in groups_db:
            gi = _db_id(g[2]) if len(g) >= 4 else None
            if gi is not None and entry[0] in g[3].split(",") and gi != gid and gi not in extra:
                extra.append(gi)
    return uid, gid, tuple(extra), home


# ------------------------------------------------------------------ plan

_NOSUID_NODEV_NOEXEC = lib.MS_NOSUID | lib.MS_NODEV | lib.MS_NOEXEC
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
    ("/proc/kcore", "/dev/core"), ("pts/ptmx", "/dev/ptmx"),
)


def _host_devices() -> list[str]:
    """--privileged: every device node at the top of the host's /dev."""
    out = []
    for e in os.scandir("/dev"):
        try:
            mode = e.stat(follow_symlinks=False).st_mode
        except OSError:
            continue
        if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and e.name not in ("ptmx", "console"):
            out.append(e.name)
    return sorted(out)


def _mounts(cfg: ContainerConfig, new: set[NamespaceKind], pidns_fd: int = -1,
            overlay: str | None = None, owner: tuple[int, int] = (0, 0)) -> list[Op]:
    """The root's mounts.  `pidns_fd`: a joined pid namespace, which /proc
    must show (we are not in it ourselves: see build_plan).  `overlay`: the
    options of an overlay the child mounts on the rootfs first (rootless)."""
    assert cfg.rootfs is not None
    rootfs = cfg.rootfs
    userns = NamespaceKind.USER in new
    # nodev on everything but the device nodes bound from the host (see
    # nsprim.devices); --privileged: the host's devices, as docker
    nodev = 0 if cfg.privileged else lib.NSP_F_NODEV
    ops = [
        Op(lib.NSP_OP_MOUNT_PROPAGATION, "mount_propagation", mflags=lib.MS_PRIVATE,
           detail="/ rprivate"),
        *([] if overlay is None else [
            Op(lib.NSP_OP_MOUNT, "mount_overlay", src="overlay", dst=rootfs, fstype="overlay",
               data=overlay, detail=f"{rootfs} (overlay in the user namespace)")]),
        Op(lib.NSP_OP_ROOT, "rootfs", src=rootfs, flags=nodev, detail=f"rootfs={rootfs}"),
        Op(lib.NSP_OP_MOUNT, "mount_proc", src="proc", dst="/proc", fstype="proc",
           mflags=_NOSUID_NODEV_NOEXEC, flags=lib.NSP_F_MKDIR, fd=pidns_fd,
           detail=f"{rootfs}/proc"),
    ]
    if cfg.mount_dev:
        ops.append(Op(lib.NSP_OP_MOUNT, "mount_dev", src="tmpfs", dst="/dev", fstype="tmpfs",
                      mflags=lib.MS_NOSUID | (0 if cfg.privileged else lib.MS_NODEV)
                      | lib.MS_STRICTATIME,
                      data="mode=755,size=65536k", flags=lib.NSP_F_MKDIR,
                      detail=f"{rootfs}/dev"))
        for node in _host_devices() if cfg.privileged else _DEV_NODES:
            ops.append(Op(lib.NSP_OP_BIND, "bind_device", src=f"/dev/{node}", dst=f"/dev/{node}",
                          flags=lib.NSP_F_MKFILE, detail=f"/dev/{node}"))
        pts_data = "newinstance,ptmxmode=0666,mode=0620"
        if not userns or (cfg.user_namespace is not None
                          and cfg.user_namespace.to_host_gid(5) is not None):
            pts_data += ",gid=5"
        ops.append(Op(lib.NSP_OP_MOUNT, "mount_devpts", src="devpts", dst="/dev/pts",
                      fstype="devpts", mflags=lib.MS_NOSUID | lib.MS_NOEXEC, data=pts_data,
                      flags=lib.NSP_F_MKDIR, detail="/dev/pts"))
        for target, link in _DEV_LINKS:
            ops.append(Op(lib.NSP_OP_SYMLINK, "symlink", src=target, dst=link, detail=link))
        shm = f"{cfg.shm_size}" if cfg.shm_size is not None else "65536k"
        ops.append(Op(lib.NSP_OP_MOUNT, "mount_shm", src="shm", dst="/dev/shm", fstype="tmpfs",
                      mflags=_NOSUID_NODEV_NOEXEC, data=f"mode=1777,size={shm}",
                      flags=lib.NSP_F_MKDIR, detail="/dev/shm"))
        if NamespaceKind.IPC in new:
            ops.append(Op(lib.NSP_OP_MOUNT, "mount_mqueue", src="mqueue", dst="/dev/mqueue",
                          fstype="mqueue", mflags=_NOSUID_NODEV_NOEXEC, flags=lib.NSP_F_MKDIR,
                          detail="/dev/mqueue"))
    if cfg.mount_sys:
        if NamespaceKind.NET in new or not userns:
            ro = 0 if cfg.privileged else lib.MS_RDONLY  # --privileged: /sys read-write
            ops.append(Op(lib.NSP_OP_MOUNT, "mount_sys", src="sysfs", dst="/sys", fstype="sysfs",
                          mflags=_NOSUID_NODEV_NOEXEC | ro, flags=lib.NSP_F_MKDIR,
                          detail=f"{rootfs}/sys"))
        else:  # sysfs of a network namespace we do not own: bind the host's
            ops.append(Op(lib.NSP_OP_BIND, "bind_sys", src="/sys", dst="/sys",
                          flags=lib.NSP_F_MKDIR | lib.NSP_F_REC | lib.NSP_F_RDONLY,
                          detail=f"{rootfs}/sys"))
    for d in cfg.devices:
        ops.append(Op(lib.NSP_OP_BIND, "bind_device", src=d.host, dst=d.container,
                      flags=lib.NSP_F_MKFILE, detail=f"{d.host}:{d.container}"))
    for m in cfg.mounts:
        if isinstance(m, Bind):
            fl = lib.NSP_F_MKDIR | lib.NSP_F_MKFILE | lib.NSP_F_REC | nodev
            if m.readonly:
                fl |= lib.NSP_F_RDONLY
            ops.append(Op(lib.NSP_OP_BIND, "bind_mount", src=m.source, dst=m.target, flags=fl,
                          detail=f"{m.source}:{m.target}"))
        elif isinstance(m, Tmpfs):
            mf = lib.MS_NOSUID | lib.MS_NODEV | (lib.MS_RDONLY if m.readonly else 0)
            ops.append(Op(lib.NSP_OP_MOUNT, "mount_tmpfs", src="tmpfs", dst=m.target,
                          fstype="tmpfs", mflags=mf, data=m.data(), flags=lib.NSP_F_MKDIR,
                          detail=m.target))
    if cfg.cwd is not None and cfg.cwd.strip("/"):
        # a working directory that is not there is made (docker's, runc's),
        # after the mounts (it may be in a volume), before read-only applies
        ops.append(Op(lib.NSP_OP_WORKDIR, "workdir", dst=cfg.cwd, uid=owner[0],
                      gid=owner[1], detail=cfg.cwd))
    # masks and read-only paths after every mount (runc's order): a bind
    # cannot uncover them, and they apply to what is bound too
    for path in cfg.masked_paths:
        ops.append(Op(lib.NSP_OP_MASK, "mask_path", dst=path, flags=lib.NSP_F_OPTIONAL,
                      detail=path))
    for path in cfg.readonly_paths:
        ops.append(Op(lib.NSP_OP_READONLY, "readonly_path", dst=path,
                      flags=lib.NSP_F_OPTIONAL | lib.NSP_F_REC, detail=path))
    if cfg.read_only:
        ops.append(Op(lib.NSP_OP_READONLY, "readonly_rootfs", dst="/", detail=rootfs))
    ops.append(Op(lib.NSP_OP_PIVOT_ROOT, "pivot_root", detail=f"rootfs={rootfs}"))
    return ops


def _setup_ids(cfg: ContainerConfig) -> tuple[int, int]:
    m = cfg.user_namespace
    if isinstance(m, UserMapping):
        return m.setup_uid, m.setup_gid
    return 0, 0


def _setgroups_denied(cfg: ContainerConfig, new: set[NamespaceKind]) -> bool:
    """A new user namespace whose gid_map we wrote ourselves, unprivileged:
    setgroups(2) is denied in it."""
    m = cfg.user_namespace
    return NamespaceKind.USER in new and isinstance(m, UserMapping) and m.setgroups_denied
def _tuning(cfg: ContainerConfig) -> list[Op]:
    """--ulimit, --oom-score-adj and --sysctl, in the child once it is in
    its namespaces (a sysctl of net.* or the IPC namespace is the writer's
    namespace's) and before the root changes (the host's /proc is still
    where it was)."""
    ops: list[Op] = []
    for res, soft, hard in cfg.rlimits:
        inf = (1 << 64) - 1
        s_, h_ = (inf if soft == -1 else soft), (inf if hard == -1 else hard)
        ops.append(Op(lib.NSP_OP_RLIMIT, "setrlimit", arg=res,
                      ids=(s_ & 0xFFFFFFFF, s_ >> 32, h_ & 0xFFFFFFFF, h_ >> 32),
                      detail=f"resource {res} = {soft}:{hard}"))
    if cfg.oom_score_adj is not None:
        ops.append(Op(lib.NSP_OP_WRITE_FILE, "oom_score_adj", src="/proc/self/oom_score_adj",
                      data=str(cfg.oom_score_adj), detail=str(cfg.oom_score_adj)))
    for key, value in cfg.sysctls:
        path = "/proc/sys/" + key.replace(".", "/") if "/" not in key else "/proc/sys/" + key
        ops.append(Op(lib.NSP_OP_WRITE_FILE, "sysctl", src=path, data=value,
                      detail=f"{key}={value}"))
    return ops


@lru_cache(maxsize=64)
def _caps_detail(caps: frozenset[str]) -> str:
    return ",".join(sorted(caps))


_JOIN_ORDER = (NamespaceKind.USER, NamespaceKind.MNT, NamespaceKind.NET, NamespaceKind.UTS,
               NamespaceKind.IPC, NamespaceKind.CGROUP)


def build_plan(cfg: ContainerConfig, stdio: tuple[int, int, int],
               cgroup: CgroupTarget | None = None, *, parent_maps: bool = False,
               overlay: str | None = None) -> Plan:
    """The plan that sets up and runs `cfg`'s command with `stdio` as fds 0-2,
    in `cgroup` if one is given.  `parent_maps`: the parent writes the id
    maps (and may act then) even when the child could write its own.
    `overlay`: mount(2) options of an overlay the child mounts on the rootfs
    before entering it (rootless: only its user namespace may mount it)."""
    new = {k for k, v in cfg.namespaces.items() if v is True}
    joined = {k: v for k, v in cfg.namespaces.items() if isinstance(v, Namespace)}
    flags = 0
    for k in new:
        flags |= k.flag
    ops: list[Op] = []
    plan = Plan(ops=ops, clone_flags=flags)
    if cfg.nondumpable:
        # before anything of a container is joined: it may not ptrace us or
        # reach the host binary through our /proc entries
        ops.append(Op(lib.NSP_OP_NONDUMPABLE, "nondumpable"))

    if cgroup is not None:
        # Join the cgroup first, while our credentials are still the host's.
        # v2: born in it by clone3 (CLONE_INTO_CGROUP), else write cgroup.procs;
        # v1 hierarchies: always written.  The cgroup namespace comes after.
        plan.cgroup_fd = cgroup.fd
        for path in cgroup.procs_files():
            ops.append(Op(lib.NSP_OP_WRITE_FILE, "cgroup_join", src=path, data="0",
                          detail=path))
        if cgroup.v2_path is not None:
            path = cgroup.v2_path + "/cgroup.procs"
            ops.append(Op(lib.NSP_OP_WRITE_FILE, "cgroup_join", src=path, data="0",
                          flags=lib.NSP_F_UNLESS_PLACED, detail=path))
        if NamespaceKind.CGROUP in new:
            plan.clone_flags &= ~lib.CLONE_NEWCGROUP
            ops.append(Op(lib.NSP_OP_UNSHARE, "unshare_cgroup", arg=lib.CLONE_NEWCGROUP,
                          detail="cgroup namespace"))

    # join existing namespaces: user first (it grants the rights for the rest).
    # A pid namespace last, and only for our children: the process that sets
    # up stays out of the container's sight (in a pid namespace it cannot
    # see) until the helper forks the command into it, ready -- so nothing in
    # the container (with CAP_SYS_PTRACE, say) can open /proc/PID/root, /mem
    # or the fds of a process that is half in the host.  A /proc of our own
    # then shows that namespace through procfs's pidns parameter.
    for kind in (*_JOIN_ORDER, NamespaceKind.PID) if joined else ():
        if kind in joined:
            ops.append(Op(lib.NSP_OP_SETNS, "setns", fd=joined[kind].fd, arg=kind.flag,
                          detail=f"{kind.value}:[{joined[kind].inode}]"))
    pid_by_fork = NamespaceKind.PID in joined
    if NamespaceKind.TIME in joined:
        plan.timens_fd = joined[NamespaceKind.TIME].fd

    uid, gid, groups, home = resolve_user(cfg.user_root or cfg.rootfs, cfg.user)
    for g in cfg.group_add:  # docker's --group-add: numbers, or names in /etc/group
        gi = int(g) if g.isdigit() else resolve_user(cfg.user_root or cfg.rootfs, ("0", g))[1]
        if gi != gid and gi not in groups:
            groups = groups + (gi,)
    plan.uid, plan.gid = uid, gid
    if isinstance(cfg.user_namespace, UserMapping) and NamespaceKind.USER in new:
        from nsprim.rootless import unmapped_user

        err = unmapped_user(cfg.user_namespace, uid, gid)
        if err is not None:
            raise err
    m = cfg.user_namespace
    if NamespaceKind.USER in new and isinstance(m, UserMapping) and m.setgroups_denied \
            and not parent_maps:
        # rootless single-id mapping: the child maps its own id, as bwrap
        # does -- no round trip to the parent, and it may share our memory
        for name, text in (("setgroups", "deny"), ("uid_map", m.uid_map()),
                           ("gid_map", m.gid_map())):
            ops.append(Op(lib.NSP_OP_WRITE_FILE, "userns_map", src=f"/proc/self/{name}",
                          data=text, detail=f"/proc/self/{name}"))
    elif NamespaceKind.USER in new:
        plan.sync = True
        ops.append(Op(lib.NSP_OP_SYNC, "sync", detail="id maps"))
        # become the container's root so that files we create are mapped
        # (rootless keep-id without subordinate ids: the user, the one id mapped)
        su, sg = _setup_ids(cfg)
        ops.append(Op(lib.NSP_OP_SETID, "setid", uid=su, gid=sg, detail=f"uid={su} gid={sg}"))
    ops.extend(_tuning(cfg))
    if cfg.rootfs is not None:
        ops.extend(_mounts(cfg, new, joined[NamespaceKind.PID].fd if pid_by_fork else -1,
                           overlay, (uid, gid)))
    if cfg.tty:
        # a terminal of the container's own /dev/pts (its root and mounts are in place)
        ops.append(Op(lib.NSP_OP_PTY, "terminal", detail="/dev/ptmx"))
    if cfg.hostname is not None:
        ops.append(Op(lib.NSP_OP_HOSTNAME, "sethostname", src=cfg.hostname, detail=cfg.hostname))
    if cfg.domainname is not None:
        ops.append(Op(lib.NSP_OP_DOMAINNAME, "setdomainname", src=cfg.domainname,
                      detail=cfg.domainname))
    if NamespaceKind.NET in new:
        ops.append(Op(lib.NSP_OP_LOOPBACK_UP, "loopback_up", detail="lo"))
    # always a session of its own, as runc: the caller's terminal (inherited
    # stdio) is not the container's controlling terminal, so nothing in it
    # can push input into the caller's shell (TIOCSTI) or be stopped by it
    ops.append(Op(lib.NSP_OP_SETSID, "setsid"))
    if cfg.die_with_parent:
        # SIGKILL when the thread that started us exits (prctl PR_SET_PDEATHSIG)
        ops.append(Op(lib.NSP_OP_PDEATHSIG, "pdeathsig", arg=int(signal.SIGKILL)))
    # a session keyring of its own: no key of the host's session is reachable
    ops.append(Op(lib.NSP_OP_SESSION_KEYRING, "session_keyring"))
    seccomp_op = None
    if cfg.seccomp is not None:
        prog = compile_bpf(cfg.seccomp, cfg.capabilities)
        seccomp_op = Op(lib.NSP_OP_SECCOMP, "seccomp", blob=prog, arg=len(prog) // 8,
                        detail=f"profile={cfg.seccomp.name}")
        if not cfg.no_new_privileges:
            # without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: install it
            # while we still have it; what follows (capability and id
            # changes, fds, chdir, exec) is allowed by docker's profile
            ops.append(seccomp_op)
    caps = cap_mask(cfg.capabilities)
    caps_detail = _caps_detail(cfg.capabilities)
    ops.append(Op(lib.NSP_OP_CAP_BOUNDING, "capabilities_bounding", caps=caps,
                  detail=caps_detail))
    if cfg.groups_only:
        groups = cfg.extra_groups
    else:
        groups += tuple(g for g in cfg.extra_groups if g not in groups)
    if _setgroups_denied(cfg, new):
        groups = ()  # bwrap's rule: no supplementary group can be mapped there
    else:
        ops.append(Op(lib.NSP_OP_SETGROUPS, "setgroups", ids=groups,
                      detail="groups=" + ",".join(map(str, groups))))
    ops.append(Op(lib.NSP_OP_SETID, "setid", uid=uid, gid=gid, detail=f"uid={uid} gid={gid}"))
    ops.append(Op(lib.NSP_OP_CAPS, "capabilities", caps=caps, detail=caps_detail))
    if cfg.no_new_privileges:
        ops.append(Op(lib.NSP_OP_NO_NEW_PRIVS, "no_new_privs"))
    if cfg.wait_start_fd >= 0:
        # OCI create: set up, then wait for `start` (the fds are closed after)
        ops.append(Op(lib.NSP_OP_WAIT_START, "wait_start", fd=cfg.wait_start_fd,
                      detail="exec fifo"))
    fds = tuple(stdio) + cfg.pass_fds
    # fds closes everything else: the sync socket becomes fd len(fds)
    ops.append(Op(lib.NSP_OP_FDS, "fds", ids=fds, detail="fds=" + ",".join(map(str, fds))))
    if cfg.tty:
        ops.append(Op(lib.NSP_OP_CTTY, "controlling_terminal", detail="fd 0"))
    cwd = cfg.cwd or ("/" if cfg.rootfs is not None else None)
    if cwd is not None:
        ops.append(Op(lib.NSP_OP_CHDIR, "chdir", dst=cwd, detail=cwd))
    if seccomp_op is not None and cfg.no_new_privileges:
        ops.append(seccomp_op)  # the last step before exec

    env: dict[str, str] = {}
    env["PATH"] = DEFAULT_PATH
    if cfg.hostname is not None:
        env["HOSTNAME"] = cfg.hostname
    env["HOME"] = home
    if cfg.tty:
        env["TERM"] = "xterm"
    for e in cfg.env:
        key, _, val = e.partition("=")
        env[key] = val
    plan.env = tuple(f"{k}={v}" for k, v in env.items())
    # the command is exec'd by the sealed helper (nsprim.exe, csrc/init.c),
    # which also is PID 1 for --init: argv = [name, mode, sync fd, PATH, command...]
    plan.exec_fd = helper_fd()
    plan.sync = True
    # mode "i": fork the command and stay its parent (PID 1 for --init, or
    # the reaper outside a joined pid namespace); "x": exec it
    fork = cfg.init or pid_by_fork
    helper_argv = ("nsprim-init", "i" if fork else "x", str(len(fds)), env["PATH"],
                   *cfg.argv)
    ops.append(Op(lib.NSP_OP_EXEC, "exec", argv=helper_argv, env=plan.env,
                  detail=cfg.argv[0]))
    return plan


# C copies of the strings plans use again and again ("/dev/null", "tmpfs", ...);
# read-only for the child, so sharing them between plans is safe
_cstrings: dict[str, Any] = {}


def compile_plan(ops: list[Op]) -> tuple[Any, list[Any]]:
    """Lay `ops` out as a ``struct nsp_op[]``; the list returned holds every
    buffer the array points to and must outlive the spawn."""
    arr = ffi.new("struct nsp_op[]", len(ops))
    keep: list[Any] = [arr]

    def s(v: str | None) -> Any:
        if v is None:
            return ffi.NULL
        b = _cstrings.get(v)
        if b is None:
            b = ffi.new("char[]", os.fsencode(v))
            if len(_cstrings) > 4096:
                _cstrings.clear()
            _cstrings[v] = b
        keep.append(b)
        return b

    def strv(items: tuple[str, ...]) -> Any:
        bufs = [ffi.new("char[]", os.fsencode(x)) for x in items]
        keep.extend(bufs)
        v = ffi.new("char *[]", bufs + [ffi.NULL])
        keep.append(v)
        return v

    for i, op in enumerate(ops):
        # the array is zero-filled: set only what is not zero
        c = arr[i]
        c.kind = op.kind
        if op.flags:
            c.flags = op.flags
        if op.arg:
            c.arg = op.arg
        c.fd = op.fd
        if op.mflags:
            c.mflags = op.mflags
        if op.caps:
            c.caps = op.caps
        if op.uid:
            c.uid = op.uid
        if op.gid:
            c.gid = op.gid
        if op.ids:
            ids = ffi.new("unsigned int[]", list(op.ids))
            keep.append(ids)
            c.ids = ids
            c.nids = len(op.ids)
        if op.src is not None:
            c.src = s(op.src)
        if op.dst is not None:
            c.dst = s(op.dst)
        if op.fstype is not None:
            c.fstype = s(op.fstype)
        if op.data is not None:
            c.data = s(op.data)
        elif op.blob is not None:
            buf = ffi.from_buffer(op.blob)
            keep.append(buf)
            c.data = ffi.cast("const char *", buf)
        if op.kind == lib.NSP_OP_EXEC:
            c.argv = strv(op.argv)
            c.envp = strv(op.env)
    return arr, keep
