"""cgroups: one Cgroup object per container, on cgroup v2, v1 and hybrid hosts.

Layout on the host (every name carries nsprim's, and its state root's id:
``<root id>-<name>``, see ``nsprim.state.root_id``):

- v2 (where a cgroup2 hierarchy is mounted, pure or hybrid):
  ``<cgroup2 mount>/nsprim/<root id>-<name>``; the container is born in it with clone3
  ``CLONE_INTO_CGROUP`` (no cgroup.procs write, no race).  It gives
  membership, cgroup.kill, cgroup.freeze, cpu.stat, and every limit whose
  controller the v2 hierarchy has.
- v1 (limit controllers mounted as v1, as on this project's hybrid machines):
  ``<mount of controller>/nsprim/<root id>-<name>``; the child joins them itself, by
  writing to their cgroup.procs before it runs anything.

The driver is detected per controller ("auto": v2 if the v2 hierarchy has the
controller, else v1), or forced with ``driver="v2"`` / ``driver="v1"``.
The host's own cgroup mounts are never changed: nsprim only creates and
removes its own children.

A Cgroup holds a lock file (under the run dir) while it lives, so that
``Cgroup.collect()`` -- called by the next nsprim command and by the test
suite -- removes only the cgroups whose owner has gone.  It looks only at
its own root's cgroups (those with its root id): the lock files of one run
dir say nothing about another root's, so another root's live containers are
never touched.  The root id is a prefix, not a parent of its own, so that a
container start makes no more cgroup directories than before; the shared
``nsprim`` parent goes with the last child of any root.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import stat as stat_mod
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from nsprim._record import field, record
from nsprim.errors import ConfigError
from nsprim.state import FileLock, root_id, run_dir
from nsprim.units import format_cpuset, parse_cpus, parse_cpuset, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypedDict

    from typing_extensions import Unpack

    class LimitOptions(TypedDict, total=False):
        """The limit keywords of Cgroup.create (those of make_limits)."""

        memory: str | int | None
        memory_swap: str | int | None
        cpus: str | float | None
        cpu_shares: int | None
        cpu_weight: int | None
        cpuset: str | None
        cpuset_mems: str | None
        pids: int | None
        device_read_bps: Iterable[str]
        device_write_bps: Iterable[str]

__all__ = ["Cgroup", "CgroupStats", "Limits", "Layout", "host_layout", "make_limits",
           "PARENT", "leaf_name"]

PARENT = "nsprim"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum
_V1_ALWAYS = ("memory", "pids", "cpu", "cpuacct")  # joined for stats and OOM reports


# ----------------------------------------------------------------- host layout

@record(frozen=True)
class Layout:
    """Where the host's cgroup hierarchies are mounted."""

    v2: str | None
    v2_controllers: frozenset[str]
    v1: dict[str, str] = field(default_factory=dict)  # controller -> mount point

    @property
    def kind(self) -> str:
        if self.v2 and not self.v1:
            return "v2"
        if self.v2:
            return "hybrid"
        return "v1"


@lru_cache(maxsize=1)
def host_layout() -> Layout:
    """Read the cgroup mounts of this mount namespace (cached)."""
    v2: str | None = None
    v1: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, rest = pre.split(), post.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            point, fstype = fields[4], rest[0]
            if fstype == "cgroup2" and v2 is None:
                v2 = point
            elif fstype == "cgroup":
                for opt in rest[2].split(","):
                    if opt in ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio",
                               "freezer", "devices", "hugetlb", "net_cls", "net_prio",
                               "perf_event", "rdma", "misc"):
                        v1.setdefault(opt, point)
    ctrls: frozenset[str] = frozenset()
    if v2 is not None:
        try:
            with open(os.path.join(v2, "cgroup.controllers")) as f:
                ctrls = frozenset(f.read().split())
        except OSError:
            pass
    return Layout(v2, ctrls, v1)


def _layout() -> Layout:
    """The hierarchies this process makes its containers' cgroups in: the
    host's as root; without root only the cgroup v2 subtree delegated to it
    (nsprim.rootless.delegated_cgroup), as if it were the mount, or none."""
    if os.geteuid() == 0:
        return host_layout()
    from nsprim.rootless import delegated_cgroup

    d = delegated_cgroup()
    if d is None:
        return Layout(None, frozenset(), {})
    return Layout(d, frozenset((_read(os.path.join(d, "cgroup.controllers")) or "").split()),
                  {})


# ---------------------------------------------------------------------- limits

