"""Rootless nsprim: what changes when the caller is not root.

Every entry point (``run``, ``Container``, the CLI) asks :func:`is_rootless`;
when it is true and no user namespace is given or joined, the container gets
a new user namespace of its own, mapped by :func:`mapping`:

- **full** (as podman): ``newuidmap``/``newgidmap`` (Debian ``uidmap``) and a
  range of the user's in ``/etc/subuid`` and ``/etc/subgid``: container id 0
  is the user, ids 1..N are the subordinate range (N <= 65536);
- **single** (as bubblewrap): without them, one id -- container root is the
  user -- written by ourselves after ``setgroups`` is set to ``deny`` (the
  kernel's condition for an unprivileged gid_map);
- **keep-id** (podman's ``--userns keep-id``): the user keeps its own uid and
  gid inside; with subordinate ids the others are mapped around it.

What the kernel cannot give without root is refused before anything is
touched, in one line that says what to install or configure
(:class:`RootlessError`).
"""

from __future__ import annotations

import os

from nsprim._record import record
from nsprim.errors import ConfigError

__all__ = ["RootlessError", "UserMapping", "is_rootless", "userns_problem", "subid_range",
           "mapping", "MODES", "data_home", "runtime_dir", "SUBID_SIZE", "user_pids",
           "kill_user_processes"]

#: the size of a full mapping's subordinate part (podman's default)
SUBID_SIZE = 65536
#: the modes of --userns (and Container(user_namespace="...")) for a rootless caller
MODES = ("auto", "full", "single", "keep-id")

_SUBID_MAX = 1 << 20  # /etc/subuid larger than this is not read


class RootlessError(ConfigError):
    """What a rootless container needs and this host or user does not have."""


def is_rootless() -> bool:
    """True when this process is not root: nsprim then runs rootless."""
    return os.geteuid() != 0


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or "x")
    except (OSError, ValueError):
        return None


def userns_problem() -> str | None:
    """Why an unprivileged user namespace cannot be made here, or None."""
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return ("unprivileged user namespaces are off (user.max_user_namespaces = 0): "
                "as root, run `sysctl -w user.max_user_namespaces=15000`")
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return ("unprivileged user namespaces are off (kernel.unprivileged_userns_clone = 0): "
                "as root, run `sysctl -w kernel.unprivileged_userns_clone=1`")
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        return ("AppArmor restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns = 1): as root, run "
                "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or give "
                "python an AppArmor profile with `userns,`")
    return None


