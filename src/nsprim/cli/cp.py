"""nsprim cp: files between a container and the host, docker's rules.

    nsprim cp [-a] [-L] CONTAINER:SRC DEST|-
    nsprim cp [-a] [-L] SRC|- CONTAINER:DEST

A file goes to DEST (a file, replaced, or into DEST if it is a directory);
a directory becomes DEST if DEST does not exist, else goes into it (only
its contents with ``SRC/.``).  ``-`` is a tar on stdout (its top entry the
basename of SRC) or on stdin (extracted into the directory DEST).  ``-a``
keeps owners (else files in the container are root's, on the host the
caller's, and lose their setuid/setgid bits there); ``-L`` follows SRC if it
is a symlink.  Paths in the container resolve inside its root
(:mod:`nsprim.archive`).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from typing import Any

from nsprim.cli import _oneline

EXIT_ERROR = 1


def add_parser(sub: Any) -> None:
    cp = sub.add_parser("cp", help="copy files between a container and the host",
                        description="Copy files between a container and the host.")
    cp.add_argument("-a", "--archive", action="store_true",
                    help="archive mode: keep uid/gid")
    cp.add_argument("-L", "--follow-link", action="store_true",
                    help="follow a symlink in SRC")
    cp.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    cp.add_argument("src", metavar="SRC")
    cp.add_argument("dest", metavar="DEST")


def _split(arg: str) -> tuple[str | None, str]:
    """(container, path) of a cp argument; container None for a local path
    (docker's rule: an absolute or ./ path is local, else NAME:PATH)."""
    if arg == "-" or arg.startswith("/") or arg.startswith("."):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep or not name:
        return None, arg
    return name, path or "/"


def _error(msg: str) -> int:
    print(f"Error response from daemon: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _local_error(msg: str) -> int:
    print(f"Error: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _contents(path: str) -> bool:
    return path.endswith("/.") or path == "."


def _wants_dir(path: str) -> bool:
    return path.endswith("/") or _contents(path)


def cmd_cp(a: argparse.Namespace) -> int:
    from nsprim.archive import ArchiveError

    src_c, src = _split(a.src)
    dst_c, dst = _split(a.dest)
    if src_c is None and dst_c is None:
        return _local_error("must specify at least one container source")
    if src_c is not None and dst_c is not None:
        return _local_error("copying between containers is not supported")
    if not src or not dst:
        return _local_error("source and destination paths must not be empty")
    from nsprim.lifecycle import find

    try:
        rec = find(src_c or dst_c or "")
    except LookupError as e:
        return _error(_oneline(e))
    try:
        if src_c is not None:
            return _from_container(a, rec, src_c, src, dst)
        return _to_container(a, rec, dst_c or "", src, dst)
    except ArchiveError as e:
        return _error(_oneline(e))
    except OSError as e:
        return _error(f"{e.strerror or e}: {e.filename}" if e.filename else _oneline(e))


def _from_container(a: argparse.Namespace, rec: Any, cname: str, src: str, dst: str) -> int:
    from nsprim.archive import container_root, copy, host_root, stat_path, write_archive

    with container_root(rec) as croot:
        try:
            st = stat_path(croot, src, follow_link=a.follow_link)
        except FileNotFoundError:
            return _error(f"Could not find the file {src} in container {cname}")
        if _wants_dir(src) and not st.is_dir:
            return _error(f"{src}: not a directory")
        if dst == "-":
            write_archive(croot, src, sys.stdout.buffer, follow_link=a.follow_link)
            sys.stdout.flush()
            return 0
        dst = os.path.abspath(dst) + ("/" if dst.endswith("/") else "")
        where, name, err = _placement(src, st.is_dir, dst, os.path.isdir(dst.rstrip("/")),
                                      os.path.lexists(dst.rstrip("/")),
                                      lambda p: os.path.isdir(p))
        if err:
            return _local_error(err)
        with host_root(where) as hroot:
            copy(croot, src, hroot, "/", follow_link=a.follow_link,
                 preserve_owner=a.archive, name=name)
    return 0


def _to_container(a: argparse.Namespace, rec: Any, cname: str, src: str, dst: str) -> int:
    from nsprim.archive import container_root, copy, extract_archive, host_root

    if src == "-":
        with container_root(rec, write=True) as croot:
            try:
                st = _stat_in(croot, dst)
            except FileNotFoundError:
                return _error(f"Could not find the file {dst} in container {cname}")
            if not st.is_dir:
                return _local_error(f'destination "{cname}:{dst}" must be a directory')
            extract_archive(croot, dst, sys.stdin.buffer, preserve_owner=a.archive,
                            what="the archive on stdin")
        return 0
    local = os.path.abspath(src)
    try:
        sst = os.stat(local) if a.follow_link else os.lstat(local)
    except FileNotFoundError:
        return _local_error(f"lstat {local}: no such file or directory")
    import stat as st_

    is_dir = st_.S_ISDIR(sst.st_mode)
    if _wants_dir(src) and not is_dir:
        return _local_error(f"{src}: not a directory")
    with container_root(rec, write=True) as croot:
        def isdir(p: str) -> bool:
            try:
                return bool(_stat_in(croot, p).is_dir)
            except (FileNotFoundError, NotADirectoryError):
                return False

        try:
            dst_st = _stat_in(croot, dst.rstrip("/") or "/")
            exists, dst_is_dir = True, dst_st.is_dir
        except (FileNotFoundError, NotADirectoryError):
            exists = dst_is_dir = False
        where, name, err = _placement(src, is_dir, posixpath.normpath("/" + dst) +
                                      ("/" if dst.endswith("/") else ""),
                                      dst_is_dir, exists, isdir)
        if err:
            return _error(err)
        with host_root("/") as hroot:
            copy(hroot, local, croot, where, follow_link=a.follow_link,
                 preserve_owner=a.archive, name=name)
    return 0


def _stat_in(croot: Any, path: str) -> Any:
    from nsprim.archive import stat_path

    return stat_path(croot, path, follow_link=True)


def _placement(src: str, src_is_dir: bool, dst: str, dst_is_dir: bool, dst_exists: bool,
               isdir: Any) -> tuple[str, str, str]:
    """(directory to extract into, name there, error) by docker's rules."""
    base = posixpath.basename(src.rstrip("/")) if not _contents(src) else "."
    if base in ("", ".") and not _contents(src):
        base = "."  # the root: its contents
    bare = dst.rstrip("/") or "/"
    if dst_is_dir:
        return bare, "." if _contents(src) else base, ""
    if dst_exists:
        if src_is_dir:
            return "", "", f"cannot copy a directory to a file: {dst}"
        if dst.endswith("/"):
            return "", "", f"{dst}: not a directory"
        return posixpath.dirname(bare) or "/", posixpath.basename(bare), ""
    if dst.endswith("/") and not src_is_dir:
        return "", "", f'destination directory "{dst}" must exist'
    parent = posixpath.dirname(bare) or "/"
    if not isdir(parent):
        return "", "", f'no such directory "{parent}"'
    return parent, posixpath.basename(bare), ""
