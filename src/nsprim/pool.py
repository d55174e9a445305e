"""CgroupPool: cgroups made once and reused by many containers.

Making a cgroup per container (mkdir in every hierarchy, limits written,
device program attached) and removing it (wait for it to empty, rmdir)
costs more than the container's own start on a busy host.  A pool keeps
emptied cgroups with one set of limits for the next container::

    from nsprim import run
    from nsprim.pool import CgroupPool

    with CgroupPool(memory="256m", pids=64, size=8) as pool:
        run(["sh", "-c", code], rootfs=root, cgroup_pool=pool)   # from any thread

A cgroup goes back to the pool only once it is empty: what the container
left in it is killed first, and the wait for it to empty is the releasing
thread's.  Its limits stay as they were made (nothing in a container can
change them: the cgroup filesystem is not writable from inside).  OOM kills
are counted per container (the counter's value at start is subtracted);
the result's ``cpu_time`` is the first process's (getrusage), and
``memory_peak``/``pids_peak`` are None: the kernel's peaks of a reused
cgroup cover every container it held.  ``close()`` removes every cgroup of
the pool (those still in use when they come back).
"""

from __future__ import annotations

import _thread
import os
from collections.abc import Iterable

from nsprim import devices as devices_mod
from nsprim.cgroup import Cgroup, Limits, make_limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing_extensions import Unpack

    from nsprim.cgroup import LimitOptions

__all__ = ["CgroupPool"]


class CgroupPool:
    """Reusable cgroups with the same limits (thread-safe).

    :param size: the most idle cgroups kept; more are made when all are in
        use, and removed when they come back to a full pool.
    :param limits: a ready :class:`~nsprim.cgroup.Limits`, or the limit
        keywords of :meth:`Cgroup.create` (``memory=``, ``pids=``...).
    :param devices: extra host devices the containers may use (docker's
        ``--device``); docker's default device rules apply otherwise.
    :param privileged: no device rules (for ``privileged=True`` containers).
    """

    def __init__(self, *, size: int = 8, limits: Limits | None = None,
                 devices: Iterable[str] = (), privileged: bool = False,
                 **limit_options: Unpack[LimitOptions]) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            from nsprim.errors import ConfigError

            raise ConfigError(f"invalid pool size {size!r}: an integer >= 0")
        self.size = size
        self.limits = limits if limits is not None else make_limits(**limit_options)
        self._device_rules = None if privileged else devices_mod.rules_for(
            tuple(devices_mod.parse_device(d) for d in devices))
        self._idle: list[Cgroup] = []
        self._in_use = 0
        self._lock = _thread.allocate_lock()
        self.closed = False
        #: cgroups made by this pool (a measure of reuse)
        self.created = 0

    def acquire(self) -> Cgroup:
        """An empty cgroup with the pool's limits, reused or made now."""
        with self._lock:
            if self.closed:
                raise ValueError("the cgroup pool is closed")
            self._in_use += 1
            if self._idle:
                return self._idle.pop()
        try:
            cg = Cgroup.create(f"pool-{os.urandom(8).hex()}", limits=self.limits)
            if self._device_rules is not None:
                try:
                    devices_mod.apply(cg.fd, cg.v1_paths.get("devices"), self._device_rules)
                except BaseException:
                    cg.remove()
                    raise
        except BaseException:
            with self._lock:
                self._in_use -= 1
            raise
        with self._lock:
            self.created += 1
        return cg

    def release(self, cg: Cgroup) -> None:
        """Give `cg` back: what is left in it is killed, then it waits for
        the next container (or is removed, if the pool is full or closed)."""
        try:
            if cg.populated():
                cg.kill()
                cg.wait_empty()
        except BaseException:
            with self._lock:
                self._in_use -= 1
            cg.remove()
            raise
        with self._lock:
            self._in_use -= 1
            keep = not self.closed and len(self._idle) < self.size
            if keep:
                self._idle.append(cg)
        if not keep:
            cg.remove()

    def close(self) -> None:
        """Remove every idle cgroup; those in use are removed when released."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for cg in idle:
            cg.remove()

    def __enter__(self) -> CgroupPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<CgroupPool idle={len(self._idle)} in_use={self._in_use} "
                f"created={self.created}{' closed' if self.closed else ''}>")