def _user_name(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def subid_range(path: str, uid: int | None = None) -> tuple[int, int] | None:
    """(first id, count) of the first range of `uid` (default: ours) in
    `path` (/etc/subuid or /etc/subgid), matched by name or uid; None if
    there is none.  A malformed line is skipped, as shadow's tools do."""
    uid = os.getuid() if uid is None else uid
    keys = {str(uid)}
    name = _user_name(uid)
    if name:
        keys.add(name)
    try:
        with open(path, "rb") as f:
            data = f.read(_SUBID_MAX + 1)
    except OSError:
        return None
    if len(data) > _SUBID_MAX:
        return None
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in keys:
            continue
        first, count = parts[1], parts[2]
        if not (first.isascii() and first.isdigit() and count.isascii() and count.isdigit()):
            continue
        if int(count) > 0 and int(first) + int(count) <= 2**32 - 1:
            return int(first), int(count)
    return None


Extent = tuple[int, int, int]  # (first id inside, first id on the host, count)


@record(frozen=True)
class UserMapping:
    """A rootless user namespace's id maps (several extents, unlike IdMap)
    and how they are written: by newuidmap/newgidmap (`helper`), or by
    ourselves after ``setgroups`` is denied."""

    uids: tuple[Extent, ...]
    gids: tuple[Extent, ...]
    helper: bool = False
    mode: str = "single"
    #: the uid and gid the container's setup runs as (its root when mapped)
    setup_uid: int = 0
    setup_gid: int = 0

    @property
    def setgroups_denied(self) -> bool:
        return not self.helper

    def uid_map(self) -> str:
        return "".join(f"{a} {b} {n}\n" for a, b, n in self.uids)

    def gid_map(self) -> str:
        return "".join(f"{a} {b} {n}\n" for a, b, n in self.gids)

    @staticmethod
    def _to_host(extents: tuple[Extent, ...], i: int) -> int | None:
        for inside, host, n in extents:
            if inside <= i < inside + n:
                return host + i - inside
        return None

    def to_host_uid(self, uid: int) -> int | None:
        return self._to_host(self.uids, uid)

    def to_host_gid(self, gid: int) -> int | None:
        return self._to_host(self.gids, gid)

    def describe(self) -> str:
        """One line: which mapping, for messages and `inspect`."""
        return f"{self.mode} ({self.uid_map().strip().replace(chr(10), ', ')})"

    def write(self, pid: int) -> None:
        """Write the maps of the user namespace of `pid` (waiting in its
        handshake)."""
        import subprocess

        if self.helper:
            for tool, extents in (("newuidmap", self.uids), ("newgidmap", self.gids)):
                args = [tool, str(pid)] + [str(v) for e in extents for v in e]
                r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=30)
                if r.returncode != 0:
                    why = r.stderr.decode(errors="replace").strip().splitlines()
                    raise RootlessError(f"{tool} {pid} failed: "
                                        f"{why[-1] if why else 'exit ' + str(r.returncode)}")
            return
        for name, text in (("setgroups", "deny"), ("uid_map", self.uid_map()),
                           ("gid_map", self.gid_map())):
            path = f"/proc/{pid}/{name}"
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            except OSError as e:
                raise OSError(e.errno, f"writing {name} failed: {e.strerror}", path) from e
            finally:
                os.close(fd)


def _howto_subids(user: str) -> str:
    return (f"as root, run `usermod --add-subuids 100000-165535 --add-subgids "
            f"100000-165535 {user}`")


def _full_parts() -> tuple[tuple[int, int], tuple[int, int]] | str:
    """The user's subordinate uid and gid ranges, or why there are none."""
    import shutil

    uid = os.getuid()
    user = _user_name(uid) or str(uid)
    missing = [t for t in ("newuidmap", "newgidmap") if shutil.which(t) is None]
    if missing:
        return (f"{' and '.join(missing)} not found: install them "
                "(`apt-get install uidmap`) for a full id mapping")
    su = subid_range("/etc/subuid", uid)
    sg = subid_range("/etc/subgid", uid)
    if su is None or sg is None:
        which = "/etc/subuid" if su is None else "/etc/subgid"
        return f"no range for user {user} in {which}: {_howto_subids(user)}"
    return su, sg


def mapping(mode: str = "auto") -> UserMapping:
    """The user namespace mapping for this (unprivileged) process.

    ``auto``: full if newuidmap and subordinate ids are there, else single;
    ``full``: full or a RootlessError saying what is missing; ``single``: the
    user alone; ``keep-id``: the user keeps its ids inside."""
    check_mode(mode)
    problem = userns_problem()
    if problem is not None:
        raise RootlessError(problem)
    uid, gid = os.getuid(), os.getgid()
    parts = None if mode == "single" else _full_parts()
    if isinstance(parts, str):
        if mode == "full":
            raise RootlessError(parts)
        parts = None
    if mode == "keep-id":
        if parts is None:
            return UserMapping(((uid, uid, 1),), ((gid, gid, 1),), helper=False,
                               mode="keep-id", setup_uid=uid, setup_gid=gid)
        (su, sun), (sg, sgn) = parts
        return UserMapping(_around(uid, su, min(sun, SUBID_SIZE)),
                           _around(gid, sg, min(sgn, SUBID_SIZE)), helper=True,
                           mode="keep-id")
    if parts is None:
        return UserMapping(((0, uid, 1),), ((0, gid, 1),), helper=False, mode="single")
    (su, sun), (sg, sgn) = parts
    return UserMapping(((0, uid, 1), (1, su, min(sun, SUBID_SIZE))),
                       ((0, gid, 1), (1, sg, min(sgn, SUBID_SIZE))), helper=True, mode="full")


