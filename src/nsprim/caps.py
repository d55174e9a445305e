"""Linux capabilities by name, and docker's default set.

Numbers come from the kernel headers through the C core; nothing is written
as a literal here.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from nsprim._native import lib
from nsprim.errors import ConfigError

__all__ = ["ALL_CAPS", "DOCKER_DEFAULT_CAPS", "cap_number", "cap_mask", "resolve_caps"]

#: every capability the kernel headers of this build name (csrc/build_ffi.py
#: reads them from <linux/capability.h>)
_NAMES = sorted((n[4:] for n in dir(lib) if n.startswith("CAP_") and n != "CAP_LAST_CAP"),
                key=lambda n: int(getattr(lib, "CAP_" + n)))

#: every capability this build knows, name -> number
ALL_CAPS: dict[str, int] = {name: int(getattr(lib, "CAP_" + name)) for name in _NAMES}

#: the 14 capabilities docker grants a container by default
DOCKER_DEFAULT_CAPS: frozenset[str] = frozenset(
    "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
    "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE".split()
)


def _norm(name: str) -> str:
    n = name.strip().upper()
    if n.startswith("CAP_"):
        n = n[4:]
    return n


def cap_number(name: str) -> int:
    """The number of capability `name` (``NET_ADMIN`` or ``CAP_NET_ADMIN``)."""
    n = _norm(name)
    if n not in ALL_CAPS:
        raise ConfigError(f"unknown capability: {name!r}")
    return ALL_CAPS[n]


def resolve_caps(
    add: Iterable[str] = (), drop: Iterable[str] = (), base: Iterable[str] = DOCKER_DEFAULT_CAPS
) -> frozenset[str]:
    """docker's rule: start from `base`, drop `drop`, then add `add`; ``ALL``
    stands for every capability (``--cap-drop ALL --cap-add X`` keeps only X)."""
    return _resolve_caps(tuple(add), tuple(drop), frozenset(base))


@lru_cache(maxsize=256)
def _resolve_caps(add: tuple[str, ...], drop: tuple[str, ...], base: frozenset[str]
                  ) -> frozenset[str]:
    caps = {_norm(c) for c in base}
    for c in drop:
        if _norm(c) == "ALL":
            caps.clear()
        else:
            cap_number(c)
            caps.discard(_norm(c))
    for c in add:
        if _norm(c) == "ALL":
            caps.update(ALL_CAPS)
        else:
            cap_number(c)
            caps.add(_norm(c))
    return frozenset(caps)


def cap_mask(names: Iterable[str]) -> int:
    """The 64-bit mask of the named capabilities."""
    return _cap_mask(frozenset(names))


@lru_cache(maxsize=256)
def _cap_mask(names: frozenset[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << cap_number(n)
    return m
