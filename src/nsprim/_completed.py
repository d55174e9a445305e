"""What `nsprim.run()` returns (imported by run(), not by every user of
Container: subclassing subprocess's class imports subprocess)."""

from __future__ import annotations

import subprocess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CompletedContainer"]


class CompletedContainer(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """What run() returns: subprocess's CompletedProcess plus container facts.

    `returncode` follows subprocess (negative: killed by that signal);
    `exit_code` follows docker (128+N when killed by signal N).
    """

    def __init__(self, args: Any, returncode: int, stdout: Any = None, stderr: Any = None,
                 container_id: str = "", oom_killed: bool = False):
        super().__init__(args, returncode, stdout, stderr)
        self.container_id = container_id
        self.oom_killed = oom_killed

    @property
    def exit_code(self) -> int:
        return self.returncode if self.returncode >= 0 else 128 - self.returncode