def _around(me: int, sub: int, n: int) -> tuple[Extent, ...]:
    """keep-id's extents: `me` is itself; 0.. the subordinate ids, skipping `me`."""
    out: list[Extent] = []
    below = min(me, n)
    if below:
        out.append((0, sub, below))
    out.append((me, me, 1))
    if n > below:
        out.append((me + 1, sub + below, n - below))
    return tuple(out)


def unmapped_user(m: UserMapping, uid: int, gid: int) -> RootlessError | None:
    """The error for a container user that `m` does not map, else None."""
    bad = []
    if m.to_host_uid(uid) is None:
        bad.append(f"uid {uid}")
    if m.to_host_gid(gid) is None:
        bad.append(f"gid {gid}")
    if not bad:
        return None
    me = _user_name(os.getuid()) or str(os.getuid())
    why = _full_parts()
    hint = why if isinstance(why, str) else "use --userns auto or full"
    return RootlessError(f"{' and '.join(bad)} of the container's user is not mapped in its "
                         f"user namespace ({m.describe()} for {me}): {hint}")


# ------------------------------------------------------------------ state

def data_home() -> str:
    """$XDG_DATA_HOME, else ~/.local/share (of the real user)."""
    d = os.environ.get("XDG_DATA_HOME")
    if d and os.path.isabs(d):
        return d
    home = os.environ.get("HOME")
    if not home or not os.path.isabs(home):
        import pwd

        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            raise RootlessError(f"no home directory for uid {os.getuid()}: set "
                                "XDG_DATA_HOME or NSPRIM_ROOT") from None
    return os.path.join(home, ".local", "share")


def runtime_dir() -> str | None:
    """$XDG_RUNTIME_DIR if it is set and ours (mode 0700), else None."""
    d = os.environ.get("XDG_RUNTIME_DIR")
    if not d or not os.path.isabs(d):
        return None
    try:
        st = os.stat(d)
    except OSError:
        return None
    if st.st_uid != os.getuid():
        raise RootlessError(f"XDG_RUNTIME_DIR {d} is owned by uid {st.st_uid}, not by you "
                            f"({os.getuid()})")
    return d


def check_owned(path: str) -> None:
    """Refuse a state directory that another user owns (it could read or
    plant our containers' files)."""
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        raise RootlessError(f"nsprim state directory {path} is owned by uid {st.st_uid}, "
                            f"not by you ({os.geteuid()}): refusing to use it")


def check_mode(mode: str) -> str:
    """A --userns mode, or the ConfigError naming it.  ``host`` (docker's:
    no user namespace of the container's own) is root's only."""
    if mode == "host" and os.geteuid() == 0:
        return mode
    if mode == "host":
        raise RootlessError("--userns host: without root every container needs a user "
                            "namespace of its own; use auto, full, single or keep-id")
    if mode not in MODES:
        raise ConfigError(f"invalid --userns {mode!r}: expected one of {', '.join(MODES)}")
    if os.geteuid() == 0:
        raise ConfigError(f"--userns {mode} is for rootless use; as root, give "
                          "--userns-map HOSTUID[:SIZE]")
    return mode


# ------------------------------------------------------------------ cgroups
#
# The kernel's delegation rules (Documentation/admin-guide/cgroup-v2.rst,
# "Delegation"): a user may create cgroups under a directory it owns, write
# the limits of those, and move a process between two cgroups only when it
# may write the cgroup.procs of their common ancestor.  So a rootless
# container's cgroup can be made only under a subtree that the user owns
# *and* that the calling process already lives in: systemd's
# user@UID.service (``systemd-run --user --scope``), or the subtree
# ``nsprim system delegate USER`` makes (its ``session`` leaf holds the
# user's processes).

