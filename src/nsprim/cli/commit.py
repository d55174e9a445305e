"""nsprim commit [-a AUTHOR] [-c CHANGE]... [-m MESSAGE] [-p|--pause=false] CONTAINER
[REPOSITORY[:TAG]]: a new image from a container's changes.

``-c/--change`` applies Dockerfile instructions to the new image's config
(docker's list: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME, WORKDIR), parsed by the Dockerfile parser of
``build`` and applied by the same code (``images.build.apply_metadata``);
any other instruction is refused as docker refuses it (``run is not a valid
change command``) before anything is read or written.

The new image's config is the container's (its command, entrypoint, env,
user, workdir, labels and ports, over its image's: docker's merge), then the
``--change`` instructions.  The container layer (the overlay's upper dir)
becomes one more layer on top of its image's: overlay whiteouts (0/0 character devices) become OCI
``.wh.NAME`` files and opaque directories ``.wh..wh..opq``.  The layer and a
config (the image's, with the new diff_id and a history entry) are written
as a ``docker save`` directory and loaded through the image store's own
checked ``load`` path: layers the store has are not read again.  A running
container is paused (cgroup freezer) while its layer is read, as docker does.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import tempfile
import time
from typing import IO, Any

from nsprim.cli import _oneline

EXIT_ERROR = 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("commit", help="create a new image from a container's changes")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="apply a Dockerfile instruction to the image (repeatable)")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-p", "--pause", default="true", nargs="?", const="true",
                   metavar="true|false", help="pause the container while committing")
    p.add_argument("container")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")


class _Hashing(io.RawIOBase):
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.h.update(data)
        self.f.write(data)
        return len(data)


def layer_tar(upper: str, out: IO[bytes]) -> str:
    """Write the container layer `upper` as an OCI layer tar to `out`;
    returns its diff_id."""
    from nsprim.archive import _FileReader

    hashed = _Hashing(out)
    with tarfile.open(fileobj=hashed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def walk(rel: str, dfd: int) -> None:
            for name in sorted(os.listdir(dfd)):
                path = f"{rel}{name}"
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                ti = tarfile.TarInfo(path)
                ti.mode, ti.uid, ti.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                ti.mtime = int(st.st_mtime)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # an overlay whiteout
                    wh = tarfile.TarInfo(f"{rel}.wh.{name}")
                    wh.mtime = ti.mtime
                    tar.addfile(wh)
                elif stat.S_ISDIR(st.st_mode):
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                                  os.O_CLOEXEC, dir_fd=dfd)
                    try:
                        try:
                            opaque = os.getxattr(f"/proc/self/fd/{sub}",
                                                 "trusted.overlay.opaque") == b"y"
                        except OSError:
                            opaque = False
                        if opaque:
                            tar.addfile(tarfile.TarInfo(f"{path}/.wh..wh..opq"))
                        walk(path + "/", sub)
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(st.st_mode):
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                                 os.O_CLOEXEC, dir_fd=dfd)
                    try:
                        ti.size = os.fstat(fd).st_size
                        tar.addfile(ti, io.BufferedReader(_FileReader(fd, ti.size)))
                    finally:
                        os.close(fd)
                elif stat.S_ISLNK(st.st_mode):
                    ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
                    tar.addfile(ti)
                elif stat.S_ISFIFO(st.st_mode):
                    ti.type = tarfile.FIFOTYPE
                    tar.addfile(ti)
                # device nodes and sockets are left out

        top = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            walk("", top)
        finally:
            os.close(top)
    return "sha256:" + hashed.h.hexdigest()


#: the instructions ``--change`` takes (docker's list)
VALID_CHANGES = frozenset({"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL",
                           "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"})
MAX_CHANGES = 64 * 1024  # bytes of --change text: a Dockerfile's worth is far less


def apply_changes(config: dict[str, Any], changes: list[str]) -> None:
    """Apply docker's ``commit --change`` instructions to the image config
    `config` (changed in place).  ValueError in docker's words for an
    instruction that is not a change or does not parse."""
    from nsprim.images.build import BuildError, apply_metadata, env_of
    from nsprim.images.dockerfile import EXPANDED, DockerfileError, expand, parse

    text = "\n".join(changes)
    if not text.strip():
        return
    if len(text) > MAX_CHANGES:
        raise ValueError(f"changes: larger than {MAX_CHANGES} bytes")
    try:
        df = parse("FROM scratch\n" + text, "change")
    except DockerfileError as e:
        where = re.match(r"change: line (\d+): ", str(e))
        msg = re.sub(r"^change: (line \d+: )?", "", str(e))
        m = re.match(r"unknown instruction: (\S+)", msg)
        if m is None and where is not None:  # docker names a wrong instruction first
            lines = ("FROM scratch\n" + text).splitlines()
            n = int(where.group(1))
            words = lines[n - 1].split(None, 1) if 0 < n <= len(lines) else []
            if words and words[0].upper() not in VALID_CHANGES:
                raise ValueError(f"{words[0].lower()} is not a valid change command") from None
        raise ValueError(f"{m.group(1).lower()} is not a valid change command" if m
                         else msg) from None
    inss = [s.from_line for s in df.stages[1:]] + [i for s in df.stages for i in s.instructions]
    inss.sort(key=lambda i: i.line)
    for ins in inss:
        if ins.cmd not in VALID_CHANGES:
            raise ValueError(f"{ins.cmd.lower()} is not a valid change command")
    c = config.setdefault("config", {})
    cmd_before = False

    def expand_word(w: str, env: Any) -> str:
        try:
            return expand(w, env, df.escape)
        except DockerfileError as e:
            raise ValueError(f"{ins.text()}: {e}") from None

    for ins in inss:
        env = env_of(c)
        words = [expand_word(a, env) for a in ins.args] \
            if ins.cmd in EXPANDED and ins.cmd not in ("ENV", "LABEL", "ONBUILD") \
            else list(ins.args)
        try:
            apply_metadata(config, ins, words, env, expand_word, cmd_before)
        except BuildError as e:
            raise ValueError(str(e)) from None
        c = config["config"]
        cmd_before = cmd_before or ins.cmd == "CMD"


#: the fields of a container's Config that an image's config keeps
IMAGE_FIELDS = ("User", "ExposedPorts", "Env", "Cmd", "Volumes", "WorkingDir", "Entrypoint",
                "OnBuild", "Labels", "StopSignal", "Healthcheck")


def container_config(spec: Any, image_config: dict[str, Any]) -> dict[str, Any]:
    """The config a commit starts from, as docker's: the container's own
    (its command, entrypoint, env, user, workdir, labels, ports: what
    inspect shows as ``Config``) over the image's."""
    from nsprim.dockerfmt.shapes import merged_config

    merged = merged_config(spec, image_config)
    out = dict(image_config.get("config") or {}) \
        if isinstance(image_config.get("config"), dict) else {}
    for key in IMAGE_FIELDS:
        if key in merged:
            out[key] = merged[key]
    if not out.get("Labels"):
        out.pop("Labels", None)
    return out


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def commit(rec: Any, repository: str | None, author: str = "", message: str = "",
           pause: bool = True, changes: list[str] | None = None) -> Any:
    """The new image of `rec`'s changes (an Image of the store), with the
    ``--change`` instructions `changes` applied to its config (ValueError,
    before anything is read or written, for a bad one)."""
    from nsprim.cgroup import Cgroup
    from nsprim.images.store import default_store

    spec = rec.spec
    if not spec.image_id:
        raise LookupError(f"container {rec.id} has no image to commit onto (--rootfs)")
    store = default_store()
    base = store.get(spec.image_id)
    upper = os.path.join(rec.dir, "upper")
    if not os.path.isdir(upper):
        raise LookupError(f"container {rec.id} has no container layer")
    config = json.loads(json.dumps(base.config))
    config["config"] = container_config(spec, base.config)
    apply_changes(config, list(changes or []))
    cg = None
    if pause and rec.running and not rec.state.get("paused"):
        try:
            cg = Cgroup.open(rec.id[:16])
            cg.freeze()
        except OSError:
            cg = None
    from nsprim.state import state_root

    work = tempfile.mkdtemp(prefix="commit-", dir=state_root())  # private (0700)
    try:
        try:
            with open(os.path.join(work, "layer.tar"), "wb") as f:
                diff_id = layer_tar(upper, f)
        finally:
            if cg is not None:
                cg.thaw()
                cg.close()
        config["created"] = _stamp()
        if author:
            config["author"] = author
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        config["rootfs"]["diff_ids"] = list(base.diff_ids) + [diff_id]
        hist = {"created": config["created"], "created_by": f"nsprim commit {rec.id[:12]}"}
        if message:
            hist["comment"] = message
        if author:
            hist["author"] = author
        config["history"] = list(config.get("history") or []) + [hist]
        data = json.dumps(config, separators=(",", ":")).encode()
        with open(os.path.join(work, "config.json"), "wb") as f:
            f.write(data)
        layers = []
        for i in range(len(base.diff_ids)):  # the store has them: never read
            p = f"base-{i}.tar"
            open(os.path.join(work, p), "wb").close()
            layers.append(p)
        layers.append("layer.tar")
        tags = [repository if ":" in repository.rsplit("/", 1)[-1] else repository + ":latest"
                ] if repository else []
        with open(os.path.join(work, "manifest.json"), "w") as f:
            json.dump([{"Config": "config.json", "RepoTags": tags, "Layers": layers}], f)
        (img,) = store._load(work)  # the store's checks, without a "load" event
        from nsprim import events

        events.emit(rec.id, "commit", rec.config, comment=message)  # docker's event
        if tags:
            store._event("tag", img.id, tags[0])
        return img
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def cmd_commit(a: argparse.Namespace) -> int:
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import find

    if a.pause not in ("true", "false", "1", "0"):
        print(f"nsprim: invalid --pause {a.pause!r}: true or false", file=sys.stderr)
        return 125
    if a.repository is not None:
        from nsprim.images.reference import parse_reference

        try:
            parse_reference(a.repository)
        except ConfigError as e:
            print(f"nsprim: {_oneline(e)}", file=sys.stderr)
            return 125
    try:
        apply_changes({"config": {}}, a.change)  # checked before anything is looked at
    except ValueError as e:
        print(f"Error response from daemon: {_oneline(e)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        rec = find(a.container)
    except LookupError as e:
        print(f"Error response from daemon: {_oneline(e)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        img = commit(rec, a.repository, a.author, a.message, a.pause in ("true", "1"),
                     a.change)
    except (LookupError, OSError, ValueError) as e:
        print(f"Error response from daemon: {_oneline(e)}", file=sys.stderr)
        return EXIT_ERROR
    print(img.id)
    return 0
