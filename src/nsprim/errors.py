"""nsprim's domain errors.

Kernel failures are the built-in OSError family (PermissionError,
FileNotFoundError, ...) so callers can catch them as usual.  Failures inside a
container's setup carry the name of the step that failed.  Bad input is a
`ConfigError` (a ValueError) raised before anything touches the kernel.
"""

from __future__ import annotations

import os

__all__ = ["ConfigError", "SpawnError", "spawn_error"]


class ConfigError(ValueError):
    """Bad user input: an invalid value in a container's configuration."""


class SpawnError(OSError):
    """A container's setup failed in the child before its command ran.

    Instances are created by :func:`spawn_error` as a subclass of the OSError
    class that the errno maps to, so ``except FileNotFoundError`` works.
    `step` names the plan step (e.g. ``pivot_root``), `detail` its argument.
    """

    step: str
    detail: str


_classes: dict[type[OSError], type[SpawnError]] = {}


def spawn_error(err: int, step: str, detail: str = "", what: str = "") -> SpawnError:
    """Build the SpawnError for `err` at `step`: which call failed (`what`),
    else the step's argument (`detail`), e.g.
    ``FileNotFoundError: [Errno 2] bind_mount: opening /srv/data on the host: No such ...``
    ``FileNotFoundError: [Errno 2] rootfs (/nope): No such file or directory``
    """
    base = type(OSError(err, ""))
    cls = _classes.get(base)
    if cls is None:
        cls = type(base.__name__, (SpawnError, base), {"__module__": __name__})
        _classes[base] = cls
    where = f": {what}" if what else (f" ({detail})" if detail else "")
    e = cls(err, f"{step}{where}: {os.strerror(err)}")
    e.step = step
    e.detail = detail
    return e