#: where `nsprim system delegate USER` puts USER's subtree (under the v2 mount)
DELEGATE_DIR = "nsprim.delegate"
#: the leaf of a delegated subtree that holds the user's own processes
DELEGATE_SESSION = "session"
#: the controllers `nsprim system delegate` enables for the user
DELEGATE_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")


def _own_cgroup() -> str | None:
    """This process's cgroup v2 path (relative to the mount), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _owned(d: str, uid: int) -> bool:
    try:
        return (os.stat(d).st_uid == uid
                and os.stat(os.path.join(d, "cgroup.procs")).st_uid == uid)
    except OSError:
        return False


def delegated_cgroup() -> str | None:
    """The cgroup v2 subtree delegated to this (unprivileged) process: the
    topmost ancestor of its own cgroup that it owns (the directory and its
    cgroup.procs), so the common ancestor of where it is and where its
    containers go is writable; None if its cgroup is not owned."""
    from nsprim.cgroup import host_layout

    mnt = host_layout().v2
    rel = _own_cgroup()
    if mnt is None or rel is None:
        return None
    uid = os.geteuid()
    best = None
    d = os.path.normpath(mnt + "/" + rel.lstrip("/"))
    while d.startswith(mnt + "/") and _owned(d, uid):
        best = d
        d = os.path.dirname(d)
    return best


def delegate_path(user: str, mnt: str) -> str:
    return os.path.join(mnt, DELEGATE_DIR, user)


def limits_problem(flags: list[str]) -> str | None:
    """Why resource limits (`flags`, as the user gave them) cannot be set
    without root here, or None (a delegated cgroup v2 subtree is there)."""
    if not flags:
        return None
    from nsprim.cgroup import host_layout

    lay = host_layout()
    what = ", ".join(flags)
    v1 = sorted(c for c in ("memory", "cpu", "pids") if c in lay.v1
                and c not in lay.v2_controllers)
    if v1:
        return (f"{what}: resource limits need a cgroup v2 subtree delegated to you, and "
                f"this host's {', '.join(v1)} controllers are cgroup v1 (root only): boot "
                "with systemd.unified_cgroup_hierarchy=1 and have root delegate a subtree "
                "(`nsprim system delegate USER`, or systemd's user@UID.service)")
    if lay.v2 is None:
        return f"{what}: resource limits without root need cgroup v2, which is not mounted"
    if delegated_cgroup() is not None:
        return None
    me = _user_name(os.geteuid()) or str(os.geteuid())
    d = delegate_path(me, lay.v2)
    if _owned(d, os.geteuid()):
        return (f"{what}: the cgroup subtree {d} is delegated to you, but this process is "
                f"in cgroup {_own_cgroup()}, outside it (the kernel lets you move processes "
                f"only within a subtree you own): start your session in it (as root, "
                f"`echo PID > {d}/{DELEGATE_SESSION}/cgroup.procs`)")
    return (f"{what}: resource limits without root need a cgroup v2 subtree delegated to "
            f"you, and this process's cgroup ({_own_cgroup()}) is not yours: as root, run "
            f"`nsprim system delegate {me}` and start your session in its "
            f"{DELEGATE_SESSION} cgroup, or use systemd (`systemd-run --user --scope "
            f"-p Delegate=yes nsprim ...`)")


def check_limits(flags: list[str]) -> None:
    why = limits_problem(flags)
    if why is not None:
        raise RootlessError(why)


def delegate(user: str, remove: bool = False) -> str:
    """As root: make (or remove) USER's delegated cgroup v2 subtree
    ``<v2 mount>/nsprim.delegate/USER``: the controllers enabled down to it
    and in it, the directory and its cgroup.procs, cgroup.subtree_control
    and cgroup.threads owned by the user (the files the kernel's delegation
    model gives a delegatee), and a ``session`` leaf for the user's
    processes.  Returns the path.  Refused in one line on a host whose limit
    controllers are cgroup v1."""
    import pwd

    from nsprim.cgroup import host_layout

    if os.geteuid() != 0:
        raise RootlessError("cgroup delegation: only root can delegate a cgroup subtree")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"cgroup delegation: no such user {user!r}") from None
    if pw.pw_uid == 0:
        raise ConfigError("cgroup delegation: root needs no delegation")
    lay = host_layout()
    v1 = sorted(c for c in ("memory", "cpu", "pids") if c in lay.v1)
    if lay.v2 is None or v1 or lay.kind != "v2":
        raise RootlessError(f"cgroup delegation: this host's cgroups are {lay.kind} "
                            f"({', '.join(v1) or 'no'} controllers on v1): delegation needs "
                            "a pure cgroup v2 host (boot with "
                            "systemd.unified_cgroup_hierarchy=1)")
    base = os.path.join(lay.v2, DELEGATE_DIR)
    d = delegate_path(pw.pw_name, lay.v2)
    if remove:
        _undelegate(d, base)
        return d
    ctrls = [c for c in DELEGATE_CONTROLLERS if c in lay.v2_controllers]
    enable = " ".join("+" + c for c in ctrls).encode()
    os.makedirs(d, 0o755, exist_ok=True)
    for parent in (lay.v2, base, d):
        _cg_write(os.path.join(parent, "cgroup.subtree_control"), enable)
    session = os.path.join(d, DELEGATE_SESSION)
    os.makedirs(session, 0o755, exist_ok=True)
    for path in (d, session):
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(path, name), pw.pw_uid, pw.pw_gid)
    return d


def _cg_write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _undelegate(d: str, base: str) -> None:
    """Kill what is left in the subtree `d`, remove it (deepest first) and
    the nsprim.delegate parent once it is empty."""
    import time

    if not os.path.isdir(d):
        raise FileNotFoundError(2, "cgroup delegation: no delegated subtree", d)
    if os.path.exists(os.path.join(d, "cgroup.kill")):
        _cg_write(os.path.join(d, "cgroup.kill"), b"1")
    dirs = [top for top, _dirs, _files in os.walk(d)]
    deadline = time.monotonic() + 10
    for path in sorted(dirs, key=len, reverse=True):
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != 16 or time.monotonic() > deadline:  # EBUSY: tasks leaving
                    raise
                time.sleep(0.02)
    try:
        os.rmdir(base)
    except OSError:
        pass


# ------------------------------------------------------------------ network

def usermode_network_tool() -> str | None:
    """The user-mode network helper for the default network without root:
    pasta (Debian ``passt``); None when it is not installed."""
    import shutil

    return shutil.which("pasta")


def _free_port(proto: str, host_ip: str) -> int:
    import socket

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host_ip or "0.0.0.0", 0))
        return int(s.getsockname()[1])


def stop_pasta(pidfile: str) -> None:
    """End the pasta whose pid `pidfile` holds (it keeps the container's
    network namespace alive, so it never leaves by itself), and remove the
    file.  The process is checked to be that pasta (its command line names
    the file) before it is signalled: a pid is not trusted on its own."""
    import signal

    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
        if os.path.basename(cmd[0]) == b"pasta" and os.fsencode(pidfile) in cmd:
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    try:
        os.unlink(pidfile)
    except OSError:
        pass


@record
class UserNet:
    """pasta attached to a container's network namespace: outbound traffic
    through the host's sockets, published ports forwarded from the host."""

    pidfile: str
    ports: list[dict[str, object]]

    def close(self) -> None:
        stop_pasta(self.pidfile)


