"""``nsprim build``: a Dockerfile -> an image in the store, with a layer cache.

Each RUN runs as an nsprim container (the same spawn path as ``nsprim run``:
docker's seccomp profile, capabilities, nodev, a fresh keyring, fds closed)
on an overlay of the stage's layers; each COPY/ADD writes into the same kind
of overlay from the host, every path resolved with openat2(RESOLVE_IN_ROOT):
sources inside the context (or the ``--from`` stage), destinations inside
the image.  The overlay's upper directory becomes a deterministic layer tar
(layertar.py), extracted into the store's layers by diff_id (shared).

The cache: one record a step under ``<store>/buildcache/<key>.json``; the key
chains the parent's key, the instruction after substitution, the build args
a RUN sees, and for COPY/ADD the content, mode and type of every source
after ``.dockerignore`` (never mtimes).  A record holds the whole image
config after the step, so a rebuild with nothing changed gives the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from nsprim.images.dockerfile import (
    EXPANDED,
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    expand,
    parse_cached,
)
from nsprim.images.dockerignore import Matcher, _compile, parse_ignore
from nsprim.images.store import Image, ImageNotFound, ImageStore, default_store

__all__ = ["BuildError", "Builder", "build", "prune_cache"]

_DEFAULT_SHELL = ["/bin/sh", "-c"]
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARG_NAME = __import__("re").compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_PASSWD = 1 << 20
# build args every Dockerfile may use without declaring them (docker's list)
_BUILTIN_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                           "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
                           "ALL_PROXY", "all_proxy"})


class BuildError(Exception):
    """A build that failed; str() is one line naming the step and the line."""


@dataclass
class _State:
    """A stage while it is built: the image config so far and its cache key."""

    config: dict[str, Any]
    key: str
    layers: list[str]
    args: dict[str, str] = field(default_factory=dict)
    stage: Stage | None = None

    @property
    def c(self) -> dict[str, Any]:
        cfg = self.config.setdefault("config", {})
        assert isinstance(cfg, dict)
        return cfg

    @property
    def diff_ids(self) -> list[str]:
        ids = self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"]
        assert isinstance(ids, list)
        return ids

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.c.get("Env") or []:
            k, _, v = str(e).partition("=")
            out[k] = v
        return out

    def subst_env(self) -> dict[str, str]:
        """What ${VAR} sees: the stage's ARGs, then ENV over them."""
        return {**self.args, **self.env()}


