"""Container events (``nsprim events``): one JSON line per event in
``<state root>/events.jsonl``, docker's shape (``Type``, ``Action``,
``Actor: {ID, Attributes}``, ``time``, ``timeNano``).  Written by the
record's state changes (create, start, die, restart) and by the commands
(destroy, pause, unpause, rename, update); kept to about 4 MiB (the file
before is ``events.jsonl.1``).  Best effort: an event that cannot be written
never stops a container."""

from __future__ import annotations

import json
import os
import time

from nsprim.state import state_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["emit", "path", "MAX_BYTES"]

MAX_BYTES = 4 << 20


def path() -> str:
    return os.path.join(state_root(), "events.jsonl")


def emit(container_id: str, action: str, cfg: dict[str, Any] | None = None,
         **attrs: Any) -> None:
    """Append one container event (`cfg`: the record's spec, for its name and
    image)."""
    cfg = cfg or {}
    ns = time.time_ns()
    actor = {"name": str(cfg.get("name") or ""),
             "image": str(cfg.get("image") or cfg.get("rootfs") or "")}
    actor.update({k: str(v) for k, v in attrs.items()})
    line = json.dumps({"Type": "container", "Action": action, "status": action,
                       "id": container_id, "Actor": {"ID": container_id, "Attributes": actor},
                       "scope": "local", "time": ns // 10**9, "timeNano": ns}) + "\n"
    p = path()
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line.encode())  # one write: whole lines, also between processes
        if os.fstat(fd).st_size > MAX_BYTES:
            os.replace(p, p + ".1")
    except OSError:
        pass
    finally:
        os.close(fd)