def start_pasta(container_pid: int, publish: list[tuple[int, int, str, str]],
                pidfile: str) -> UserNet:
    """Attach pasta to the network (and user) namespace of `container_pid`,
    configure its interface like the host's, forward `publish`
    ((container port, host port or 0, proto, host ip)).  Returns once the
    namespace is configured."""
    import subprocess

    tool = usermode_network_tool()
    if tool is None:
        raise RootlessError("the default network without root needs pasta: install it "
                            "(`apt-get install passt`), or use --network none or host")
    args = [tool, "--config-net", "--quiet", "--pid", pidfile]
    fwd: dict[str, list[str]] = {"tcp": [], "udp": []}
    ports: list[dict[str, object]] = []
    for cport, hport, proto, hip in publish:
        hport = hport or _free_port(proto, hip)
        fwd[proto].append(f"{hip + '/' if hip else ''}{hport}:{cport}")
        ports.append({"proto": proto, "host_ip": hip or "0.0.0.0", "host_port": hport,
                      "container_port": cport})
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        for spec in fwd[proto] or ["none"]:
            args += [flag, spec]
    args += ["-T", "none", "-U", "none", str(container_pid)]
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    if r.returncode != 0:
        why = r.stdout.decode(errors="replace").strip().splitlines()
        raise RootlessError(f"pasta failed (exit {r.returncode}): "
                            f"{why[-1] if why else 'no message'}")
    return UserNet(pidfile, ports)