_DUR = __import__("re").compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_DUR_NS = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _duration_ns(text: str, what: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DUR.match(text, pos)
        if not m:
            raise BuildError(f"invalid {what} {text!r}: a duration such as 30s")
        total += float(m.group(1)) * _DUR_NS[m.group(2)]
        pos = m.end()
    if not text:
        raise BuildError(f"invalid {what} {text!r}: a duration such as 30s")
    return int(total)


def env_of(c: Mapping[str, Any]) -> dict[str, str]:
    """An image config's ``Env`` as a dict."""
    out: dict[str, str] = {}
    for e in c.get("Env") or []:
        k, _, v = str(e).partition("=")
        out[k] = v
    return out


def apply_metadata(new: dict[str, Any], ins: Instruction, words: list[str],
                   env: Mapping[str, str], expand_word: Callable[[str, Mapping[str, str]], str],
                   cmd_before: bool) -> str:
    """Apply a metadata instruction (ENV, LABEL, MAINTAINER, EXPOSE, USER,
    WORKDIR, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
    ONBUILD) to the image config `new` (changed in place); `words` are its
    expanded arguments, `env` what ``${VAR}`` sees, `cmd_before` whether a
    CMD came before (an ENTRYPOINT without one clears the CMD).  Returns the
    history's description; BuildError for a bad instruction.  ``build`` and
    ``commit --change`` share it."""
    cmd = ins.cmd
    c = new.setdefault("config", {})
    desc = ins.text()
    if cmd == "ENV":
        pairs = list(zip(ins.args[0::2], ins.args[1::2], strict=False))
        cur = env_of(c)
        for k, v in pairs:
            cur[k] = expand_word(v, {**env, **cur})
        c["Env"] = [f"{k}={v}" for k, v in cur.items()]
        desc = "ENV " + " ".join(f"{k}={cur[k]}" for k, _ in pairs)
    elif cmd == "LABEL":
        labels = dict(c.get("Labels") or {})
        for k, v in zip(ins.args[0::2], ins.args[1::2], strict=False):
            labels[expand_word(k, env)] = expand_word(v, env)
        c["Labels"] = labels
    elif cmd == "MAINTAINER":
        new["author"] = " ".join(ins.args)
    elif cmd == "EXPOSE":
        ports = dict(c.get("ExposedPorts") or {})
        for w in words:
            for p in w.split():
                num, _, proto = p.partition("/")
                if not all(x.isdigit() for x in num.split("-")) or \
                        proto not in ("", "tcp", "udp", "sctp"):
                    raise BuildError(f"invalid containerPort: {p}")
                ports[f"{num}/{proto or 'tcp'}"] = {}
        c["ExposedPorts"] = ports
    elif cmd == "USER":
        if len(words) != 1 or not words[0]:
            raise BuildError("USER requires exactly one argument")
        c["User"] = words[0]
    elif cmd == "WORKDIR":
        if len(words) != 1 or not words[0]:
            raise BuildError("WORKDIR requires exactly one argument")
        c["WorkingDir"] = posixpath.normpath(
            posixpath.join(c.get("WorkingDir") or "/", words[0]))
    elif cmd == "VOLUME":
        vols = dict(c.get("Volumes") or {})
        for w in words:
            for v in (w.split() if not ins.json else [w]):
                if not v:
                    raise BuildError("VOLUME specified can not be an empty string")
                vols[v] = {}
        c["Volumes"] = vols
    elif cmd == "STOPSIGNAL":
        if len(words) != 1:
            raise BuildError("STOPSIGNAL requires exactly one argument")
        c["StopSignal"] = words[0]
    elif cmd in ("CMD", "ENTRYPOINT"):
        argv = list(ins.args) if ins.json else \
            list(c.get("Shell") or _DEFAULT_SHELL) + [" ".join(ins.args)]
        if cmd == "ENTRYPOINT":
            c["Entrypoint"] = argv
            if not cmd_before:
                c["Cmd"] = None
        else:
            c["Cmd"] = argv
    elif cmd == "SHELL":
        if not ins.json or not ins.args:
            raise BuildError("SHELL requires the arguments to be in JSON form")
        c["Shell"] = list(ins.args)
    elif cmd == "HEALTHCHECK":
        c["Healthcheck"] = _healthcheck(ins)
    elif cmd == "ONBUILD":
        if ins.sub_cmd in ("ONBUILD", "FROM", "MAINTAINER"):
            raise BuildError(f"{ins.sub_cmd} isn't allowed as an ONBUILD trigger")
        trig = ins.original.split(None, 1)[1] if " " in ins.original else ""
        c["OnBuild"] = list(c.get("OnBuild") or []) + [trig]
    else:  # pragma: no cover - INSTRUCTIONS is closed
        raise BuildError(f"unknown instruction: {cmd}")
    return desc


def _healthcheck(ins: Instruction) -> dict[str, Any]:
    args = list(ins.args)
    if args and args[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    if not args or args[0].upper() != "CMD":
        raise BuildError("HEALTHCHECK: expected CMD or NONE")
    rest = args[1:]
    test = ["CMD", *rest] if ins.json else ["CMD-SHELL", " ".join(rest)]
    hc: dict[str, Any] = {"Test": test}
    for f in ins.flags:
        k, _, v = f[2:].partition("=")
        names = {"interval": "Interval", "timeout": "Timeout",
                 "start-period": "StartPeriod", "start-interval": "StartInterval"}
        if k in names:
            hc[names[k]] = _duration_ns(v, f"--{k}")
        elif k == "retries":
            if not v.isdigit():
                raise BuildError(f"invalid --retries {v!r}")
            hc["Retries"] = int(v)
        else:
            raise BuildError(f"unknown flag: --{k}")
    return hc


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _image_id(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_config_bytes(config)).hexdigest()


def _config_bytes(config: dict[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":")).encode()


class _Root:
    """A directory opened once; paths resolved inside it (openat2
    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): ``..``, absolute symlinks and
    ``/proc/self/fd`` links all stay inside."""

    def __init__(self, path: str) -> None:
        from nsprim.images.layer import _Root as _LayerRoot

        self._r = _LayerRoot(path)
        self.fd = self._r.fd
        self.path = path

    def open(self, rel: str, flags: int) -> int:
        return self._r.open(rel.lstrip("/"), flags)

    def dir(self, rel: str) -> int:
        return self._r.dir(rel.strip("/"))

    def close(self) -> None:
        self._r.close()


def _read_bounded(root: _Root, rel: str) -> str | None:
    try:
        fd = root.open(rel, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, _MAX_PASSWD).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _lookup_ids(root: _Root, spec: str, what: str) -> tuple[int, int]:
    """``user[:group]`` (names or numbers) -> (uid, gid), in the image's files."""
    user, _, group = spec.partition(":")

    def find(file: str, name: str) -> tuple[int, int] | None:
        """(uid, gid) of a passwd entry; (gid, gid) of a group entry."""
        for line in (_read_bounded(root, file) or "").splitlines():
            f = line.split(":")
            if len(f) >= 3 and f[0] == name and f[2].isdigit():
                if file.endswith("group"):
                    return int(f[2]), int(f[2])
                if len(f) >= 4 and f[3].isdigit():
                    return int(f[2]), int(f[3])
        return None

    if user.isdigit():
        uid, gid = int(user), int(user) if not group else 0
        if not group:
            gid = uid
    else:
        found = find("etc/passwd", user)
        if found is None:
            raise BuildError(f"{what}: unable to find user {user}: no matching entries in "
                             "passwd file")
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = find("etc/group", group)
            if g is None:
                raise BuildError(f"{what}: unable to find group {group}: no matching "
                                 "entries in group file")
            gid = g[1]
    return uid, gid


# ---------------------------------------------------------------- sources
@dataclass
class _Entry:
    rel: str                 # path under the copied source ('' for the source itself)
    st: os.stat_result
    link: str = ""           # symlink target
    fd: int = -1             # O_PATH fd of the entry (not a symlink)


class _Source:
    """Where COPY reads: the context (with .dockerignore) or a stage's root."""

    def __init__(self, root: _Root, matcher: Matcher | None, what: str) -> None:
        self.root = root
        self.matcher = matcher
        self.what = what
        self._all: list[str] | None = None
        self._real = os.path.realpath(root.path)

    def excluded(self, rel: str) -> bool:
        return self.matcher is not None and rel not in ("", ".") and self.matcher.excluded(rel)

    def all_paths(self) -> list[str]:
        """Every path in the root (not following symlinks), for globs."""
        if self._all is None:
            out: list[str] = []
            stack = [""]
            while stack:
                rel = stack.pop()
                try:
                    fd = self.root.open(rel or ".", os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    continue
                try:
                    names = sorted(os.listdir(fd))
                    for n in names:
                        p = f"{rel}/{n}" if rel else n
                        out.append(p)
                        try:
                            if stat.S_ISDIR(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode):
                                stack.append(p)
                        except OSError:
                            pass
                finally:
                    os.close(fd)
            self._all = sorted(out)
        return self._all

    def resolve(self, pattern: str) -> list[str]:
        """The source paths a COPY argument names (globs expanded)."""
        p = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if any(c in p for c in "*?["):
            rx = _compile(p)
            hits = [q for q in self.all_paths() if rx.match(q) and not self.excluded(q)]
            if not hits:
                raise BuildError(f"{self.what}: no source files were specified by "
                                 f"{pattern!r}")
            return hits
        if p != "." and self.excluded(p):
            raise BuildError(f'{self.what}: "{pattern}": not found (excluded by '
                             ".dockerignore)")
        try:
            os.close(self.root.open(p, os.O_PATH))
        except OSError as e:
            raise BuildError(f'{self.what}: "{pattern}": not found: {e.strerror}') from None
        return [p]

    def ctx_rel(self, fd: int) -> str:
        """The root-relative path of an open fd (after symlinks were followed)."""
        real = os.readlink(f"/proc/self/fd/{fd}")
        rel = os.path.relpath(real, self._real)
        return "" if rel == "." else rel

    def walk(self, rel: str) -> Iterator[_Entry]:
        """The source `rel` (a top-level symlink followed, inside the root),
        then, for a directory, everything under it (symlinks not followed,
        excluded paths skipped).  Each entry's fd is closed after the next."""
        fd = self.root.open(rel, os.O_PATH)
        st = os.fstat(fd)
        base = self.ctx_rel(fd) if self.matcher is not None else rel
        try:
            yield _Entry("", st, fd=fd)
            if stat.S_ISDIR(st.st_mode):
                yield from self._walk_dir(fd, base, "")
        finally:
            os.close(fd)

    def _walk_dir(self, dfd: int, base: str, rel: str) -> Iterator[_Entry]:
        rd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
        try:
            names = sorted(os.listdir(rd))
        finally:
            os.close(rd)
        for n in names:
            sub = f"{rel}/{n}" if rel else n
            full = f"{base}/{sub}" if base else sub
            st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
            if self.excluded(full) and not (stat.S_ISDIR(st.st_mode) and self.matcher
                                            and self.matcher.has_exclusions):
                continue
            if stat.S_ISLNK(st.st_mode):
                if not self.excluded(full):
                    yield _Entry(sub, st, link=os.readlink(n, dir_fd=dfd))
                continue
            fd = os.open(n, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                if not self.excluded(full):
                    yield _Entry(sub, st, fd=fd)
                if stat.S_ISDIR(st.st_mode):
                    yield from self._walk_dir(fd, base, sub)
            finally:
                os.close(fd)

    def digest(self, rel: str) -> str:
        """Content, mode and type of the source and all under it (no mtimes)."""
        h = hashlib.sha256()
        for e in self.walk(rel):
            m = e.st.st_mode
            h.update(f"{e.rel}\0{stat.S_IFMT(m)}\0{stat.S_IMODE(m):o}\0".encode(
                "utf-8", "surrogateescape"))
            if stat.S_ISLNK(m):
                h.update(e.link.encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(m):
                rfd = os.open(f"/proc/self/fd/{e.fd}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    while True:
                        b = os.read(rfd, 1 << 20)
                        if not b:
                            break
                        h.update(b)
                finally:
                    os.close(rfd)
            h.update(b"\n")
        return h.hexdigest()


# ------------------------------------------------------------------ build
class Builder:
    """One build.  `progress` is a text stream for docker's lines (None: quiet)."""

    def __init__(self, context: str | None, *, dockerfile: str | None = None,
                 dockerfile_text: str | bytes | None = None,
                 tags: Sequence[str] = (), build_args: Mapping[str, str] | None = None,
                 target: str | None = None, no_cache: bool = False, pull: bool = False,
                 network: str = "bridge", labels: Mapping[str, str] | None = None,
                 progress: IO[str] | None = None, store: ImageStore | None = None) -> None:
        from nsprim.images.reference import parse_reference

        if os.geteuid() != 0:
            raise BuildError("building without root goes through the CLI, `nsprim build`, "
                             "which runs the build as root of a user namespace")
        self.store = store or default_store()
        self.context = os.path.abspath(context) if context is not None else None
        self.no_cache = no_cache
        self.pull = pull
        if network not in ("bridge", "default", "host", "none"):
            raise BuildError(f"invalid network mode {network!r}: bridge, host or none")
        self.network = "bridge" if network == "default" else network
        self.labels = dict(labels or {})
        self.out = progress
        self.build_args = dict(build_args or {})
        self.used_args: set[str] = set()
        for k in self.build_args:
            if not _ARG_NAME.fullmatch(k):
                raise BuildError(f"invalid build arg {k!r}: not a variable name")
        self.tags = []
        for t in tags:
            try:
                ref = parse_reference(t)
            except ValueError as e:
                raise BuildError(f"invalid tag {t!r}: {e}") from None
            if ref.digest:
                raise BuildError(f"invalid tag {t!r}: a tag cannot have a digest")
            self.tags.append(str(ref))
        if self.context is not None and not os.path.isdir(self.context):
            raise BuildError(f"unable to prepare context: path {context!r} not found")
        if dockerfile_text is None:
            if self.context is None:
                raise BuildError("no Dockerfile and no context")
            name = dockerfile or "Dockerfile"
            path = name if os.path.isabs(name) else os.path.join(self.context, name)
            try:
                with open(path, "rb") as f:
                    dockerfile_text = f.read((4 << 20) + 1)
            except OSError as e:
                raise BuildError(f"failed to read Dockerfile {name!r}: {e.strerror}") from None
        self.cache_dir = os.path.join(self.store.root, "buildcache")
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        try:
            raw = dockerfile_text.encode() if isinstance(dockerfile_text, str) \
                else dockerfile_text
            self.df: Dockerfile = parse_cached(raw, self.cache_dir)
        except DockerfileError as e:
            raise BuildError(str(e)) from None
        if target is not None and self.df.stage(target) is None:
            raise BuildError(f"failed to reach build target {target} in Dockerfile")
        self.target = self.df.stage(target) if target else self.df.stages[-1]
        assert self.target is not None
        self.matcher: Matcher | None = None
        if self.context is not None:
            ign = os.path.join(self.context, ".dockerignore")
            try:
                with open(ign, "rb") as f:
                    text = f.read((1 << 20) + 1).decode("utf-8", "replace")
                self.matcher = Matcher(parse_ignore(text))
            except FileNotFoundError:
                self.matcher = Matcher([])
            except ValueError as e:
                raise BuildError(f".dockerignore: {e}") from None
        self.ran: list[str] = []       # steps executed (not from the cache)
        self.cached: list[str] = []    # steps taken from the cache
        self._meta = self._meta_args()
        self._states: dict[int, _State] = {}
        self._step = 0
        self._total = 0

    # ------------------------------------------------------------- output
    def _say(self, line: str) -> None:
        if self.out is not None:
            self.out.write(line + "\n")
            self.out.flush()

    # --------------------------------------------------------------- args
    def _meta_args(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.df.meta_args:
            for a in ins.args:
                k, eq, v = a.partition("=")
                if k in self.build_args:
                    out[k] = self.build_args[k]
                    self.used_args.add(k)
                elif eq:
                    out[k] = self._expand(v, out, ins)
                else:
                    out.setdefault(k, "")
        return out

    def _expand_heredoc(self, text: str, env: Mapping[str, str], ins: Instruction) -> str:
        try:
            return expand(text, env, self.df.escape, heredoc=True)
        except DockerfileError as e:
            raise BuildError(f"line {ins.line}: {ins.text()}: {e}") from None

    def _expand(self, word: str, env: Mapping[str, str], ins: Instruction) -> str:
        try:
            return expand(word, env, self.df.escape)
        except DockerfileError as e:
            raise BuildError(f"line {ins.line}: {ins.text()}: {e}") from None

    # ------------------------------------------------------------- stages
    def _needed(self) -> list[Stage]:
        """The stages the target needs, in Dockerfile order."""
        need: set[int] = set()
        todo = [self.target]
        while todo:
            s = todo.pop()
            if s is None or s.index in need:
                continue
            need.add(s.index)
            dep = self.df.stage(s.base.lower())
            if dep is not None and dep.index < s.index:
                todo.append(dep)
            for ins in s.instructions:
                src = ins.flag("from") if ins.cmd in ("COPY", "ADD") else None
                if src:
                    d = self.df.stage(src.lower())
                    if d is not None:
                        todo.append(d)
        return [s for s in self.df.stages if s.index in need]

    def run(self) -> Image:
        from nsprim.images.store import _hex

        stages = self._needed()
        self._total = sum(1 + len(s.instructions) for s in stages)
        with self.store._pull_lock() as pl, ExitStack() as stack:
            self._pl = pl
            self._stack = stack
            state: _State | None = None
            for s in stages:
                state = self._build_stage(s)
                self._states[s.index] = state
            assert state is not None
            if self.labels:
                state.c.setdefault("Labels", {})
                state.c["Labels"] = {**(state.c.get("Labels") or {}), **self.labels}
            unused = sorted(k for k in self.build_args
                            if k not in self.used_args and k not in _BUILTIN_ARGS)
            if unused:
                self._say(f"[Warning] One or more build-args {unused} were not consumed")
            config = state.config
            config_bytes = _config_bytes(config)
            image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
            diff_ids = list(state.diff_ids)
            with self.store._locked():
                self.store._check_layers(diff_ids)
                self.store._write_image(image_id, config_bytes, diff_ids, None, None,
                                        self.store._layer_sizes(diff_ids))
                for t in self.tags:
                    self.store._tag(t, image_id)
        self._say(f"Successfully built {_hex(image_id)[:12]}")
        from nsprim.images.reference import parse_reference

        for t in self.tags:
            self._say(f"Successfully tagged {parse_reference(t).familiar()}")
        return self.store.get(image_id)

    def _begin(self, ins: Instruction) -> str:
        self._step += 1
        where = f"Step {self._step}/{self._total} : {ins.text()}"
        self._say(where)
        return where

    def _fail(self, ins: Instruction, msg: str) -> BuildError:
        return BuildError(f"line {ins.line}, step {self._step}/{self._total} "
                          f"({ins.text()[:80]}): {msg}")

    def _build_stage(self, s: Stage) -> _State:
        ins = s.from_line
        self._begin(ins)
        base = self._expand(s.base, self._meta, ins)
        if s.platform:
            plat = self._expand(s.platform, self._meta, ins)
            self._check_platform(plat, ins)
        state = self._from(base, ins)
        state.stage = s
        triggers = state.c.get("OnBuild") or []
        if triggers and self.df.stage(base.lower()) is None:
            state = self._onbuild(state, ins, [str(t) for t in triggers])
        self._say(f" ---> {_image_id(state.config)[7:19]}")
        for ins in s.instructions:
            self._begin(ins)
            try:
                state = self._instruction(state, ins)
            except BuildError as e:
                raise self._fail(ins, str(e)) from None
            except DockerfileError as e:
                raise self._fail(ins, str(e)) from None
            except OSError as e:
                raise self._fail(ins, f"{e.strerror or e}" + (f": {e.filename}"
                                                               if e.filename else "")) from None
        return state

    def _onbuild(self, state: _State, from_ins: Instruction, triggers: list[str]) -> _State:
        """The base image's ONBUILD triggers, run right after FROM (docker's
        rule); the new image does not inherit them."""
        self._say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
        cfg = json.loads(json.dumps(state.config))
        cfg["config"]["OnBuild"] = None
        state = _State(cfg, _sha(f"{state.key}\nONBUILD cleared"), state.layers, state.args,
                       state.stage)
        for t in triggers:
            try:
                parsed = parse_cached(f"FROM scratch\n{t}\n".encode(), self.cache_dir,
                                      "ONBUILD trigger")
                ins = parsed.stages[0].instructions[0]
            except (DockerfileError, IndexError) as e:
                raise self._fail(from_ins, f"bad ONBUILD trigger {t!r}: {e}") from None
            ins = Instruction(ins.cmd, ins.args, ins.flags, ins.json, ins.original,
                              from_ins.line, ins.heredocs, ins.sub_cmd)
            try:
                state = self._instruction(state, ins)
            except (BuildError, DockerfileError) as e:
                raise self._fail(from_ins, f"ONBUILD {t}: {e}") from None
        return state

    def _check_platform(self, plat: str, ins: Instruction) -> None:
        from nsprim.images.registry import host_platform

        os_, arch, _variant = host_platform()
        parts = plat.split("/")
        if len(parts) < 2 or parts[0] != os_ or parts[1] != arch:
            raise self._fail(ins, f"platform {plat!r} does not match this host "
                             f"({os_}/{arch}); nsprim builds for the host's platform only")

    def _from(self, base: str, ins: Instruction) -> _State:
        if base == "scratch":
            from nsprim.images.registry import host_platform

            os_, arch, _ = host_platform()
            cfg: dict[str, Any] = {"architecture": arch, "os": os_,
                                   "config": {"Env": [f"PATH={_DEFAULT_PATH}"]},
                                   "rootfs": {"type": "layers", "diff_ids": []},
                                   "history": []}
            return _State(cfg, _sha("scratch"), [])
        stage = self.df.stage(base.lower())
        if stage is not None and stage.index in self._states:
            prev = self._states[stage.index]
            return _State(json.loads(json.dumps(prev.config)), prev.key, list(prev.layers))
        img: Image | None = None
        if not self.pull:
            try:
                img = self.store.get(base)
            except ImageNotFound:
                img = None
        if img is None:
            try:
                img = self.store.pull(base)
            except (OSError, ValueError, LookupError) as e:
                raise self._fail(ins, f"{base}: {' '.join(str(e).split())}") from None
        for d in img.diff_ids:
            self._pl.protect(d)
        cfg = json.loads(json.dumps(img.config))
        cfg.pop("container_config", None)
        cfg.pop("container", None)
        cfg.setdefault("config", {})
        cfg.setdefault("history", [])
        cfg["rootfs"] = {"type": "layers", "diff_ids": list(img.diff_ids)}
        return _State(cfg, _sha("image " + img.id), list(img.layers))

    # ------------------------------------------------------ instructions
    def _instruction(self, st: _State, ins: Instruction) -> _State:
        cmd = ins.cmd
        env = st.subst_env()
        if cmd == "ARG":
            return self._arg(st, ins)
        if cmd in EXPANDED and cmd not in ("ENV", "LABEL", "ONBUILD"):
            words = [self._expand(a, env, ins) for a in ins.args]
        else:
            words = list(ins.args)
        if cmd == "RUN":
            return self._run(st, ins)
        if cmd in ("COPY", "ADD"):
            return self._copy(st, ins, words)
        new = json.loads(json.dumps(st.config))
        cmd_before = any(i.cmd == "CMD" for i in (st.stage.instructions if st.stage else [])
                         if i.line < ins.line)
        desc = apply_metadata(new, ins, words, {**st.args, **st.env()},
                              lambda w, e: self._expand(w, e, ins), cmd_before)
        c = new["config"]
        key = _sha(f"{st.key}\n{cmd}\n{json.dumps(c, sort_keys=True)}")
        return self._cached_or(st, key, ins, lambda: self._config_step(new, desc))

    def _config_step(self, config: dict[str, Any], desc: str) -> dict[str, Any]:
        config.setdefault("history", []).append(
            {"created": _now(), "created_by": f"/bin/sh -c #(nop) {desc}",
             "empty_layer": True})
        config["created"] = config["history"][-1]["created"]
        return config

    def _arg(self, st: _State, ins: Instruction) -> _State:
        args = dict(st.args)
        for a in ins.args:
            k, eq, v = a.partition("=")
            if not _ARG_NAME.fullmatch(k):
                raise BuildError(f"invalid ARG name {k!r}")
            if k in self.build_args:
                args[k] = self.build_args[k]
                self.used_args.add(k)
            elif eq:
                args[k] = self._expand(v, {**args, **st.env()}, ins)
            elif k in self._meta:
                args[k] = self._meta[k]
            else:
                args[k] = ""
        # docker: the ARG step itself is cached whatever the value; steps that
        # see the value (RUN's environment, substitutions) carry it in their keys
        new = _State(st.config, _sha(f"{st.key}\nARG {' '.join(sorted(args))}"),
                     st.layers, args, st.stage)
        self.cached.append(ins.text())
        self._say(f" ---> {_image_id(st.config)[7:19]}")
        return new

    def _cached_or(self, st: _State, key: str, ins: Instruction,
                   make: Callable[[], dict[str, Any]]) -> _State:
        path = os.path.join(self.cache_dir, key + ".json")
        config: dict[str, Any] | None = None
        if not self.no_cache:
            try:
                with open(path, "rb") as f:
                    loaded = json.loads(f.read(32 << 20))
                config = loaded if isinstance(loaded, dict) else None
                ids = config["rootfs"]["diff_ids"] if config else []
                for d in ids:
                    self._pl.protect(d)
                if not all(os.path.isdir(self.store.layer_dir(d)) for d in ids):
                    config = None
            except (OSError, ValueError, KeyError, TypeError):
                config = None
        if config is not None:
            self.cached.append(ins.text())
            self._say(" ---> Using cache")
        else:
            config = make()
            self.ran.append(ins.text())
            from nsprim.state import atomic_write

            atomic_write(path, _config_bytes(config), 0o600)
        layers = [self.store.layer_dir(d) for d in config["rootfs"]["diff_ids"]]
        self._say(f" ---> {_image_id(config)[7:19]}")
        return _State(config, key, layers, st.args, st.stage)

    # ------------------------------------------------------------- layers
    def _overlay(self, st: _State) -> Any:
        """A writable overlay of the stage's layers (and the mount points a
        container needs, in a lower layer of their own, as docker's init layer)."""
        from nsprim.rootfs import OverlayRootfs

        init = self._pl.new_dir()
        os.chmod(init, 0o755)
        for d in ("dev", "proc", "sys", "etc"):
            if not any(os.path.lexists(os.path.join(layer, d)) for layer in st.layers):
                os.mkdir(os.path.join(init, d), 0o755)
        for fname in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
            if not any(os.path.lexists(os.path.join(layer, fname)) for layer in st.layers):
                if os.path.isdir(os.path.join(init, "etc")) or not any(
                        os.path.islink(os.path.join(layer, "etc")) for layer in st.layers):
                    os.makedirs(os.path.join(init, "etc"), 0o755, exist_ok=True)
                    with open(os.path.join(init, fname), "w"):
                        pass
        ov = OverlayRootfs([*st.layers, init])
        ov.mount()
        return ov

    def _commit(self, st: _State, upper: str, created_by: str,
                config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The upper directory -> a layer in the store; the new config."""
        from nsprim.images.layer import extract_layer
        from nsprim.images.layertar import HashingWriter, write_layer_tar
        from nsprim.images.store import _hex

        tmpdir = self.store._tmp()
        fd, tarpath = tempfile.mkstemp(prefix=os.path.basename(self._pl.path)[:-5] + ".",
                                       suffix=".tar", dir=tmpdir)
        try:
            with os.fdopen(fd, "wb") as f:
                hw = HashingWriter(f)
                write_layer_tar(upper, hw)
            diff_id = hw.digest()
            self._pl.protect(diff_id)
            final = self.store.layer_dir(diff_id)
            from nsprim.images.archive import compress_layer

            if not os.path.exists(os.path.join(self.store.root, "blobcache",
                                               _hex(diff_id) + ".json")):
                with open(tarpath, "rb") as f:
                    compress_layer(self.store, f, diff_id)  # for push: done once, here
            if not os.path.isdir(final):
                dest = self._pl.new_dir()
                os.chmod(dest, 0o755)
                with open(tarpath, "rb") as f:
                    got, _n = extract_layer(f, dest)
                if got != diff_id:
                    raise BuildError(f"layer {diff_id} changed while it was stored")
                try:
                    os.rename(dest, final)
                except OSError:
                    if not os.path.isdir(final):
                        raise
                    shutil.rmtree(dest, ignore_errors=True)
        finally:
            try:
                os.unlink(tarpath)
            except FileNotFoundError:
                pass
        new = json.loads(json.dumps(config if config is not None else st.config))
        new.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        new.setdefault("history", []).append({"created": _now(), "created_by": created_by})
        new["created"] = new["history"][-1]["created"]
        assert isinstance(new, dict)
        return new

    def _ensure_workdir(self, root: _Root, st: _State) -> None:
        wd = st.c.get("WorkingDir")
        if wd and wd != "/":
            os.close(root.dir(wd))

    # ---------------------------------------------------------------- RUN
    def _run(self, st: _State, ins: Instruction) -> _State:
        c = st.c
        shell = list(c.get("Shell") or _DEFAULT_SHELL)
        if ins.json:
            argv = list(ins.args)
        elif ins.heredocs and len(ins.args) == 1 and ins.args[0].lstrip("<-").strip("'\"") \
                == ins.heredocs[0].name:
            body = ins.heredocs[0].content
            argv = [body.split("\n", 1)[0][2:].strip(), "-c", body] \
                if body.startswith("#!") else shell + [body]
        elif ins.heredocs:
            argv = shell + [ins.original.split(None, 1)[1]]
        else:
            argv = shell + [" ".join(ins.args)]
        env = st.env()
        env.setdefault("PATH", _DEFAULT_PATH)
        args = {k: v for k, v in st.args.items() if k not in env}
        run_env = {**args, **env}
        for f in ins.flags:
            if not f.startswith(("--network=",)):
                raise BuildError(f"unknown flag: {f.split('=')[0]}")
        network = ins.flag("network") or self.network
        if network not in ("default", "none", "host", "bridge"):
            raise BuildError(f"invalid --network {network!r}")
        if network == "default":
            network = self.network
        arg_part = " ".join(f"{k}={v}" for k, v in sorted(args.items()))
        created_by = (f"|{len(args)} {arg_part} " if args else "") + " ".join(argv)
        # as docker's, the key leaves the network mode out
        key = _sha(f"{st.key}\nRUN\n{json.dumps(argv)}\n"
                   f"{json.dumps(sorted(args.items()))}")

        def make() -> dict[str, Any]:
            ov = self._overlay(st)
            try:
                root = _Root(ov.path)
                try:
                    self._ensure_workdir(root, st)
                finally:
                    root.close()
                self._exec(ov.path, argv, run_env, c, network)
                ov.unmount()
                return self._commit(st, ov.upper, created_by)
            finally:
                ov.close()
        return self._cached_or(st, key, ins, make)

    def _exec(self, rootfs: str, argv: list[str], env: dict[str, str], c: dict[str, Any],
              network: str) -> None:
        from nsprim.container import Container
        from nsprim.rootless import in_user_namespace

        if network == "bridge" and in_user_namespace():
            # rootless build (nsprim.rootless.run_as_userns_root): the build's
            # own network namespace, which pasta connects to the host's
            network = "host"
        cid = os.urandom(32).hex()
        self._say(f" ---> Running in {cid[:12]}")
        quiet = self.out is None
        log = tempfile.TemporaryFile() if quiet else None
        out: Any = log if log is not None else None
        try:
            con = Container(argv, rootfs=rootfs, env=env, cwd=c.get("WorkingDir") or "/",
                            user=c.get("User") or None, network=network, stdin=None,
                            stdout=out, stderr=out, container_id=None)
            if self.out is not None:
                sys.stdout.flush()
            with con:
                rc = con.wait()
        except OSError as e:
            raise BuildError(f"{' '.join(str(e).split())}") from None
        finally:
            if log is not None and sys.exc_info()[0] is not None:
                pass
        if rc != 0:
            if log is not None:
                log.seek(0)
                sys.stderr.write(log.read(64 << 10).decode("utf-8", "replace"))
            code = rc if rc >= 0 else 128 - rc
            raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: "
                             f"{code}")
        if log is not None:
            log.close()
        self._say(f"Removing intermediate container {cid[:12]}")

    # ----------------------------------------------------------- COPY/ADD
    def _copy(self, st: _State, ins: Instruction, words: list[str]) -> _State:
        known = {"from", "chown", "chmod", "link", "keep-git-dir", "checksum"}
        for f in ins.flags:
            if f[2:].partition("=")[0] not in known:
                raise BuildError(f"unknown flag: {f.split('=')[0]}")
        env = st.subst_env()
        from_ = ins.flag("from")
        chown = ins.flag("chown")
        chmod = ins.flag("chmod")
        if from_ is not None:
            from_ = self._expand(from_, env, ins)
        if chown is not None:
            chown = self._expand(chown, env, ins)
        mode: int | None = None
        if chmod is not None:
            chmod = self._expand(chmod, env, ins)
            try:
                mode = int(chmod, 8)
                if mode > 0o7777:
                    raise ValueError
            except ValueError:
                raise BuildError(f"invalid chmod parameter {chmod!r}") from None
        if len(words) < 2:
            raise BuildError(f"{ins.cmd} requires at least two arguments")
        heredocs = {h.name: h.content for h in ins.heredocs}
        srcs, dest = words[:-1], words[-1]
        if from_ is not None and ins.cmd == "ADD":
            pass
        for s in srcs:
            if s.startswith(("http://", "https://", "git@")) and ins.cmd == "ADD":
                raise BuildError(f"ADD of a URL is not supported by nsprim: {s}")
        with ExitStack() as stack:
            src, src_key = self._source(from_, stack, ins)
            plan: list[tuple[str, str | None]] = []   # (source path, heredoc content)
            h = hashlib.sha256()
            for s, s_raw in zip(srcs, ins.args, strict=False):
                name = s[2:].lstrip("-").strip("'\"") if s.startswith("<<") else None
                if name is not None and name in heredocs:
                    content = heredocs[name]
                    if not s_raw[2:].lstrip("-").startswith(("'", '"')):
                        # an unquoted delimiter: variables are expanded (BuildKit)
                        content = self._expand_heredoc(content, env, ins)
                    plan.append((name, content))
                    h.update(f"heredoc {name}\0{content}\n".encode())
                    continue
                if src is None:
                    raise BuildError(f"{ins.cmd} needs a build context (none was given)")
                for p in src.resolve(s):
                    plan.append((p, None))
                    h.update(f"{p}\0{src.digest(p)}\n".encode("utf-8", "surrogateescape"))
            if len(plan) > 1 and not dest.endswith("/"):
                raise BuildError(f"When using {ins.cmd} with more than one source file, the "
                                 "destination must be a directory and end with a /")
            key = _sha(f"{st.key}\n{ins.cmd} from={src_key} chown={chown} chmod={chmod} "
                       f"dest={dest}\n{h.hexdigest()}")
            created_by = f"/bin/sh -c #({ins.cmd.lower()}) " + " ".join(words)

            def make() -> dict[str, Any]:
                ov = self._overlay(st)
                try:
                    root = _Root(ov.path)
                    try:
                        self._ensure_workdir(root, st)
                        ids = _lookup_ids(root, chown, "--chown") if chown else (0, 0)
                        d = dest if dest.startswith("/") else posixpath.join(
                            st.c.get("WorkingDir") or "/", dest)
                        for p, content in plan:
                            if content is not None:
                                self._write_heredoc(root, p, content, d, ids, mode)
                            else:
                                assert src is not None
                                self._copy_one(src, p, root, d, ids, mode, ins.cmd == "ADD",
                                               multi=len(plan) > 1 or dest.endswith("/"))
                    finally:
                        root.close()
                    ov.unmount()
                    return self._commit(st, ov.upper, created_by)
                finally:
                    ov.close()
            return self._cached_or(st, key, ins, make)

    def _source(self, from_: str | None, stack: ExitStack, ins: Instruction
                ) -> tuple[_Source | None, str]:
        if from_ is None:
            if self.context is None:
                return None, "none"
            root = _Root(self.context)
            stack.callback(root.close)
            return _Source(root, self.matcher, "context"), "context"
        stage = self.df.stage(from_.lower())
        if stage is not None:
            if stage.index not in self._states:
                raise BuildError(f"--from={from_}: the stage is not built before this one")
            st = self._states[stage.index]
            layers, key = st.layers, st.key
        else:
            try:
                img = self.store.get(from_)
            except ImageNotFound:
                try:
                    img = self.store.pull(from_)
                except (OSError, ValueError, LookupError) as e:
                    raise BuildError(f"--from={from_}: {' '.join(str(e).split())}") from None
            for d in img.diff_ids:
                self._pl.protect(d)
            layers, key = img.layers, img.id
        from nsprim.rootfs import OverlayRootfs

        if not layers:
            empty = self._pl.new_dir()
            layers = [empty]
        ov = OverlayRootfs(layers, readonly=True)
        ov.mount()
        stack.callback(ov.close)
        root = _Root(ov.path)
        stack.callback(root.close)
        return _Source(root, None, f"--from={from_}"), key

    def _write_heredoc(self, root: _Root, name: str, content: str, dest: str,
                       ids: tuple[int, int], mode: int | None) -> None:
        target = posixpath.join(dest, name) if dest.endswith("/") else dest
        parent, base = posixpath.split(target)
        pfd = root.dir(parent)
        try:
            _clear(pfd, base, False)
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644, dir_fd=pfd)
            try:
                os.write(fd, content.encode())
                os.fchown(fd, *ids)
                os.fchmod(fd, mode if mode is not None else 0o644)
            finally:
                os.close(fd)
        finally:
            os.close(pfd)

    def _copy_one(self, src: _Source, path: str, root: _Root, dest: str,
                  ids: tuple[int, int], mode: int | None, is_add: bool, multi: bool) -> None:
        fd = src.root.open(path, os.O_PATH)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if is_add and stat.S_ISREG(st.st_mode) and self._is_archive(src, path):
            ddir = root.dir(dest)
            try:
                self._extract(src, path, ddir, ids if ids != (0, 0) else None)
            finally:
                os.close(ddir)
            return
        if stat.S_ISDIR(st.st_mode):
            target = dest
        elif multi or dest.endswith("/") or self._is_dir(root, dest):
            target = posixpath.join(dest, posixpath.basename(path.rstrip("/")) or ".")
        else:
            target = dest
        for e in src.walk(path):
            t = posixpath.normpath("/" + (posixpath.join(target, e.rel) if e.rel else target))
            if not e.rel and stat.S_ISDIR(e.st.st_mode):
                # a directory's content is copied; the destination directory
                # keeps its own mode, or is made 0755 (docker's rule)
                os.close(root.dir(t))
                if ids != (0, 0):
                    dfd = root.open(t, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fchown(dfd, *ids)
                    finally:
                        os.close(dfd)
                continue
            parent, base = posixpath.split(t)
            if not base:  # the root itself
                continue
            pfd = root.dir(parent)
            try:
                self._put(e, pfd, base, ids, mode)
            finally:
                os.close(pfd)

    @staticmethod
    def _is_dir(root: _Root, path: str) -> bool:
        try:
            fd = root.open(path, os.O_PATH)
        except OSError:
            return False
        try:
            return stat.S_ISDIR(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    @staticmethod
    def _put(e: _Entry, pfd: int, base: str, ids: tuple[int, int], mode: int | None) -> None:
        m = e.st.st_mode
        perm = mode if mode is not None else stat.S_IMODE(m)
        if stat.S_ISDIR(m):
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    _clear(pfd, base, False)
                    os.mkdir(base, perm, dir_fd=pfd)
            except FileNotFoundError:
                os.mkdir(base, perm, dir_fd=pfd)
            dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=pfd)
            try:
                os.fchown(dfd, *ids)
                os.fchmod(dfd, perm)
            finally:
                os.close(dfd)
            return
        _clear(pfd, base, True)
        if stat.S_ISLNK(m):
            os.symlink(e.link, base, dir_fd=pfd)
            os.chown(base, *ids, dir_fd=pfd, follow_symlinks=False)
            return
        if not stat.S_ISREG(m):
            return  # devices, fifos and sockets of a context are not copied
        rfd = os.open(f"/proc/self/fd/{e.fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            wfd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                try:
                    while os.copy_file_range(rfd, wfd, 1 << 30) > 0:
                        pass
                except OSError:
                    pass  # another filesystem: copied below
                while True:  # whatever copy_file_range did not do
                    b = os.read(rfd, 1 << 20)
                    if not b:
                        break
                    os.write(wfd, b)
                os.fchown(wfd, *ids)
                os.fchmod(wfd, perm)
            finally:
                os.close(wfd)
        finally:
            os.close(rfd)

    @staticmethod
    def _is_archive(src: _Source, path: str) -> bool:
        fd = src.root.open(path, os.O_RDONLY)
        try:
            head = os.pread(fd, 512, 0)
        finally:
            os.close(fd)
        if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
            return True
        return len(head) >= 262 and head[257:262] == b"ustar"

    def _extract(self, src: _Source, path: str, ddir: int, ids: tuple[int, int] | None
                 ) -> None:
        """ADD of a local archive: extracted with the destination as its root
        (``../`` names and links pointing out stay inside it), bounded as a
        pulled layer is: NSPRIM_LAYER_MAX_RATIO times its size (at least
        1 MiB), and NSPRIM_IMAGE_MAX_SIZE."""
        import bz2
        import lzma

        from nsprim.images.layer import Bounded, LayerError, extract_layer, open_layer_stream

        fd = src.root.open(path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        limit = min(self.store.max_size, self.store.max_ratio * max(size, 1 << 20))
        with os.fdopen(fd, "rb") as f:
            head = f.read(6)
            f.seek(0)
            stream: Any
            if head.startswith(b"BZh"):
                stream = bz2.BZ2File(f)
            elif head.startswith(b"\xfd7zXZ\x00"):
                stream = lzma.LZMAFile(f)
            else:
                stream, _kind = open_layer_stream(f)
            bounded = Bounded(stream, limit, lambda n: f"expands to more than {n} bytes "
                              "(NSPRIM_LAYER_MAX_RATIO, NSPRIM_IMAGE_MAX_SIZE)")
            try:
                extract_layer(bounded, f"/proc/self/fd/{ddir}", whiteouts=False)
            except LayerError as e:
                raise BuildError(f"ADD {path}: {e}") from None
            except OSError as e:  # a hardlink to a name the archive does not hold
                raise BuildError(f"ADD {path}: cannot extract: {e.strerror}: "
                                 f"{e.filename}") from None
        if ids is not None:
            for dirpath, dirnames, filenames in os.walk(f"/proc/self/fd/{ddir}"):
                for n in dirnames + filenames:
                    os.chown(os.path.join(dirpath, n), *ids, follow_symlinks=False)


def _clear(pfd: int, base: str, dirs_too: bool) -> None:
    """Remove a non-directory `base` (or, with dirs_too, any) in `pfd`."""
    from nsprim.images.layer import _remove

    try:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if dirs_too:
            _remove(pfd, base)
        return
    os.unlink(base, dir_fd=pfd)


def build(context: str | None, *, dockerfile: str | None = None,
          dockerfile_text: str | bytes | None = None, tags: Sequence[str] = (),
          build_args: Mapping[str, str] | None = None, target: str | None = None,
          no_cache: bool = False, pull: bool = False, network: str = "bridge",
          labels: Mapping[str, str] | None = None, progress: IO[str] | None = None,
          store: ImageStore | None = None) -> Image:
    """Build an image from `context` (a directory; None with `dockerfile_text`
    for a build without context).  Raises BuildError (one line)."""
    b = Builder(context, dockerfile=dockerfile, dockerfile_text=dockerfile_text, tags=tags,
                build_args=build_args, target=target, no_cache=no_cache, pull=pull,
                network=network, labels=labels, progress=progress, store=store)
    return b.run()


def prune_cache(store: ImageStore | None = None) -> tuple[int, list[str]]:
    """Forget every cached step, and free the layers no image uses.
    Returns (records removed, layers deleted)."""
    store = store or default_store()
    cache = os.path.join(store.root, "buildcache")
    n = 0
    with store._locked():
        try:
            names = os.listdir(cache)
        except FileNotFoundError:
            names = []
        for name in names:
            try:
                os.unlink(os.path.join(cache, name))
                n += 1
            except FileNotFoundError:
                pass
        removed = store._gc()
    return n, removed