@record(frozen=True)
class Limits:
    """Validated resource limits (docker's meanings)."""

    memory: int | None = None           # bytes
    memory_swap: int | None = None      # memory + swap, bytes; -1 unlimited
    cpus: float | None = None
    cpu_period: int = 100_000           # microseconds
    cpu_shares: int | None = None       # v1 shares 2..262144 (docker's --cpu-shares)
    cpu_weight: int | None = None       # v2 weight 1..10000
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids: int | None = None             # None: unlimited
    device_read_bps: tuple[tuple[str, int], ...] = ()
    device_write_bps: tuple[tuple[str, int], ...] = ()
    memory_reservation: int | None = None  # bytes: memory.low (v2), soft limit (v1)
    blkio_weight: int | None = None        # 10..1000: io.weight (v2), blkio.weight (v1)

    def controllers(self) -> set[str]:
        """The controllers these limits need (v2 names; io is blkio on v1)."""
        need = set()
        if self.memory is not None or self.memory_swap is not None or \
                self.memory_reservation is not None:
            need.add("memory")
        if self.cpus is not None or self.cpu_shares is not None or self.cpu_weight is not None:
            need.add("cpu")
        if self.cpuset_cpus is not None or self.cpuset_mems is not None:
            need.add("cpuset")
        if self.pids is not None:
            need.add("pids")
        if self.device_read_bps or self.device_write_bps:
            need.add("io")
        return need

    def optional_controllers(self) -> set[str]:
        """Controllers whose absence only drops a limit (docker warns and
        discards a block I/O weight the kernel cannot apply)."""
        return {"io"} if self.blkio_weight is not None else set()


def _online(path: str) -> frozenset[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return parse_cpuset(text) if text else frozenset()
    except (OSError, ConfigError):
        return frozenset()


def _device(spec: str, what: str) -> tuple[str, int]:
    """``/dev/vda:1mb`` -> ("254:0", 1048576); the device must be a block device."""
    path, sep, rate = spec.rpartition(":")
    if not sep or not path:
        raise ConfigError(f"invalid {what} {spec!r}: expected DEVICE:RATE")
    try:
        st = os.stat(path)
    except OSError:
        raise ConfigError(f"invalid {what} {spec!r}: no device {path!r}") from None
    if not stat_mod.S_ISBLK(st.st_mode):
        raise ConfigError(f"invalid {what} {spec!r}: {path!r} is not a block device")
    bps = parse_size(rate, what)
    if bps <= 0:
        raise ConfigError(f"invalid {what} {spec!r}: rate must be positive")
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", bps


def make_limits(
    *,
    memory: str | int | None = None,
    memory_swap: str | int | None = None,
    cpus: str | float | None = None,
    cpu_shares: int | None = None,
    cpu_weight: int | None = None,
    cpuset: str | None = None,
    cpuset_mems: str | None = None,
    pids: int | None = None,
    device_read_bps: Iterable[str] = (),
    device_write_bps: Iterable[str] = (),
    memory_reservation: str | int | None = None,
    cpu_period: int | None = None,
    cpu_quota: int | None = None,
    blkio_weight: int | None = None,
) -> Limits:
    """Validate docker-style limit values; raises ConfigError naming the bad one."""
    extra = _extra_limits(memory_reservation, cpu_period, cpu_quota, blkio_weight, cpus)
    mem = None if memory is None else parse_size(memory, "memory")
    if mem is not None and mem < _MIN_MEMORY:
        raise ConfigError(f"invalid memory {memory!r}: the minimum is 6m")
    swap: int | None = None
    if memory_swap is not None:
        if memory_swap in (-1, "-1"):
            swap = -1
        else:
            swap = parse_size(memory_swap, "memory-swap")
        if mem is None:
            raise ConfigError("memory-swap needs a memory limit (-m) as well")
        if swap != -1 and swap < mem:
            raise ConfigError(f"invalid memory-swap {memory_swap!r}: must be at least the "
                              f"memory limit ({memory!r}), or -1 for unlimited")
    ncpus = os.cpu_count() or 1
    c = None if cpus is None else parse_cpus(cpus, ncpus)
    if cpu_shares is not None and cpu_weight is not None:
        raise ConfigError("give cpu_shares or cpu_weight, not both")
    if cpu_shares is not None and (isinstance(cpu_shares, bool) or not isinstance(
            cpu_shares, int) or not 2 <= cpu_shares <= 262144):
        raise ConfigError(f"invalid cpu-shares {cpu_shares!r}: from 2 to 262144")
    if cpu_weight is not None and (isinstance(cpu_weight, bool) or not isinstance(
            cpu_weight, int) or not 1 <= cpu_weight <= 10000):
        raise ConfigError(f"invalid cpu-weight {cpu_weight!r}: from 1 to 10000")
    cs = None
    if cpuset is not None:
        online = _online("/sys/devices/system/cpu/online") or frozenset(range(ncpus))
        cs = format_cpuset(parse_cpuset(cpuset, online, "cpuset-cpus"))
    cm = None
    if cpuset_mems is not None:
        nodes = _online("/sys/devices/system/node/online") or frozenset({0})
        cm = format_cpuset(parse_cpuset(cpuset_mems, nodes, "cpuset-mems"))
    p = None
    if pids is not None:
        if isinstance(pids, bool) or not isinstance(pids, int):
            raise ConfigError(f"invalid pids-limit {pids!r}: expected an integer")
        p = pids if pids > 0 else None  # docker: 0 or -1 is unlimited
    if mem is not None and extra.get("memory_reservation") is not None and \
            extra["memory_reservation"] > mem:
        raise ConfigError(f"invalid memory-reservation {memory_reservation!r}: must be "
                          f"smaller than the memory limit ({memory!r})")
    if c is None and "cpus" in extra:
        c = extra.pop("cpus")
    extra.pop("cpus", None)
    return Limits(
        memory=mem, memory_swap=swap, cpus=c, cpu_shares=cpu_shares, cpu_weight=cpu_weight,
        cpuset_cpus=cs, cpuset_mems=cm, pids=p,
        device_read_bps=tuple(_device(s, "device-read-bps") for s in device_read_bps),
        device_write_bps=tuple(_device(s, "device-write-bps") for s in device_write_bps),
        **extra,
    )


def _extra_limits(memory_reservation: str | int | None, cpu_period: int | None,
                  cpu_quota: int | None, blkio_weight: int | None,
                  cpus: str | float | None) -> dict[str, Any]:
    """docker's --memory-reservation, --cpu-period/--cpu-quota (as cpus and a
    period) and --blkio-weight, checked."""
    out: dict[str, Any] = {}
    if memory_reservation is not None:
        out["memory_reservation"] = parse_size(memory_reservation, "memory-reservation")
    for name, v in (("cpu-period", cpu_period), ("cpu-quota", cpu_quota),
                    ("blkio-weight", blkio_weight)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"invalid {name} {v!r}: expected an integer")
    if (cpu_period or cpu_quota) and cpus is not None:
        raise ConfigError("conflicting options: --cpus and --cpu-period/--cpu-quota "
                          "cannot both be set")
    period = 100_000
    if cpu_period is not None and cpu_period != 0:
        if not 1000 <= cpu_period <= 1_000_000:
            raise ConfigError(f"invalid cpu-period {cpu_period!r}: from 1000 to 1000000 "
                              "microseconds")
        period = cpu_period
        out["cpu_period"] = period
    if cpu_quota is not None and cpu_quota not in (0, -1):
        if cpu_quota < 1000:
            raise ConfigError(f"invalid cpu-quota {cpu_quota!r}: at least 1000 microseconds "
                              "(or -1, unlimited)")
        out["cpus"] = cpu_quota / period
    if blkio_weight is not None and blkio_weight != 0:
        if not 10 <= blkio_weight <= 1000:
            raise ConfigError(f"invalid blkio-weight {blkio_weight!r}: from 10 to 1000")
        out["blkio_weight"] = blkio_weight
    return out


def shares_to_weight(shares: int) -> int:
    """docker/runc's conversion of v1 cpu.shares to v2 cpu.weight."""
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    return 2 + ((weight - 1) * 262142) // 9999


# ---------------------------------------------------------------------- stats

@record(frozen=True)
class CgroupStats:
    """A snapshot of a cgroup's accounting (None: not available on this host)."""

    memory_current: int | None
    memory_peak: int | None
    memory_limit: int | None
    cpu_usage_usec: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_usec: int | None
    pids_current: int | None
    pids_limit: int | None
    oom_kills: int
    #: the most processes at once (pids.peak, kernel 6.1+)
    pids_peak: int | None = None
    #: CPU time in user and kernel mode (v2 cpu.stat, else v1 cpuacct.stat)
    cpu_user_usec: int | None = None
    cpu_system_usec: int | None = None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(path: str) -> dict[str, int]:
    text = _read(path) or ""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot open {os.path.basename(path)}: {e.strerror}",
                      path) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, f"writing {value!r} to {os.path.basename(path)} failed: "
                      f"{e.strerror}", path) from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------- Cgroup

