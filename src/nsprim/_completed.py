"""What `nsprim.run()` returns (imported by run(), not by every user of
Container: subclassing subprocess's class imports subprocess)."""

from __future__ import annotations

import subprocess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.cgroup import CgroupStats

__all__ = ["CompletedContainer"]


class CompletedContainer(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """What run() returns: subprocess's CompletedProcess plus container facts.

    `returncode` follows subprocess (negative: killed by that signal);
    `exit_code` follows docker (128+N when killed by signal N).
    """

    def __init__(self, args: Any, returncode: int, stdout: Any = None, stderr: Any = None,
                 container_id: str = "", oom_killed: bool = False, *,
                 duration: float | None = None, timed_out: bool = False,
                 cpu_time: tuple[float, float] | None = None,
                 memory_peak: int | None = None, pids_peak: int | None = None,
                 stats: CgroupStats | None = None, stdout_truncated: bool = False,
                 stderr_truncated: bool = False):
        super().__init__(args, returncode, stdout, stderr)
        #: the container's id
        self.container_id = container_id
        #: True when the memory limit's OOM killer killed a process of it
        self.oom_killed = oom_killed
        #: seconds from the command's exec to its exit (monotonic clock)
        self.duration = duration
        #: True when run()'s timeout killed it (raise_on_timeout=False)
        self.timed_out = timed_out
        #: (user, system) CPU seconds: the cgroup's when it had one, else the
        #: first process's and the children it reaped
        self.cpu_time = cpu_time
        #: the most memory in use at once, bytes (only with a cgroup of its own)
        self.memory_peak = memory_peak
        #: the most processes at once (only with a cgroup of its own)
        self.pids_peak = pids_peak
        #: the cgroup's whole accounting, read before it was removed
        self.stats = stats
        #: True when output_limit cut stdout / stderr
        self.stdout_truncated = stdout_truncated
        self.stderr_truncated = stderr_truncated

    @property
    def exit_code(self) -> int:
        return self.returncode if self.returncode >= 0 else 128 - self.returncode
