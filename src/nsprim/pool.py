"""Pools: cgroups made once and reused by many containers (CgroupPool), and
warm containers for exec-style sandboxes (ContainerPool).

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
from collections.abc import Iterable, Sequence

from nsprim import devices as devices_mod
from nsprim.cgroup import Cgroup, Limits, make_limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from typing_extensions import Unpack

    from nsprim._completed import CompletedContainer
    from nsprim.cgroup import LimitOptions
    from nsprim.container import Container

__all__ = ["CgroupPool", "ContainerPool"]


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


class ContainerPool:
    """Warm containers for exec-style sandboxes: each command runs with
    :meth:`Container.exec` in a container already started (about a
    millisecond instead of a whole container's start).  Thread-safe.

    ``ContainerPool(["sleep", "2147483647"], rootfs=R, size=4, pids=64)``:
    `argv` is each container's first process (something that waits forever),
    the other keywords are Container's (``**presets.SANDBOX`` without
    run()'s own fields, see :func:`nsprim.presets.sandbox_container`).

    Between two commands in one container, every process but its own
    command is killed (the container's cgroup is read for them: give it a
    limit, e.g. ``pids=``, so that it has one of its own), and reaped by
    nsprim-init, its PID 1 (``init=True`` is the pool's default).  Files a command wrote (in
    /tmp, say) stay for the next: recycle often (`max_uses`) or use one
    container per tenant.

    :param size: the most idle containers kept.
    :param max_uses: a container is retired after that many commands.
    :param health_check: a command that must exit 0 in a container before it
        is handed out again (None: only "its first process is alive").
    """

    def __init__(self, argv: Sequence[str], *, size: int = 4, max_uses: int = 100,
                 health_check: Sequence[str] | None = None, **container_options: Any) -> None:
        from nsprim.errors import ConfigError

        for name, v in (("size", size), ("max_uses", max_uses)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"invalid {name} {v!r}: an integer >= 1")
        self._argv = list(argv)
        # nsprim-init as PID 1: it reaps what the commands leave (the killed
        # leftovers would stay zombies under a PID 1 that never waits)
        container_options.setdefault("init", True)
        self._options = container_options
        self._keep: dict[str, set[int]] = {}
        self.size = size
        self.max_uses = max_uses
        self.health_check = list(health_check) if health_check is not None else None
        self._idle: list[Container] = []
        self._uses: dict[str, int] = {}
        self._lock = _thread.allocate_lock()
        self.closed = False
        #: containers started and retired by this pool
        self.started = 0
        self.retired = 0

    def _new(self) -> Container:
        from nsprim.container import Container

        c = Container(self._argv, **self._options).start()
        keep = {c.pid} if c.pid is not None else set()
        if c.config.init and c.pid is not None:  # and the command, init's child
            try:
                with open(f"/proc/{c.pid}/task/{c.pid}/children") as f:
                    keep.update(int(p) for p in f.read().split())
            except OSError:
                pass
        with self._lock:
            self.started += 1
            self._uses[c.id] = 0
            self._keep[c.id] = keep
        return c

    def _retire(self, c: Container) -> None:
        with self._lock:
            self._uses.pop(c.id, None)
            self._keep.pop(c.id, None)
            self.retired += 1
        c.kill_all()
        c.wait()

    def _healthy(self, c: Container) -> bool:
        if c.poll() is not None:
            return False
        if self.health_check is None:
            return True
        try:
            return c.exec(self.health_check, stdout=-3, stderr=-3, timeout=10).returncode == 0
        except Exception:
            return False

    def acquire(self) -> Container:
        """A healthy running container (started now if none is idle)."""
        while True:
            with self._lock:
                if self.closed:
                    raise ValueError("the container pool is closed")
                c = self._idle.pop() if self._idle else None
            if c is None:
                return self._new()
            if self._healthy(c):
                return c
            self._retire(c)

    def release(self, c: Container) -> None:
        """Give `c` back: what its commands left running is killed; it is
        retired when it has served max_uses commands, is dead, or the pool is
        full or closed."""
        with self._lock:
            uses = self._uses.get(c.id, 0) + 1
            self._uses[c.id] = uses
        if c.poll() is None:
            with self._lock:
                keep = self._keep.get(c.id, set())
            self._kill_leftovers(c, keep)
        with self._lock:
            reuse = (not self.closed and uses < self.max_uses and c.returncode is None
                     and len(self._idle) < self.size)
            if reuse:
                self._idle.append(c)
        if not reuse:
            self._retire(c)

    @staticmethod
    def _kill_leftovers(c: Container, keep: set[int]) -> None:
        import signal

        cg = c.cgroup
        if cg is None or cg.removed or not keep:
            return
        import time

        deadline = time.monotonic() + 2.0
        while True:
            left = [pid for pid in cg.procs() if pid not in keep]
            if not left or time.monotonic() > deadline:
                return  # gone (reaped by nsprim-init), or given up on
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)

    def exec(self, argv: Sequence[str], **exec_options: Any) -> CompletedContainer:
        """Run `argv` in a warm container (Container.exec's keywords: give a
        timeout and an output limit) and return its result."""
        c = self.acquire()
        try:
            return c.exec(argv, **exec_options)
        finally:
            self.release(c)

    def close(self) -> None:
        """Stop every idle container; those in use stop when released."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            self._retire(c)

    def __enter__(self) -> ContainerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
