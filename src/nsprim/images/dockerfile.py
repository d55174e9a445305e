"""Dockerfiles: parsed by BuildKit's own parser, words expanded as BuildKit does.

Parsing (line continuations, comments, the ``# escape=`` and ``# syntax=``
directives, JSON and shell forms, heredocs) is done by the ``dockerfile``
package, which wraps BuildKit's Go parser (see the README for why).  This
module adds what the parser leaves to the builder: the stages, ``ARG``
before ``FROM``, and the shell-like word expansion of BuildKit's lexer
(``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR-x}``, ``${VAR:+x}``,
``${VAR+x}``, ``${VAR:?msg}``, quotes and the escape character).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DockerfileError", "Instruction", "Stage", "Dockerfile", "parse", "expand",
           "INSTRUCTIONS", "MAX_DOCKERFILE"]

MAX_DOCKERFILE = 4 << 20   # bytes: a Dockerfile is untrusted input

INSTRUCTIONS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
    "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
    "HEALTHCHECK", "SHELL"})

# instructions whose words are expanded (BuildKit's list)
EXPANDED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL",
                      "USER", "VOLUME", "WORKDIR", "ARG", "ONBUILD"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DockerfileError(ValueError):
    """A Dockerfile that cannot be built; the message names the line."""


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str


@dataclass(frozen=True)
class Instruction:
    cmd: str                       # upper case: RUN, COPY...
    args: tuple[str, ...]          # the parser's words (not expanded)
    flags: tuple[str, ...] = ()    # --chown=1:1 ...
    json: bool = False             # exec (JSON) form
    original: str = ""
    line: int = 0
    heredocs: tuple[Heredoc, ...] = ()
    sub_cmd: str | None = None     # ONBUILD's instruction

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (the last one), else None."""
        value = None
        for f in self.flags:
            key, eq, v = f[2:].partition("=")
            if key == name:
                value = v if eq else "true"
        return value

    def text(self) -> str:
        """The instruction as one line (docker's ``Step N/M : ...``)."""
        return " ".join(self.original.splitlines()[0].split()) if self.original else self.cmd


@dataclass
class Stage:
    index: int
    base: str                      # the FROM image, not expanded
    name: str | None
    platform: str | None
    from_line: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    meta_args: list[Instruction]   # ARG before the first FROM
    stages: list[Stage]
    escape: str = "\\"

    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or index."""
        for s in self.stages:
            if s.name is not None and s.name == ref.lower():
                return s
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def _escape_directive(text: str) -> str:
    """The escape character from the directives at the top (BuildKit's rule:
    directives are the leading ``# key=value`` comment lines)."""
    for line in text.splitlines():
        m = re.fullmatch(r"\s*#\s*([A-Za-z]+)\s*=\s*(.*?)\s*", line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            return m.group(2)
    return "\\"


def _ins_to_json(i: Instruction) -> list[Any]:
    return [i.cmd, list(i.args), list(i.flags), i.json, i.original, i.line,
            [[h.name, h.content] for h in i.heredocs], i.sub_cmd]


def _ins_from_json(v: list[Any]) -> Instruction:
    return Instruction(v[0], tuple(v[1]), tuple(v[2]), v[3], v[4], v[5],
                       tuple(Heredoc(n, c) for n, c in v[6]), v[7])


def _to_json(df: Dockerfile) -> dict[str, Any]:
    return {"v": 1, "escape": df.escape, "meta": [_ins_to_json(i) for i in df.meta_args],
            "stages": [[s.index, s.base, s.name, s.platform, _ins_to_json(s.from_line),
                        [_ins_to_json(i) for i in s.instructions]] for s in df.stages]}


def _from_json(d: dict[str, Any]) -> Dockerfile:
    return Dockerfile([_ins_from_json(i) for i in d["meta"]],
                      [Stage(s[0], s[1], s[2], s[3], _ins_from_json(s[4]),
                             [_ins_from_json(i) for i in s[5]]) for s in d["stages"]],
                      d["escape"])


def parse_cached(text: bytes, cache_dir: str, what: str = "Dockerfile") -> Dockerfile:
    """parse(), remembered by the text's sha256 under `cache_dir`: a rebuild
    does not load the Go parser again."""
    import hashlib
    import json
    import os

    path = os.path.join(cache_dir, "dockerfile-" + hashlib.sha256(text).hexdigest() + ".json")
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_DOCKERFILE * 4))
        if isinstance(data, dict) and data.get("v") == 1:
            return _from_json(data)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    df = parse(text, what)
    from nsprim.state import atomic_write

    try:
        atomic_write(path, json.dumps(_to_json(df)).encode(), 0o600)
    except OSError:
        pass
    return df


