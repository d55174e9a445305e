"""``.dockerignore``: docker's pattern rules.

One pattern a line; blank lines and ``#`` comments are skipped; a leading
``!`` makes an exception; patterns are cleaned like paths (a leading ``/``
is dropped); ``*`` and ``?`` do not cross ``/``, ``**`` matches any number
of directories, ``[...]`` a class, ``\\`` escapes.  A pattern that matches a
directory excludes everything under it; the last pattern that matches a path
(or one of its parents) decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

__all__ = ["Pattern", "Matcher", "parse_ignore", "MAX_IGNORE"]

MAX_IGNORE = 1 << 20  # bytes


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def _compile(pat: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        if c == "*":
            if i + 1 < n and pat[i + 1] == "*":
                i += 1
                # collapse any further stars
                while i + 1 < n and pat[i + 1] == "*":
                    i += 1
                if i + 1 == n:
                    out.append(".*")
                elif pat[i + 1] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pat[i]))
            else:
                out.append(re.escape("\\"))
        elif c == "[":
            end = pat.find("]", i + 1)
            if end < 0:
                raise ValueError(f"invalid .dockerignore pattern {pat!r}: unterminated '['")
            body = pat[i + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def parse_ignore(text: str) -> list[Pattern]:
    """The patterns of a .dockerignore file (ValueError names a bad one)."""
    if len(text) > MAX_IGNORE:
        raise ValueError(f".dockerignore is larger than {MAX_IGNORE} bytes")
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        if not line:
            raise ValueError("illegal exclusion pattern: \"!\"")
        p = posixpath.normpath(line)
        if p.startswith("/"):
            p = p.lstrip("/") or "."
        out.append(Pattern(raw.strip(), exclusion, _compile(p)))
    return out


class Matcher:
    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.has_exclusions = any(p.exclusion for p in patterns)

    def excluded(self, path: str) -> bool:
        """Whether the context path `path` (relative, '/'-separated) is left out."""
        if not self.patterns:
            return False
        path = posixpath.normpath(path)
        parts = path.split("/")
        parents = ["/".join(parts[:k]) for k in range(1, len(parts))]
        result = False
        for p in self.patterns:
            hit = bool(p.regex.match(path)) or any(p.regex.match(q) for q in parents)
            if hit:
                result = not p.exclusion
        return result

    def may_hold_included(self, dirpath: str) -> bool:
        """Whether an excluded directory may still hold an included path (an
        exception pattern exists): then it must be walked."""
        return self.has_exclusions
