"""docker's time arguments (``logs --since/--until``, ``events``): an RFC 3339
time (``2026-11-28T15:04:05Z``, a date alone, fractions and offsets too), a
Unix time (``1764342245``, ``1764342245.5``), or a Go duration before now
(``10m``, ``1h30m``, ``42s``, ``1.5h``)."""

from __future__ import annotations

import calendar
import re
import time

__all__ = ["parse_time", "log_time"]

_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+", re.ASCII)
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNIX = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", re.ASCII)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]{1,9})?)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?", re.ASCII)


def log_time(text: str) -> float | None:
    """The Unix time of an RFC 3339 stamp (a log entry's ``time``), None if
    it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    y, mo, d, hh, mm, ss, frac, zone = m.groups()
    try:
        t = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mm or 0),
                             int(ss or 0), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and int(hh or 0) < 24 and
            int(mm or 0) < 60 and int(ss or 0) < 61):
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        t -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return t + (float(frac) if frac else 0.0)


def parse_time(text: str, what: str, now: float | None = None) -> float:
    """A --since/--until value as a Unix time; ValueError naming it."""
    now = time.time() if now is None else now
    if _UNIX.fullmatch(text):
        return float(text)
    if _DURATION.fullmatch(text):
        return now - sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    t = log_time(text)
    if t is None:
        raise ValueError(f'invalid value for "{what}": {text!r}: expected a time '
                         "(RFC 3339 or Unix) or a duration (e.g. 10m)")
    return t