def parse(text: str | bytes, what: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile.  DockerfileError names the bad line."""
    import dockerfile as _df

    if isinstance(text, bytes):
        if len(text) > MAX_DOCKERFILE:
            raise DockerfileError(f"{what}: larger than {MAX_DOCKERFILE} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DockerfileError(f"{what}: not UTF-8 (byte {e.start})") from None
    if len(text) > MAX_DOCKERFILE:
        raise DockerfileError(f"{what}: larger than {MAX_DOCKERFILE} bytes")
    if "\0" in text:
        raise DockerfileError(f"{what}: contains a NUL byte")
    try:
        cmds = _df.parse_string(text)
    except _df.GoParseError as e:
        raise DockerfileError(f"{what}: {e}") from None
    escape = _escape_directive(text)
    if escape not in ("\\", "`"):
        raise DockerfileError(f"{what}: invalid escape token {escape!r} does not validate")
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for c in cmds:
        ins = Instruction(c.cmd.upper(), tuple(c.value), tuple(c.flags), bool(c.json),
                          c.original, c.start_line,
                          tuple(Heredoc(h.name, h.content) for h in c.heredocs),
                          c.sub_cmd.upper() if c.sub_cmd else None)
        if ins.cmd not in INSTRUCTIONS:
            raise DockerfileError(f"{what}: line {ins.line}: unknown instruction: "
                                  f"{c.cmd.upper()}")
        if ins.cmd == "FROM":
            args = list(ins.args)
            name = None
            if len(args) == 3 and args[1].lower() == "as":
                name = args[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
                    raise DockerfileError(f"{what}: line {ins.line}: invalid name for build "
                                          f"stage: {args[2]!r}, name can't start with a "
                                          "number or contain symbols")
                if any(s.name == name for s in stages):
                    raise DockerfileError(f"{what}: line {ins.line}: duplicate stage name "
                                          f"{args[2]!r}")
            elif len(args) != 1 or not args[0]:
                raise DockerfileError(f"{what}: line {ins.line}: FROM requires either one or "
                                      "three arguments")
            for f in ins.flags:
                if not f.startswith("--platform="):
                    raise DockerfileError(f"{what}: line {ins.line}: unknown flag: "
                                          f"{f.split('=')[0]}")
            stages.append(Stage(len(stages), args[0], name, ins.flag("platform"), ins))
        elif not stages:
            if ins.cmd != "ARG":
                raise DockerfileError(f"{what}: line {ins.line}: no build stage in current "
                                      f"context ({ins.cmd} before FROM)")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(f"{what}: no build stage in current context (missing FROM)")
    return Dockerfile(meta, stages, escape)


class _Lexer:
    """BuildKit's word expansion (shell/lex.go's rules, re-implemented)."""

    def __init__(self, word: str, env: Mapping[str, str], escape: str,
                 used: set[str] | None, raw: bool = False) -> None:
        self.s = word
        self.i = 0
        self.env = env
        self.esc = escape
        self.used = used
        self.raw = raw  # heredoc content: quotes and escapes are kept as they are

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        c = self.peek()
        self.i += 1
        return c

    def word(self, stop: str = "") -> str:
        out: list[str] = []
        while self.i < len(self.s):
            c = self.peek()
            if stop and c in stop:
                break
            self.i += 1
            if self.raw and c != "$":
                out.append(c)
                continue
            if c == self.esc:
                if self.i < len(self.s):
                    out.append(self.next())
                continue
            if c == "'":
                end = self.s.find("'", self.i)
                if end < 0:
                    raise DockerfileError(f"unexpected end of statement while looking for "
                                          f"matching single-quote in {self.s!r}")
                out.append(self.s[self.i:end])
                self.i = end + 1
                continue
            if c == '"':
                out.append(self.double())
                continue
            if c == "$":
                out.append(self.dollar())
                continue
            out.append(c)
        return "".join(out)

    def double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise DockerfileError(f"unexpected end of statement while looking for "
                                      f"matching double-quote in {self.s!r}")
            c = self.next()
            if c == '"':
                return "".join(out)
            if c == self.esc:
                n = self.peek()
                if n in ('"', "$", self.esc):
                    out.append(self.next())
                else:
                    out.append(c)
                continue
            if c == "$":
                out.append(self.dollar())
                continue
            out.append(c)

    def lookup(self, name: str) -> str | None:
        if self.used is not None:
            self.used.add(name)
        return self.env.get(name)

    def dollar(self) -> str:
        c = self.peek()
        if c == "{":
            self.i += 1
            m = _NAME.match(self.s, self.i)
            if not m:
                raise DockerfileError(f"bad substitution in {self.s!r}")
            name = m.group(0)
            self.i = m.end()
            c = self.next()
            if c == "}":
                return self.lookup(name) or ""
            colon = c == ":"
            if colon:
                c = self.next()
            if c not in ("-", "+", "?"):
                raise DockerfileError(f"unsupported modifier ({c!r}) in substitution "
                                      f"in {self.s!r}")
            word = self.word(stop="}")
            if self.next() != "}":
                raise DockerfileError(f"missing '}}' in {self.s!r}")
            value = self.lookup(name)
            is_set = value is not None and (value != "" or not colon)
            if c == "-":
                return value if is_set and value is not None else word
            if c == "+":
                return word if is_set else ""
            if not is_set:
                raise DockerfileError(f"{name}: {word or 'is not allowed to be unset'}")
            return value or ""
        m = _NAME.match(self.s, self.i)
        if not m:
            return "$"
        self.i = m.end()
        return self.lookup(m.group(0)) or ""


def expand(word: str, env: Mapping[str, str], escape: str = "\\",
           used: set[str] | None = None, *, heredoc: bool = False) -> str:
    """Expand `word` as BuildKit does: variables from `env`, quotes removed
    (with `heredoc`, only the variables: quotes and escapes stay).  The names
    looked up are added to `used`."""
    return _Lexer(word, env, escape, used, heredoc).word()
