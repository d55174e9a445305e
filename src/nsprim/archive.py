"""Copying files in and out of a container's root: ``nsprim cp`` and the
Docker API's ``/containers/{id}/archive`` (GET, HEAD, PUT).

- :func:`container_root` opens a container's root as a directory fd: the
  live root of a running container (``/proc/PID/root``, so volumes and binds
  mounted inside are seen, as ``docker cp`` sees them), else its rootfs
  directory or its overlay (image layers + its own upper dir, mounted for
  the copy and unmounted after) with its volumes and binds mounted at their
  targets in a private mount namespace held for the copy (docker's cp of a
  stopped container sees them too).
- :func:`stat_path` is HEAD's ``X-Docker-Container-Path-Stat`` (name, size,
  Go's FileMode bits, mtime, link target);
- :func:`write_archive` is GET: a tar stream of a path whose top entry is the
  path's basename (docker's format);
- :func:`extract_archive` is PUT: a tar stream extracted into a directory.

Every path is resolved inside the root it belongs to: the start of a copy
with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (an absolute
symlink or ``..`` in the container resolves inside the container, as mounts
do), and then one name at a time from directory fds with ``O_NOFOLLOW``, so
a container that swaps a directory for a symlink during a copy leads the
copy nowhere outside its root.  Archives are untrusted: headers are checked
by :class:`nsprim.images.targuard.TarGuard` before ``tarfile`` parses them;
a member name with a ``..`` component is refused, absolute names are taken
from the destination; hardlinks must point inside the destination; device
nodes are never created (they are skipped); the total size and the number
of members are bounded (``NSPRIM_CP_MAX_SIZE``, default 64g;
``NSPRIM_CP_MAX_FILES``, default 1000000).  Files written on the host lose
their setuid and setgid bits unless ``-a`` is given.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from nsprim._native import ffi, lib

__all__ = ["ArchiveError", "Root", "PathStat", "container_root", "host_root", "stat_path",
           "write_archive", "extract_archive", "copy", "max_size", "max_files"]

_RESOLVE = lib.RESOLVE_IN_ROOT | lib.RESOLVE_NO_MAGICLINKS
MAX_DEPTH = 256

# Go's os.FileMode bits (docker's stat header carries them)
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHAR = 1 << 21
_GO_STICKY = 1 << 20


class ArchiveError(ValueError):
    """An archive or a copy that cannot be done (one line, naming the value)."""


def max_size() -> int:
    from nsprim.units import parse_size

    return parse_size(os.environ.get("NSPRIM_CP_MAX_SIZE", "64g"), "NSPRIM_CP_MAX_SIZE")


def max_files() -> int:
    v = os.environ.get("NSPRIM_CP_MAX_FILES", "1000000")
    if not v.isascii() or not v.isdigit():
        raise ArchiveError(f"invalid NSPRIM_CP_MAX_FILES {v!r}")
    return int(v)


@dataclass
class Root:
    """A directory fd that paths are resolved inside (a container's root,
    or a host directory).  `uid_shift` maps container ids to host ids (a
    container with a user namespace: ``--userns-map``)."""

    fd: int
    uid_shift: int = 0
    gid_shift: int = 0
    host: bool = False       # files written here are the host's (setuid stripped)

    def open(self, path: str, flags: int) -> int:
        """openat2(RESOLVE_IN_ROOT) of `path` (absolute or relative, both from
        the root)."""
        rel = path.lstrip("/") or "."
        fd = lib.nsp_openat2(self.fd, os.fsencode(rel), flags | os.O_CLOEXEC, 0, _RESOLVE)
        if fd < 0:
            err = ffi.errno
            raise OSError(err, os.strerror(err), path)
        return int(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _clean(path: str) -> str:
    """A path inside a root, absolute and normalised ('/' for the root)."""
    return posixpath.normpath("/" + path.lstrip("/"))  # never "//" (POSIX keeps it)


@contextmanager
def host_root(path: str = "/") -> Iterator[Root]:
    """A host directory as a Root (the host side of ``cp``)."""
    r = Root(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), host=True)
    try:
        yield r
    finally:
        r.close()


@contextmanager
def container_root(rec: Any, *, write: bool = False, live: bool = True) -> Iterator[Root]:
    """The root of the container of record `rec` (see the module doc).
    Without `live`, never the running container's mounts: its root
    filesystem alone (export, diff, commit)."""
    from nsprim.lifecycle import _live_pid, _proc_start

    spec = rec.spec
    merged = os.path.join(rec.dir, "merged")
    if not live and not spec.rootfs and os.path.ismount(merged):
        # a running container's overlay, as mounted on the host
        r = Root(os.open(merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        try:
            yield r
        finally:
            r.close()
        return
    shift = 0
    if spec.userns_map:
        from nsprim.spec import parse_uidmap

        m = parse_uidmap(spec.userns_map)
        shift = m.host_uid - m.container_id
    running = _live_pid(rec) if live and rec.running else None
    if running is not None:
        pid, start = running
        try:
            fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0 and _proc_start(pid) == start:  # not a reused pid
            r = Root(fd, shift, shift)
            try:
                yield r
            finally:
                r.close()
            return
        if fd >= 0:
            os.close(fd)
    mounts = _mounts_of(spec) if live else []
    if spec.rootfs:
        with _opened(spec.rootfs, mounts, write) as fd:
            r = Root(fd, shift, shift)
            try:
                yield r
            finally:
                r.close()
        return
    from nsprim.images.store import default_store
    from nsprim.rootfs import OverlayRootfs

    img = default_store().get(spec.image_id or spec.image or "")
    ov = OverlayRootfs(img.layers, id=rec.id, keep=True, reuse=True, readonly=not write)
    with ov, _opened(ov.path, mounts, write) as fd:
        r = Root(fd, shift, shift)
        try:
            yield r
        finally:
            r.close()


def _mounts_of(spec: Any) -> list[tuple[str, str, bool]]:
    """(host source, target, read-only) of a container's binds and volumes
    (its named and anonymous ones), parents before what is mounted in them."""
    from nsprim.spec import parse_mount, parse_volume

    out = []
    for m in [parse_volume(v) for v in spec.volumes] + [parse_mount(v) for v in spec.mounts]:
        kind = type(m).__name__
        if kind == "Bind":
            out.append((m.source, m.target, bool(m.readonly)))
        elif kind == "Volume" and m.name != "anonymous":
            from nsprim import volumes

            try:
                out.append((volumes.get(m.name).mountpoint, m.target, bool(m.readonly)))
            except LookupError:
                continue  # not created yet (the container never ran): nothing in it
    out.sort(key=lambda x: _clean(x[1]).count("/") if x[1] != "/" else 0)
    return out


@contextmanager
def _opened(base: str, mounts: list[tuple[str, str, bool]], write: bool) -> Iterator[int]:
    """An O_PATH fd of the directory `base`, a stopped container's root; with
    `mounts`, as docker's cp sees it: in a private mount namespace of its own
    (made by a short-lived thread, held by an fd while the copy runs) where
    each bind and volume is mounted at its target, the target resolved
    inside the root with openat2(RESOLVE_IN_ROOT) and mounted on that fd (a
    symlink in the container or in a volume cannot point a mount outside
    the root); read-only when the mount is, or when nothing is written."""
    if not mounts:
        yield os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return
    from nsprim._native import check
    from nsprim.mount import (
        MOUNT_ATTR_RDONLY,
        MS_PRIVATE,
        MS_REC,
        mount,
        mount_setattr,
        move_mount,
        open_tree,
    )
    from nsprim.namespace import _in_thread

    def work() -> tuple[int, int]:
        check(lib.nsp_unshare(lib.CLONE_NEWNS), "unshare (mnt)")
        mount(None, "/", flags=MS_REC | MS_PRIVATE)  # nothing propagates to the host
        root = Root(os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        try:
            for source, target, readonly in mounts:
                try:
                    tfd = root.open(target, os.O_PATH)
                except OSError:
                    continue  # no such target in the root: nothing is mounted there
                try:
                    is_dir = stat.S_ISDIR(os.fstat(tfd).st_mode)
                    tree = open_tree(source, recursive=True)
                    try:
                        if stat.S_ISDIR(os.fstat(tree).st_mode) != is_dir:
                            continue  # a file over a directory or the reverse: as mounts
                        if readonly or not write:
                            mount_setattr(tree, set=MOUNT_ATTR_RDONLY, recursive=True)
                        move_mount(tree, "", to_dirfd=tfd)
                    finally:
                        os.close(tree)
                finally:
                    os.close(tfd)
            ns = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            root.close()
            raise
        return root.fd, ns

    try:
        fd, ns = _in_thread(work, "nsprim-cp-mounts")
    except PermissionError:  # no CAP_SYS_ADMIN (rootless): the root alone
        yield os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return
    try:
        yield fd
    finally:
        os.close(ns)  # the namespace, and the mounts in it, go with the last fd


# ------------------------------------------------------------------ stat

@dataclass(frozen=True)
class PathStat:
    """docker's ContainerPathStat."""

    name: str
    size: int
    mode: int          # Go's os.FileMode
    mtime: float
    link_target: str

    def to_docker(self) -> dict[str, Any]:
        ns = int(self.mtime * 1e9)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
        frac = f".{ns % 10**9:09d}".rstrip("0").rstrip(".")
        return {"name": self.name, "size": self.size, "mode": self.mode,
                "mtime": stamp + frac + "Z", "linkTarget": self.link_target}

    def header(self) -> str:
        """The value of HEAD's ``X-Docker-Container-Path-Stat``."""
        return base64.b64encode(json.dumps(self.to_docker()).encode()).decode()

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & _GO_DIR)