# ------------------------------------------------------ a command as root of a user namespace

_IN_USERNS: list[bool] = []


def in_user_namespace() -> bool:
    """True when this process is in a user namespace other than the host's
    (its uid_map is not the identity of every id): root here is then not
    the host's root (no trusted.* xattrs, no device nodes, overlays need
    ``userxattr``).  Cached."""
    if not _IN_USERNS:
        try:
            with open("/proc/self/uid_map") as f:
                rows = f.read().split()
        except OSError:
            rows = ["0", "0", "4294967295"]
        _IN_USERNS.append(rows != ["0", "0", "4294967295"])
    return _IN_USERNS[0]


#: unshare a user, mount and network namespace, tell the parent (fd argv[1]),
#: wait for the id maps (fd argv[2]), then exec the command (as root of the
#: namespace)
_UNSHARE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x20000 | 0x40000000) != 0:
    sys.exit("nsprim: unshare(user, mount, net): " + os.strerror(ctypes.get_errno()))
ready, go = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b"r")
if os.read(go, 1) != b"g":
    sys.exit(125)
os.close(ready)
os.close(go)
if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:
    sys.exit("nsprim: mount --make-rprivate /: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[3], sys.argv[3:])
"""


def run_as_userns_root(argv: list[str], *, network: bool = True) -> int:
    """Run `argv` (an nsprim command) as root of a user namespace mapped like
    the containers' (full mapping: container ids are the host's subordinate
    ids), with a mount namespace and a network namespace of its own, which
    pasta connects to the host's network (`network`).  Its state root and
    run dir stay this user's (NSPRIM_ROOT, NSPRIM_RUN).  This is how
    rootless `build` works: its RUN steps, overlays and layers are made as
    root of that namespace, so files are owned by the mapped ids as a
    rootless pull makes them.  Returns its exit status."""
    import subprocess
    import sys

    from nsprim.state import _root_path, _run_path

    m = mapping("auto")
    if not m.helper:
        why = _full_parts()
        raise RootlessError(f"without root, this needs a full id mapping: "
                            f"{why if isinstance(why, str) else 'newuidmap failed'}")
    root, run = os.path.abspath(_root_path()), os.path.abspath(_run_path())
    os.makedirs(run, 0o700, exist_ok=True)
    env = dict(os.environ, NSPRIM_ROOT=root, NSPRIM_RUN=run)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    p = subprocess.Popen([sys.executable, "-I", "-c", _UNSHARE, str(w1), str(r2), *argv],
                         env=env, pass_fds=(w1, r2), close_fds=True)
    os.close(w1)
    os.close(r2)
    net: UserNet | None = None
    try:
        if os.read(r1, 1) != b"r":
            p.wait()
            return p.returncode or 125
        m.write(p.pid)
        if network:
            net = start_pasta(p.pid, [], os.path.join(run, f"build-pasta-{p.pid}.pid"))
        os.write(w2, b"g")
        os.close(w2)
        w2 = -1
        return p.wait()
    except BaseException:
        if p.poll() is None:
            p.kill()
            p.wait()
        raise
    finally:
        if w2 >= 0:
            os.close(w2)
        os.close(r1)
        if net is not None:
            net.close()


# ------------------------------------------------------------------ files in the user namespace

#: run by a fresh interpreter that makes a user namespace of its own, waits
#: for its id maps, then works as root of that namespace: chown (the owners
#: rootless extraction recorded) or rm (trees whose files belong to
#: subordinate ids, or that the kernel made unreadable, as overlay's work dir)
_HELPER = r"""
import ctypes, os, shutil, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:
    sys.exit("unshare(CLONE_NEWUSER): " + os.strerror(ctypes.get_errno()))