def leaf_name(name: str) -> str:
    """The directory name of this root's cgroup `name`: ``<root id>-<name>``."""
    return f"{root_id()}-{name}"


def _lock_path(name: str) -> str:
    return os.path.join(run_dir(), "cgroups", name + ".lock")


class Cgroup:
    """One container's cgroup(s): create, limit, account, kill, freeze, remove.

    Use :meth:`create`; it is a context manager that removes the cgroup (after
    killing what is left in it) on exit.  Removal is idempotent.
    """

    def __init__(self, name: str, v2_path: str | None, v1_paths: dict[str, str],
                 limits: Limits, lock: FileLock, v2_served: frozenset[str]) -> None:
        self.name = name
        self.v2_path = v2_path
        self.v1_paths = v1_paths          # controller -> directory (deduplicated by mount)
        self.limits = limits
        self._lock: FileLock | None = lock
        self._v2_served = v2_served       # controllers whose limits live in v2
        self._fd = -1
        if v2_path is not None:
            self._fd = os.open(v2_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.removed = False
        self._borrowed = False

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, name: str | None = None, *, driver: str = "auto", parent: str = PARENT,
               limits: Limits | None = None, v1_accounting: bool = True,
               **kwargs: Unpack[LimitOptions]) -> Cgroup:
        """Create cgroup `name` under `parent` with limits (``memory="256m"``,
        ``memory_swap``, ``cpus``, ``cpu_shares``, ``cpu_weight``, ``cpuset``,
        ``cpuset_mems``, ``pids``, ``device_read_bps``, ``device_write_bps``,
        or a ready `limits`).  Anything created is removed if a step fails.

        `v1_accounting=False`: on a hybrid host (a v2 hierarchy without the
        memory, pids and cpu controllers, which are v1), make v1 cgroups only
        for the controllers a limit needs, not also for accounting: the
        process is born in its v2 cgroup (clone3 CLONE_INTO_CGROUP) and skips
        the joins of v1 hierarchies, whose first one waits for an RCU grace
        period in the kernel (~10 ms).  Membership, kill, freeze, cpu.stat and
        the device program stay (v2); memory and pids are then counted from
        the processes (nsprim.stats), and :meth:`ensure_v1` makes and joins
        the v1 cgroups when a limit comes later (``update``)."""
        if name is None:
            name = os.urandom(8).hex()
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"invalid cgroup name {name!r}: letters, digits, '_', '.', '-'")
        if not _NAME.match(parent):
            raise ConfigError(f"invalid cgroup parent {parent!r}")
        if driver not in ("auto", "v1", "v2"):
            raise ConfigError(f"invalid cgroup driver {driver!r}: auto, v1 or v2")
        if limits is None:
            limits = make_limits(**kwargs)
        elif kwargs:
            raise ConfigError("give limits or limit keywords, not both")
        lay = _layout()
        need = limits.controllers()

        # which hierarchy serves each controller
        v2_served: set[str] = set()
        v1_needed: set[str] = set()
        always = {"memory", "pids", "cpu"} if v1_accounting or lay.v2 is None else set()
        for ctrl in need | always:
            v1name = "blkio" if ctrl == "io" else ctrl
            if driver != "v1" and lay.v2 and ctrl in lay.v2_controllers:
                v2_served.add(ctrl)
            elif driver != "v2" and v1name in lay.v1:
                v1_needed.add(v1name)
            elif ctrl in need and ctrl not in limits.optional_controllers():
                raise OSError(errno.ENOTSUP, f"cgroup controller {ctrl!r} is not available on "
                              f"this host ({lay.kind} cgroups, driver {driver})")
        if "cpu" in v1_needed and "cpuacct" in lay.v1:
            v1_needed.add("cpuacct")
        if driver == "v1" or lay.v2 is None:
            # no v2 cgroup to attach a device program to: the v1 devices
            # controller holds the rules (nsprim.devices)
            v1_needed.update(c for c in ("freezer", "devices") if c in lay.v1)
        if driver == "v2" and lay.v2 is None:
            raise OSError(errno.ENOTSUP, "no cgroup v2 hierarchy is mounted on this host")

        lock = FileLock.try_acquire(_lock_path(name))
        if lock is None:
            raise FileExistsError(errno.EEXIST, f"cgroup {parent}/{leaf_name(name)} is in use",
                                  name)
        for attempt in range(5):
            try:
                return cls._create(name, parent, driver, limits, lay, v2_served, v1_needed,
                                   lock)
            except FileNotFoundError:
                # a parent was removed by a concurrent last-container cleanup
                if attempt == 4:
                    lock.release(unlink=True)
                    raise
            except BaseException:
                lock.release(unlink=True)
                raise
        raise AssertionError("unreachable")

    @classmethod
    def _create(cls, name: str, parent: str, driver: str, limits: Limits, lay: Layout,
                v2_served: set[str], v1_needed: set[str], lock: FileLock) -> Cgroup:
        created: list[str] = []
        leaf = leaf_name(name)
        try:
            v2_path = None
            if lay.v2 is not None and driver != "v1":
                v2_path = os.path.join(lay.v2, parent, leaf)
                cls._mkdir_v2(lay.v2, parent, v2_served, created)
                cls._mkdir(v2_path, created, leaf)
            v1_paths: dict[str, str] = {}
            by_mount: dict[str, str] = {}
            for ctrl in sorted(v1_needed):
                mnt = lay.v1[ctrl]
                if mnt not in by_mount:
                    base = os.path.join(mnt, parent)
                    if not os.path.isdir(base):
                        cls._mkdir(base, [], "")
                    if ctrl == "cpuset":
                        cls._init_cpuset(mnt, base)
                    path = os.path.join(base, leaf)
                    cls._mkdir(path, created, leaf)
                    if ctrl == "cpuset":
                        cls._init_cpuset(base, path)
                    by_mount[mnt] = path
                v1_paths[ctrl] = by_mount[mnt]
            cg = cls(name, v2_path, v1_paths, limits, lock, frozenset(v2_served))
        except BaseException:
            for d in reversed(created):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise
        try:
            cg.set_limits(limits)
        except BaseException:
            cg._lock = None  # the caller releases it
            cg.remove()
            raise
        return cg

    @classmethod
    def open(cls, name: str, parent: str = PARENT) -> Cgroup:
        """An existing cgroup of nsprim's (e.g. a running container's, to exec
        into it).  It is not owned: remove() on it is refused."""
        lay = _layout()
        leaf = leaf_name(name)
        v2 = os.path.join(lay.v2, parent, leaf) if lay.v2 else None
        if v2 is not None and not os.path.isdir(v2):
            v2 = None
        v1: dict[str, str] = {}
        for ctrl, mnt in lay.v1.items():
            d = os.path.join(mnt, parent, leaf)
            if os.path.isdir(d):
                v1[ctrl] = d
        if v2 is None and not v1:
            raise FileNotFoundError(errno.ENOENT, f"no cgroup {parent}/{leaf}", name)
        served = frozenset(c for c in lay.v2_controllers
                           if ("blkio" if c == "io" else c) not in v1)
        cg = cls.__new__(cls)
        cg.name, cg.v2_path, cg.v1_paths, cg.limits = name, v2, v1, Limits()
        cg._lock, cg._v2_served, cg.removed = None, served, False
        cg._fd = -1
        if v2 is not None:
            cg._fd = os.open(v2, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        cg._borrowed = True
        return cg

    @staticmethod
    def _mkdir(path: str, created: list[str], name: str) -> None:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if os.path.basename(path) == name:
                raise FileExistsError(errno.EEXIST, f"cgroup {path} exists (a leftover? "
                                      "Cgroup.collect() removes unused ones)", path) from None
            return
        created.append(path)

    @classmethod
    def _mkdir_v2(cls, mnt: str, parent: str, ctrls: set[str], created: list[str]) -> None:
        base = os.path.join(mnt, parent)
        if not os.path.isdir(base):
            cls._mkdir(base, [], "")
        if ctrls:
            # enable the controllers down to our parent (only adds; never removes)
            enable = " ".join("+" + c for c in sorted(ctrls))
            for d in (mnt, base):
                have = set((_read(os.path.join(d, "cgroup.subtree_control")) or "").split())
                if not ctrls <= have:
                    _write(os.path.join(d, "cgroup.subtree_control"), enable)

    @staticmethod
    def _init_cpuset(src: str, dst: str) -> None:
        # a v1 cpuset takes no task until cpus and mems are set
        for f in ("cpuset.cpus", "cpuset.mems"):
            cur = (_read(os.path.join(dst, f)) or "").strip()
            if not cur:
                _write(os.path.join(dst, f), (_read(os.path.join(src, f)) or "").strip())

    # --------------------------------------------------------------- limits
    def _v1(self, ctrl: str) -> str | None:
        return self.v1_paths.get(ctrl)

    def set_limits(self, limits: Limits) -> None:
        """Apply `limits` (v2 files where v2 serves the controller, else v1)."""
        lim = limits
        v2 = self.v2_path
        served = self._v2_served
        if lim.memory is not None:
            swap = lim.memory_swap if lim.memory_swap is not None else 2 * lim.memory
            if "memory" in served and v2:
                _write(f"{v2}/memory.max", str(lim.memory))
                if os.path.exists(f"{v2}/memory.swap.max"):
                    _write(f"{v2}/memory.swap.max",
                           "max" if swap == -1 else str(swap - lim.memory))
            elif (d := self._v1("memory")) is not None:
                _write(f"{d}/memory.limit_in_bytes", str(lim.memory))
                if os.path.exists(f"{d}/memory.memsw.limit_in_bytes"):
                    _write(f"{d}/memory.memsw.limit_in_bytes", "-1" if swap == -1 else str(swap))
        if lim.cpus is not None:
            quota = max(1000, round(lim.cpus * lim.cpu_period))
            if "cpu" in served and v2:
                _write(f"{v2}/cpu.max", f"{quota} {lim.cpu_period}")
            elif (d := self._v1("cpu")) is not None:
                _write(f"{d}/cpu.cfs_period_us", str(lim.cpu_period))
                _write(f"{d}/cpu.cfs_quota_us", str(quota))
        if lim.cpu_shares is not None or lim.cpu_weight is not None:
            if "cpu" in served and v2:
                w = lim.cpu_weight if lim.cpu_weight is not None else shares_to_weight(
                    lim.cpu_shares or 1024)
                _write(f"{v2}/cpu.weight", str(w))
            elif (d := self._v1("cpu")) is not None:
                sh = lim.cpu_shares if lim.cpu_shares is not None else weight_to_shares(
                    lim.cpu_weight or 100)
                _write(f"{d}/cpu.shares", str(sh))
        for key, value in (("cpus", lim.cpuset_cpus), ("mems", lim.cpuset_mems)):
            if value is None:
                continue
            if "cpuset" in served and v2:
                _write(f"{v2}/cpuset.{key}", value)
            elif (d := self._v1("cpuset")) is not None:
                _write(f"{d}/cpuset.{key}", value)
        if lim.pids is not None:
            if "pids" in served and v2:
                _write(f"{v2}/pids.max", str(lim.pids))
            elif (d := self._v1("pids")) is not None:
                _write(f"{d}/pids.max", str(lim.pids))
        for devs, v2key, v1file in ((lim.device_read_bps, "rbps", "read_bps_device"),
                                    (lim.device_write_bps, "wbps", "write_bps_device")):
            for dev, bps in devs:
                if "io" in served and v2:
                    _write(f"{v2}/io.max", f"{dev} {v2key}={bps}")
                elif (d := self._v1("blkio")) is not None:
                    _write(f"{d}/blkio.throttle.{v1file}", f"{dev} {bps}")
        if lim.memory_reservation is not None:
            if "memory" in served and v2:
                _write(f"{v2}/memory.low", str(lim.memory_reservation))
            elif (d := self._v1("memory")) is not None:
                _write(f"{d}/memory.soft_limit_in_bytes", str(lim.memory_reservation))
        if lim.blkio_weight is not None:
            # only where the kernel's I/O scheduler takes a weight (docker warns
            # and discards it elsewhere)
            cands = [f"{v2}/io.weight", f"{v2}/io.bfq.weight"] if "io" in served and v2 else \
                [f"{d}/blkio.weight", f"{d}/blkio.bfq.weight"] \
                if (d := self._v1("blkio")) is not None else []
            for path in cands:
                if os.path.exists(path):
                    _write(path, str(lim.blkio_weight))
                    break
        self.limits = limits

    # ------------------------------------------------------- for the spawner
    @property
    def fd(self) -> int:
        """The v2 directory fd for clone3 CLONE_INTO_CGROUP (-1 without v2)."""
        return self._fd

    def procs_files(self) -> list[str]:
        """The v1 cgroup.procs files a new process must join itself."""
        seen: list[str] = []
        for d in self.v1_paths.values():
            f = os.path.join(d, "cgroup.procs")
            if f not in seen:
                seen.append(f)
        return seen

    def _v1_dirs_by_name(self) -> dict[str, str]:
        """controller -> the v1 directory of this cgroup's name that exists."""
        if self.v2_path is None:
            return {}
        leaf = os.path.basename(self.v2_path)
        parent = os.path.basename(os.path.dirname(self.v2_path))
        out = {}
        for ctrl, mnt in _layout().v1.items():
            d = os.path.join(mnt, parent, leaf)
            if os.path.isdir(d):
                out[ctrl] = d
        return out

    def ensure_v1(self, limits: Limits) -> list[str]:
        """Make the v1 cgroups that `limits` needs and this cgroup lacks (it
        was made with ``v1_accounting=False``, or by a limit-free container)
        and move every process of its v2 cgroup into them, then the ones
        forked meanwhile, until none is left out.  Returns the controllers
        added (none on a pure v1 or pure v2 host)."""
        if self.v2_path is None:
            return []
        lay = _layout()
        self.v1_paths.update({c: d for c, d in self._v1_dirs_by_name().items()
                              if c not in self.v1_paths})
        need: set[str] = set()
        for ctrl in limits.controllers():
            v1name = "blkio" if ctrl == "io" else ctrl
            if ctrl in self._v2_served or v1name in self.v1_paths or v1name not in lay.v1:
                continue
            need.add(v1name)
        if "cpu" in need and "cpuacct" in lay.v1 and "cpuacct" not in self.v1_paths:
            need.add("cpuacct")
        leaf = os.path.basename(self.v2_path)
        parent = os.path.basename(os.path.dirname(self.v2_path))
        new: dict[str, str] = {}
        for ctrl in sorted(need):
            mnt = lay.v1[ctrl]
            base = os.path.join(mnt, parent)
            path = os.path.join(base, leaf)
            if path not in new.values():
                if not os.path.isdir(base):
                    self._mkdir(base, [], "")
                if ctrl == "cpuset":
                    self._init_cpuset(mnt, base)
                self._mkdir(path, [], "")
                if ctrl == "cpuset":
                    self._init_cpuset(base, path)
            new[ctrl] = path
        for d in dict.fromkeys(new.values()):
            for _ in range(100):
                inside = set((_read(os.path.join(d, "cgroup.procs")) or "").split())
                missing = [p for p in self.procs() if str(p) not in inside]
                if not missing:
                    break
                for pid in missing:
                    try:
                        _write(os.path.join(d, "cgroup.procs"), str(pid))
                    except OSError as e:
                        if e.errno != errno.ESRCH:
                            raise
        self.v1_paths.update(new)
        return sorted(new)

    # ---------------------------------------------------------------- state
    def procs(self) -> list[int]:
        """Pids in the cgroup."""
        d = self.v2_path or next(iter(self.v1_paths.values()), None)
        if d is None:
            return []
        text = _read(os.path.join(d, "cgroup.procs")) or ""
        return [int(x) for x in text.split()]

    def populated(self) -> bool:
        if self.v2_path is not None:
            ev = _keyed(os.path.join(self.v2_path, "cgroup.events"))
            if "populated" in ev:
                return ev["populated"] == 1
        return any(_read(os.path.join(d, "cgroup.procs")) for d in self.v1_paths.values())

    def oom_kills(self) -> int:
        """How many processes the memory limit has OOM-killed."""
        n = 0
        if self.v2_path is not None and "memory" in self._v2_served:
            ev = _keyed(os.path.join(self.v2_path, "memory.events"))
            n = ev.get("oom_kill", 0)
        elif (d := self._v1("memory")) is not None:
            n = _keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
        return n

    def stats(self) -> CgroupStats:
        v2 = self.v2_path
        served = self._v2_served
        mem_cur = mem_peak = mem_lim = None
        if v2 and "memory" in served:
            mem_cur = _read_int(f"{v2}/memory.current")
            mem_peak = _read_int(f"{v2}/memory.peak")
            mem_lim = _read_int(f"{v2}/memory.max")
        elif (d := self._v1("memory")) is not None:
            mem_cur = _read_int(f"{d}/memory.usage_in_bytes")
            mem_peak = _read_int(f"{d}/memory.max_usage_in_bytes")
            mem_lim = self.limits.memory
        usage = periods = throttled = throttled_usec = None
        if v2:
            cs = _keyed(f"{v2}/cpu.stat")
            usage = cs.get("usage_usec")
            if "cpu" in served:
                periods, throttled = cs.get("nr_periods"), cs.get("nr_throttled")
                throttled_usec = cs.get("throttled_usec")
        if usage is None and (d := self._v1("cpuacct")) is not None:
            ns = _read_int(f"{d}/cpuacct.usage")
            usage = None if ns is None else ns // 1000
        if "cpu" not in served and (d := self._v1("cpu")) is not None:
            cs = _keyed(f"{d}/cpu.stat")
            periods, throttled = cs.get("nr_periods"), cs.get("nr_throttled")
            t = cs.get("throttled_time")
            throttled_usec = None if t is None else t // 1000
        user = system = None
        if v2:
            user, system = cs.get("user_usec"), cs.get("system_usec")
        if user is None and (d := self._v1("cpuacct")) is not None:
            ticks = _keyed(f"{d}/cpuacct.stat")  # USER_HZ
            hz = os.sysconf("SC_CLK_TCK")
            if "user" in ticks and "system" in ticks:
                user, system = ticks["user"] * 1_000_000 // hz, ticks["system"] * 1_000_000 // hz
        pids_cur = pids_lim = pids_peak = None
        if v2 and "pids" in served:
            pids_cur, pids_lim = _read_int(f"{v2}/pids.current"), _read_int(f"{v2}/pids.max")
            pids_peak = _read_int(f"{v2}/pids.peak")
        elif (d := self._v1("pids")) is not None:
            pids_cur, pids_lim = _read_int(f"{d}/pids.current"), _read_int(f"{d}/pids.max")
            pids_peak = _read_int(f"{d}/pids.peak")
        return CgroupStats(mem_cur, mem_peak, mem_lim, usage, periods, throttled,
                           throttled_usec, pids_cur, pids_lim, self.oom_kills(),
                           pids_peak, user, system)

    # -------------------------------------------------------------- actions
    def kill(self) -> None:
        """SIGKILL every process in the cgroup (cgroup.kill where the kernel has it)."""
        if self.v2_path is not None and os.path.exists(os.path.join(self.v2_path, "cgroup.kill")):
            _write(os.path.join(self.v2_path, "cgroup.kill"), "1")
            return
        kill_until_gone(self.procs)

    def freeze(self, timeout: float = 10.0) -> None:
        """Stop every process in the cgroup until thaw()."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 10.0) -> None:
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        if self.v2_path is not None and os.path.exists(f"{self.v2_path}/cgroup.freeze"):
            _write(f"{self.v2_path}/cgroup.freeze", "1" if frozen else "0")
            self._wait_events("frozen", 1 if frozen else 0, timeout)
        elif (d := self._v1("freezer")) is not None:
            _write(f"{d}/freezer.state", "FROZEN" if frozen else "THAWED")
            want = "FROZEN" if frozen else "THAWED"
            deadline = time.monotonic() + timeout
            while (_read(f"{d}/freezer.state") or "").strip() != want:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cgroup {self.name} did not become {want}")
                time.sleep(0.002)
        else:
            raise OSError(errno.ENOTSUP, "no freezer for this cgroup")

    def _wait_events(self, key: str, value: int, timeout: float) -> None:
        """Wait for cgroup.events' `key` to be `value` (poll(2) wakes on change)."""
        assert self.v2_path is not None
        path = os.path.join(self.v2_path, "cgroup.events")
        deadline = time.monotonic() + timeout
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            p = select.poll()
            p.register(fd, select.POLLPRI)
            while True:
                os.lseek(fd, 0, os.SEEK_SET)
                ev = _parse_keyed(os.read(fd, 4096).decode())
                if ev.get(key, value) == value:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"cgroup {self.name}: {key} did not become {value}")
                p.poll(min(left, 0.05) * 1000)
        finally:
            os.close(fd)

    def wait_empty(self, timeout: float = 10.0) -> None:
        if self.v2_path is not None and "populated" in _keyed(
                os.path.join(self.v2_path, "cgroup.events")):
            self._wait_events("populated", 0, timeout)
            return
        deadline = time.monotonic() + timeout
        while self.populated():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cgroup {self.name} did not empty")
            time.sleep(0.002)

    def close(self) -> None:
        """Close the directory fd (what open() needs; remove() also does it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def held_fds(self) -> list[int]:
        """The fd of the lock that marks this cgroup owned (none for a cgroup
        opened by name).  A process that takes the container over keeps it
        open; collection leaves the cgroup alone while it is."""
        return [self._lock.fd] if self._lock is not None and self._lock.fd >= 0 else []

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left, wait for the cgroup to empty, remove it.  Idempotent."""
        if self.removed:
            return
        if getattr(self, "_borrowed", False):
            raise PermissionError(errno.EPERM, f"cgroup {self.name} belongs to another owner")
        if self.populated():
            self.kill()
            self.wait_empty(timeout)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        dirs = list(dict.fromkeys(self.v1_paths.values()))
        if self.v2_path is not None:
            # and the v1 cgroups another process added (ensure_v1, by update)
            dirs += [d for d in self._v1_dirs_by_name().values() if d not in dirs]
            dirs.append(self.v2_path)
        _rmdirs(dirs, timeout)
        _remove_empty_parents(dirs)
        self.removed = True
        if self._lock is not None:
            self._lock.release(unlink=True)
            self._lock = None

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Cgroup {self.name} v2={self.v2_path} v1={sorted(self.v1_paths)}>"

    # ----------------------------------------------------------- collection
    @staticmethod
    def collect(parent: str = PARENT) -> list[str]:
        """Remove this state root's cgroups whose owner is gone (their lock
        is free): kill what is in them, wait, rmdir.  Returns the names
        removed.  Other roots' cgroups are never looked at."""
        lay = _layout()
        roots = [os.path.join(m, parent) for m in {lay.v2, *lay.v1.values()} if m]
        mine = leaf_name("")
        names: set[str] = set()
        for r in roots:
            try:
                names.update(e.name[len(mine):] for e in os.scandir(r)
                             if e.name.startswith(mine) and e.is_dir())
            except OSError:
                continue
        removed = []
        for name in sorted(names):
            lock = FileLock.try_acquire(_lock_path(name))
            if lock is None:
                continue  # a live owner holds it
            try:
                leaf = mine + name
                _kill_and_remove([os.path.join(r, leaf) for r in roots
                                  if os.path.isdir(os.path.join(r, leaf))])
                removed.append(name)
            finally:
                lock.release(unlink=True)
        return removed