def go_mode(st_mode: int) -> int:
    """A unix st_mode as Go's os.FileMode."""
    m = st_mode & 0o777
    if st_mode & stat.S_ISUID:
        m |= _GO_SETUID
    if st_mode & stat.S_ISGID:
        m |= _GO_SETGID
    if st_mode & stat.S_ISVTX:
        m |= _GO_STICKY
    fmt = stat.S_IFMT(st_mode)
    m |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE,
          stat.S_IFSOCK: _GO_SOCKET, stat.S_IFBLK: _GO_DEVICE,
          stat.S_IFCHR: _GO_DEVICE | _GO_CHAR}.get(fmt, 0)
    return m


def _open_parent(root: Root, path: str) -> tuple[int, str]:
    """(O_PATH fd of the parent directory, last name) of the clean path
    `path`; the name is "" for the root itself."""
    parent, base = posixpath.split(path)
    return root.open(parent, os.O_PATH | os.O_DIRECTORY), base


def _lstat_at(root: Root, path: str, follow: bool) -> tuple[int, str, os.stat_result]:
    """(parent fd, name, stat) of `path`; with `follow` the fd is the
    object itself (symlinks followed inside the root) and name is ""."""
    path = _clean(path)
    if follow or path == "/":
        fd = root.open(path, os.O_PATH)
        return fd, "", os.fstat(fd)
    pfd, base = _open_parent(root, path)
    try:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except BaseException:
        os.close(pfd)
        raise
    return pfd, base, st