def copy_into(src, dst):
    # src, dst: directory fds; owners, modes, times kept; devices skipped
    for e in os.scandir(src):
        st = e.stat(follow_symlinks=False)
        n = e.name
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(n, 0o700, dir_fd=dst)
            a = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src)
            b = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dst)
            try:
                copy_into(a, b)
            finally:
                os.close(a)
                os.close(b)
        elif stat.S_ISREG(st.st_mode):
            a = os.open(n, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src)
            b = os.open(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                        dir_fd=dst)
            try:
                while True:
                    chunk = os.read(a, 1 << 20)
                    if not chunk:
                        break
                    os.write(b, chunk)
            finally:
                os.close(a)
                os.close(b)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(n, dir_fd=src), n, dir_fd=dst)
        else:
            continue
        try:
            os.chown(n, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(n, stat.S_IMODE(st.st_mode), dir_fd=dst)
            os.utime(n, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst,
                     follow_symlinks=False)
        except OSError:
            pass


def populate(volume, lowers, scratch, target):
    # the image's layers as a read-only overlay in a mount namespace of our
    # own; `target` resolved inside it (chroot: no symlink leads out)
    if libc.unshare(0x20000) != 0:
        sys.exit("unshare(CLONE_NEWNS): " + os.strerror(ctypes.get_errno()))
    if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:
        sys.exit("mount --make-rprivate /: " + os.strerror(ctypes.get_errno()))
    data = ("lowerdir=" + lowers + ":" + scratch + "/empty,userxattr").encode()
    if libc.mount(b"overlay", (scratch + "/merged").encode(), b"overlay", 1, data) != 0:
        sys.exit("mount overlay: " + os.strerror(ctypes.get_errno()))
    vfd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    os.chroot(scratch + "/merged")
    os.chdir("/")
    try:
        sfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return
    st = os.fstat(sfd)
    copy_into(sfd, vfd)
    os.fchown(vfd, st.st_uid, st.st_gid)  # the volume takes the directory's owner too
    os.fchmod(vfd, stat.S_IMODE(st.st_mode))


sys.stdout.write("ready\n")
sys.stdout.flush()
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
mode, path, key = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "rm":
    shutil.rmtree(path, ignore_errors=True)
    sys.exit(0)
if mode == "populate":
    populate(path, sys.argv[4], sys.argv[5], sys.argv[6])
    sys.exit(0)
for top, dirs, files in os.walk(path):
    for name in dirs + files:
        p = os.path.join(top, name)
        try:
            uid, gid = (int(x) for x in os.getxattr(p, key, follow_symlinks=False).split(b":"))
        except (OSError, ValueError):
            continue
        try:
            mode_ = os.lstat(p).st_mode
            os.chown(p, uid, gid, follow_symlinks=False)
            os.chmod(p, mode_ & 0o7777)  # chown clears setuid/setgid: put them back
        except OSError:
            pass  # an id the namespace does not map: the file stays the user's
"""


def in_userns(mode: str, path: str, m: UserMapping | None = None, *extra: str) -> None:
    """Run the helper (`mode` "chown", "rm" or "populate" on `path`) as root
    of a user namespace mapped like the containers' (`m`, default: auto)."""
    import subprocess
    import sys

    from nsprim.images.layer import OWNER_XATTR

    m = m or mapping("auto")
    p = subprocess.Popen([sys.executable, "-I", "-c", _HELPER, mode, path, OWNER_XATTR,
                          *extra],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, close_fds=True)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    try:
        if p.stdout.readline() != b"ready\n":
            p.wait(30)
            raise RootlessError(f"the user namespace helper failed: "
                                f"{p.stderr.read().decode(errors='replace').strip()}")
        m.write(p.pid)
        p.stdin.write(b"go\n")
        p.stdin.close()
        if p.wait(600) != 0:
            raise RootlessError(f"the user namespace helper ({mode} {path}) failed: "
                                f"{p.stderr.read().decode(errors='replace').strip()}")
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            f.close()


def apply_owners(layer: str) -> None:
    """After a rootless extraction with a full mapping: give the files the
    owners their archive recorded, as ids of the user namespace (container
    uid 1000 is the user's subordinate id 999 on the host).  With a single
    id there is nothing to map them to: they stay the user's."""
    m = mapping("auto")
    if m.helper:
        in_userns("chown", layer, m)


def remove_tree(path: str) -> None:
    """What nsprim.state.remove_tree could not remove as the user: files of
    subordinate ids, or directories the kernel made unreadable."""
    import shutil
    import subprocess

    if not os.path.lexists(path):
        return
    # first without a helper: directories of ours the kernel made mode 000
    # (overlay's work/work) only need their mode back
    for top, dirs, _files in os.walk(path):
        for d in dirs:
            try:  # never through a symlink a container left in its layer
                fd = os.open(os.path.join(top, d),
                             os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                try:
                    fd = os.open(os.path.join(top, d),
                                 os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError:
                    continue
            try:
                if os.fstat(fd).st_uid == os.geteuid():
                    os.chmod(f"/proc/self/fd/{fd}", 0o700)
            except OSError:
                pass
            finally:
                os.close(fd)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        try:
            in_userns("rm", path)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass


def populate_volume(volume_data: str, layers: list[str], target: str, scratch: str) -> None:
    """Fill a new volume with what the image (`layers`, lowest first) has at
    `target`, docker's rule, without root: the layers are mounted as a
    read-only overlay in a user and mount namespace of a helper's own (the
    container's overlay is not mounted on the host), `target` is resolved
    inside it, and owners are kept as the user namespace's ids.  `scratch`:
    an empty directory of ours for the helper's mount points."""
    import shutil

    if os.listdir(volume_data):
        return
    for d in ("merged", "empty"):
        os.makedirs(os.path.join(scratch, d), 0o700, exist_ok=True)
    try:
        in_userns("populate", volume_data, None, ":".join(reversed(layers)), scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def user_pids(uid: int) -> list[int]:
    """The processes of host user `uid` (owners of /proc/PID)."""
    pids = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.stat(f"/proc/{e}").st_uid == uid:
                    pids.append(int(e))
            except OSError:
                pass  # gone meanwhile
    return pids


def kill_user_processes(uid: int) -> bool:
    """SIGKILL every process of host user `uid` until none is left (what a
    deleted test or benchmark user leaves: podman's pause process, pasta,
    slirp4netns); whether none is."""
    from nsprim.cgroup import kill_until_gone

    return kill_until_gone(lambda: user_pids(uid), tries=50, pause=0.05)