def kill_until_gone(list_pids: Callable[[], Iterable[int]], tries: int = 100,
                    pause: float = 0.005) -> bool:
    """SIGKILL every process `list_pids()` names, again, until it names none
    (at most `tries` rounds, `pause` seconds apart); whether none is left.
    The one loop of every "kill them all" that cannot use cgroup.kill: a
    v1 cgroup's procs, a host user's processes (rootless.kill_user_processes)."""
    for _ in range(tries):
        pids = list(list_pids())
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(pause)
    return False


def _kill_and_remove(dirs: list[str]) -> None:
    """SIGKILL what is in the cgroup directories `dirs`, remove them, and the
    nsprim parents they leave empty."""
    for d in dirs:
        if os.path.exists(os.path.join(d, "cgroup.kill")):
            _write(os.path.join(d, "cgroup.kill"), "1")
        for pid in (_read(os.path.join(d, "cgroup.procs")) or "").split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    _rmdirs(dirs, 10.0)
    _remove_empty_parents(dirs)


def remove_named(name: str, parent: str = PARENT) -> bool:
    """Remove this root's cgroup `name` wherever nsprim made it (killing what
    is left in it), whoever created it: for a supervisor cleaning up after its
    container.  Returns whether there was anything to remove."""
    lay = _layout()
    leaf = leaf_name(name)
    dirs = [os.path.join(m, parent, leaf) for m in {lay.v2, *lay.v1.values()} if m]
    dirs = [d for d in dirs if os.path.isdir(d)]
    if not dirs:
        return False
    _kill_and_remove(dirs)
    try:
        os.unlink(_lock_path(name))
    except FileNotFoundError:
        pass
    return True