def stat_path(root: Root, path: str, *, follow_link: bool = False) -> PathStat:
    """docker's stat of `path` in `root` (symlinks followed inside the
    root with `follow_link`; the link target is always reported resolved)."""
    path = _clean(path)
    fd, base, st = _lstat_at(root, path, follow_link)
    try:
        target = ""
        if stat.S_ISLNK(st.st_mode):
            link = os.readlink(base, dir_fd=fd)
            target = _clean(posixpath.join(posixpath.dirname(path), link))
        return PathStat(posixpath.basename(path) or "/", st.st_size, go_mode(st.st_mode),
                        st.st_mtime, target)
    finally:
        os.close(fd)


# --------------------------------------------------------- tar out (GET)

class _FileReader(io.RawIOBase):
    """Exactly `size` bytes of fd: a file that shrank is padded with zeros,
    one that grew is cut (the header's size was taken first)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        data = os.read(self.fd, n) if self.fd >= 0 else b""
        if not data:
            self.fd = -1
            data = bytes(n)
        b[:len(data)] = data
        self.left -= len(data)
        return len(data)


class _Budget:
    def __init__(self, what: str) -> None:
        self.what = what
        self.bytes = max_size()
        self.files = max_files()

    def member(self, size: int) -> None:
        self.files -= 1
        self.bytes -= size
        if self.files < 0:
            raise ArchiveError(f"{self.what}: more than {max_files()} files "
                               "(NSPRIM_CP_MAX_FILES)")
        if self.bytes < 0:
            raise ArchiveError(f"{self.what}: larger than {max_size()} bytes "
                               "(NSPRIM_CP_MAX_SIZE)")


def write_archive(root: Root, path: str, out: IO[bytes], *, follow_link: bool = False,
                  name: str | None = None) -> PathStat:
    """Write a tar of `path` (inside `root`) to `out`: its top entry is
    `name` (default: the path's basename), directories recursively.  Ids are
    the container's (a user namespace's shift undone).  Returns the stat of
    `path`, taken before anything is written (FileNotFoundError if it is not
    there)."""
    path = _clean(path)
    top = stat_path(root, path, follow_link=follow_link)
    if name is None:
        name = posixpath.basename(path) or "."
    budget = _Budget(f"copying {path}")
    fd, base, st = _lstat_at(root, path, follow_link)
    seen: dict[tuple[int, int], str] = {}
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            # base "": fd is the object itself (O_PATH), reopened by _reopen
            _add(tar, root, fd, base, name, st, seen, budget, 0)
    finally:
        os.close(fd)
    return top


def _info(root: Root, arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid = max(0, st.st_uid - root.uid_shift)
    ti.gid = max(0, st.st_gid - root.gid_shift)
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti


def _reopen(pfd: int, base: str, flags: int) -> int:
    """`base` in directory fd `pfd` (never following a symlink), or, with an
    empty `base`, the O_PATH fd `pfd` itself reopened with `flags`."""
    if base:
        return os.open(base, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    # reopening an O_PATH fd: /proc/self/fd/N names exactly that object
    return os.open(f"/proc/self/fd/{pfd}", flags | os.O_CLOEXEC)


def _kernel_fs(fd: int) -> bool:
    """Is directory `fd` on a filesystem with no storage of its own (procfs,
    sysfs, devpts, mqueue, ...: an anonymous device holding no blocks)?
    Its files are no container's content, and may be endless: a copy takes
    its mount point only."""
    try:
        st = os.statvfs(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return st.f_blocks == 0 and os.major(os.fstat(fd).st_dev) == 0


def _add(tar: tarfile.TarFile, root: Root, pfd: int, base: str, arcname: str,
         st: os.stat_result, seen: dict[tuple[int, int], str], budget: _Budget,
         depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ArchiveError(f"{arcname}: directories nested more than {MAX_DEPTH} deep")
    ti = _info(root, arcname, st)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        try:
            dfd = _reopen(pfd, base, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                return  # swapped or removed during the copy: not followed
            raise
        try:
            ti.type = tarfile.DIRTYPE
            if arcname:  # "": the root of an export, its entries at the top
                budget.member(0)
                tar.addfile(ti)
            if _kernel_fs(dfd):
                return  # a live container's /proc, /sys: their mount points only
            for entry in sorted(os.listdir(dfd)):
                try:
                    cst = os.stat(entry, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                _add(tar, root, dfd, entry, f"{arcname}/{entry}" if arcname else entry, cst,
                     seen, budget, depth + 1)
        finally:
            os.close(dfd)
        return
    if st.st_nlink > 1 and not stat.S_ISDIR(mode):
        first = seen.get((st.st_dev, st.st_ino))
        if first is not None:
            ti.type = tarfile.LNKTYPE
            ti.linkname = first
            budget.member(0)
            tar.addfile(ti)
            return
        seen[(st.st_dev, st.st_ino)] = arcname
    if stat.S_ISREG(mode):
        try:
            fd = _reopen(pfd, base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOENT):
                return
            raise
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                return  # swapped for something else during the copy
            ti = _info(root, arcname, fst)
            ti.size = fst.st_size
            budget.member(ti.size)
            tar.addfile(ti, io.BufferedReader(_FileReader(fd, ti.size), 1 << 16))
        finally:
            os.close(fd)
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        try:
            ti.linkname = os.readlink(base, dir_fd=pfd) if base else \
                os.readlink(f"/proc/self/fd/{pfd}")
        except OSError:
            return
        budget.member(0)
        tar.addfile(ti)
    elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.FIFOTYPE if stat.S_ISFIFO(mode) else (
            tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        budget.member(0)
        tar.addfile(ti)
    # sockets are left out, as tar does


# ---------------------------------------------------------- tar in (PUT)

def _member_path(name: str, rename: tuple[str, str] | None) -> str | None:
    """The relative path a member is extracted to ('' for the destination
    itself), or ArchiveError for a name that climbs out."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"invalid archive member name {name!r}: '..' is not allowed")
    if rename is not None and parts and parts[0] == rename[0]:
        parts = ([rename[1]] if rename[1] else []) + parts[1:]
    return "/".join(parts)


