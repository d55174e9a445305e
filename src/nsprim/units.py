"""Parsing docker's user-facing values: sizes ("256m"), CPU counts ("0.5"),
cpusets ("0-2,4").  Pure functions; errors are ConfigError naming the value."""

from __future__ import annotations

import math
import re

from nsprim.errors import ConfigError

__all__ = ["parse_size", "parse_cpus", "parse_cpuset", "format_cpuset"]

# ASCII only: \d, str.isdigit(), int() and float() also take other scripts' digits
_SIZE = re.compile(r" *([0-9]+(?:\.[0-9]+)?) ?([bkmgtp])?(i)?(b)? *", re.IGNORECASE | re.ASCII)
_CPUS = re.compile(r" *([0-9]+(?:\.[0-9]*)?|\.[0-9]+) *", re.ASCII)
_CPUSET_PART = re.compile(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)
#: sizes are 64-bit signed in the kernel's files
MAX_SIZE = 2**63 - 1
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value: str | int, what: str = "size") -> int:
    """Bytes from docker's size syntax: ``1024``, ``512k``, ``256m``, ``1.5g``,
    ``64MiB``, ``2gb`` (binary units, as docker's ``RAMInBytes``)."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"invalid {what} {value!r}: negative")
        if value > MAX_SIZE:
            raise ConfigError(f"invalid {what} {value!r}: larger than {MAX_SIZE}")
        return value
    m = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ConfigError(f"invalid {what} {value!r}: expected a number with an optional "
                          "unit b, k, m, g, t or p")
    num, unit = m.group(1), (m.group(2) or "").lower()
    if m.group(3) and not unit:  # "10i" / "10ib" is not a size
        raise ConfigError(f"invalid {what} {value!r}")
    if len(num.partition(".")[0].lstrip("0")) > 19:  # past MAX_SIZE (and int()'s limits)
        raise ConfigError(f"invalid {what} {value!r}: larger than {MAX_SIZE}")
    size = int(float(num) * _UNITS[unit]) if "." in num else int(num) * _UNITS[unit]
    if size > MAX_SIZE:
        raise ConfigError(f"invalid {what} {value!r}: larger than {MAX_SIZE}")
    return size


def parse_cpus(value: str | float | int, ncpus: int) -> float:
    """docker's ``--cpus``: a positive number of CPUs, at most the host's."""
    if isinstance(value, str):
        m = _CPUS.fullmatch(value)
        if not m:
            raise ConfigError(f"invalid cpus {value!r}: expected a number such as 0.5")
        cpus = float(m.group(1))  # digits and a dot: never raises (inf is refused below)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        cpus = float(value)
    else:
        raise ConfigError(f"invalid cpus {value!r}: expected a number such as 0.5")
    if not cpus > 0 or not math.isfinite(cpus):
        raise ConfigError(f"invalid cpus {value!r}: must be more than 0")
    if cpus > ncpus:
        raise ConfigError(f"invalid cpus {value!r}: range of CPUs is from 0.01 to {ncpus}.00, "
                          f"as there are only {ncpus} CPUs available")
    if round(cpus * 100000) < 1000:
        raise ConfigError(f"invalid cpus {value!r}: the smallest is 0.01")
    return cpus


def parse_cpuset(value: str, available: frozenset[int] | None = None,
                 what: str = "cpuset") -> frozenset[int]:
    """The set of a cpuset list (``0-2,4``); every member must be available."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"invalid {what} {value!r}: empty")
    out: set[int] = set()
    for part in value.split(","):
        p = part.strip()
        m = _CPUSET_PART.fullmatch(p)
        if not m or max(len(g.lstrip("0")) for g in m.groups("")) > 9:
            raise ConfigError(f"invalid {what} {value!r}: bad element {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ConfigError(f"invalid {what} {value!r}: range {part!r} runs backwards")
        if hi - lo > 65536:
            raise ConfigError(f"invalid {what} {value!r}: range {part!r} too large")
        out.update(range(lo, hi + 1))
    if available is not None and not out <= available:
        missing = sorted(out - available)
        raise ConfigError(f"invalid {what} {value!r}: {format_cpuset(frozenset(missing))} "
                          f"not available (have {format_cpuset(available)})")
    return frozenset(out)


def format_cpuset(members: frozenset[int]) -> str:
    """The canonical list form of a set: ``{0, 1, 2, 4}`` -> ``0-2,4``."""
    s = sorted(members)
    parts: list[str] = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        parts.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(parts)