def _remove_empty_parents(dirs: list[str]) -> None:
    """Remove nsprim's parent cgroups once no container uses them (as the
    last container leaves); a concurrent create() recreates them."""
    for parent in dict.fromkeys(os.path.dirname(d) for d in dirs):
        try:
            os.rmdir(parent)
        except OSError:
            pass  # still in use (EBUSY / ENOTEMPTY), or gone already


def _parse_keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def _rmdirs(dirs: list[str], timeout: float) -> None:
    """rmdir each (deepest first), retrying EBUSY while exiting tasks leave."""
    deadline = time.monotonic() + timeout
    for d in sorted(dirs, key=len, reverse=True):
        delay = 0.001
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise OSError(e.errno, f"cannot remove cgroup: {e.strerror}", d) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


def iter_nsprim_cgroups(parent: str = PARENT, *, all_roots: bool = False) -> Iterator[str]:
    """Paths of this state root's cgroups under nsprim's parents, or of every
    root's (`all_roots`), for checks and tests."""
    lay = _layout()
    mine = "" if all_roots else leaf_name("")
    for m in {lay.v2, *lay.v1.values()}:
        if not m:
            continue
        base = os.path.join(m, parent)
        try:
            for e in os.scandir(base):
                if e.name.startswith(mine) and e.is_dir():
                    yield e.path
        except OSError:
            continue