def _remove(pfd: int, base: str) -> None:
    from nsprim.images.layer import _remove as remove

    remove(pfd, base)


def extract_archive(root: Root, dest: str, stream: IO[bytes] | io.RawIOBase, *,
                    preserve_owner: bool = True, rename: tuple[str, str] | None = None,
                    what: str = "archive") -> int:
    """Extract the uncompressed tar `stream` into directory `dest` of
    `root` (which must exist).  `rename` maps a first path component to
    another ('' for its contents).  Owners are the archive's with
    `preserve_owner`, else root (the container's root with a user namespace).
    Returns the number of members extracted."""
    from nsprim.images.layer import Bounded, LayerError
    from nsprim.images.targuard import GuardedReader, TarGuard

    dest = _clean(dest)
    try:
        dfd = root.open(dest, os.O_PATH | os.O_DIRECTORY)
    except NotADirectoryError:
        raise ArchiveError(f"extraction point {dest!r} is not a directory") from None
    os.close(dfd)
    budget = _Budget(what)
    guard = TarGuard(what, max_members=max_files())
    limit = max_size()
    bounded = Bounded(stream, limit + (limit >> 4) + (1 << 20),
                      lambda n: f"{what}: larger than {n} bytes")
    count = 0
    dirs: list[tuple[str, int]] = []
    try:
        tar = tarfile.open(fileobj=io.BufferedReader(GuardedReader(bounded, guard), 1 << 16),
                           mode="r|")
        with tar:
            for m in tar:
                rel = _member_path(m.name, rename)
                if rel is None:
                    continue
                budget.member(m.size if m.isreg() else 0)
                full = _clean(posixpath.join(dest, rel))
                if _extract_one(root, tar, m, full, dest, rename, preserve_owner):
                    count += 1
                    if m.isdir():
                        dirs.append((full, int(m.mtime)))
    except (tarfile.TarError, LayerError) as e:
        raise ArchiveError(f"{what}: {e}") from None
    for full, mtime in reversed(dirs):
        try:
            fd = root.open(full, os.O_PATH | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            os.utime(f"/proc/self/fd/{fd}", (mtime, mtime))
        except OSError:
            pass
        finally:
            os.close(fd)
    return count


def _parent_dir(root: Root, full: str) -> tuple[int, str]:
    """(O_PATH fd of the parent of `full`, created with its parents if
    missing, inside the root; the last name)."""
    parent, base = posixpath.split(full)
    try:
        return root.open(parent, os.O_PATH | os.O_DIRECTORY), base
    except FileNotFoundError:
        pass
    gfd, pbase = _parent_dir(root, parent)
    try:
        try:
            os.mkdir(pbase, 0o755, dir_fd=gfd)
        except FileExistsError:
            pass
    finally:
        os.close(gfd)
    return root.open(parent, os.O_PATH | os.O_DIRECTORY), base


def _owner(root: Root, m: tarfile.TarInfo, preserve: bool) -> tuple[int, int]:
    if preserve:
        return m.uid + root.uid_shift, m.gid + root.gid_shift
    if root.host:
        return os.getuid(), os.getgid()
    return root.uid_shift, root.gid_shift


def _mode(root: Root, m: tarfile.TarInfo, preserve: bool) -> int:
    mode = m.mode & 0o7777
    if root.host and not preserve:
        mode &= ~(stat.S_ISUID | stat.S_ISGID)
    return mode


def _extract_one(root: Root, tar: tarfile.TarFile, m: tarfile.TarInfo, full: str, dest: str,
                 rename: tuple[str, str] | None, preserve: bool) -> bool:
    if m.ischr() or m.isblk():
        return False  # device nodes are never made
    if not (m.isdir() or m.isreg() or m.issym() or m.islnk() or m.isfifo()):
        return False
    if full == dest:
        if not m.isdir():
            raise ArchiveError(f"archive member {m.name!r} would replace the destination "
                               f"{dest!r}")
        return False  # the destination directory itself: it stays as it is
    pfd, base = _parent_dir(root, full)
    uid, gid = _owner(root, m, preserve)
    mode = _mode(root, m, preserve)
    try:
        try:
            old: os.stat_result | None = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if m.isdir():
            if old is not None and not stat.S_ISDIR(old.st_mode):
                raise ArchiveError(f"cannot overwrite non-directory {full!r} with directory")
            if old is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=pfd)
            try:
                os.fchown(dfd, uid, gid)
                os.fchmod(dfd, mode)
            finally:
                os.close(dfd)
            return True
        if old is not None:
            if stat.S_ISDIR(old.st_mode):
                raise ArchiveError(f"cannot overwrite directory {full!r} with non-directory")
            os.unlink(base, dir_fd=pfd)
        if m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                src = tar.extractfile(m)
                assert src is not None
                while chunk := src.read(1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, (m.mtime, m.mtime))
            finally:
                os.close(fd)
            return True
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            rel = _member_path(m.linkname, rename)
            target = _clean(posixpath.join(dest, rel or ""))
            if not rel or target == dest:
                raise ArchiveError(f"invalid hardlink {m.name!r} -> {m.linkname!r}")
            tpfd, tbase = _open_parent(root, target)
            try:
                tst = os.stat(tbase, dir_fd=tpfd, follow_symlinks=False)
                if stat.S_ISDIR(tst.st_mode):
                    raise ArchiveError(f"invalid hardlink {m.name!r} to a directory")
                os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tpfd)
            return True
        else:  # fifo
            os.mkfifo(base, mode & 0o777, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(base, mode, dir_fd=pfd)
        try:
            os.utime(base, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
        except OSError:
            pass
        return True
    finally:
        os.close(pfd)


# ------------------------------------------------------- both, in one go

def copy(src_root: Root, src: str, dst_root: Root, dst_dir: str, *,
         follow_link: bool = False, preserve_owner: bool = False,
         name: str | None = None) -> None:
    """Copy `src` of `src_root` into directory `dst_dir` of `dst_root`
    through a tar stream (a thread writes it into a pipe), as `name` there
    (default its basename; "." for a directory's contents)."""
    import threading

    r, w = os.pipe()
    err: list[BaseException] = []

    def produce() -> None:
        try:
            with open(w, "wb", buffering=1 << 16) as out:
                write_archive(src_root, src, out, follow_link=follow_link, name=name)
        except BrokenPipeError:
            pass
        except BaseException as e:  # reported by the caller
            err.append(e)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        with open(r, "rb", buffering=0) as f:
            try:
                extract_archive(dst_root, dst_dir, f, preserve_owner=preserve_owner,
                                what=f"copying {src}")
            except BaseException:
                f.close()  # the producer sees EPIPE
                t.join()
                raise
            f.read()  # what the archive's end left
    finally:
        t.join()
    if err:
        raise err[0]

