"""Mounts: mount(2)/umount2(2) and the new mount API (fsopen, fsconfig,
fsmount, open_tree, move_mount, mount_setattr), plus pivot_root.

Thin, typed wrappers: each raises the OSError of its errno with the syscall's
name and path.  File descriptors they return are close-on-exec and owned by
the caller (use `os.close`, or the `MountFd` context manager).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from nsprim._native import check, cstr, ffi, lib

__all__ = [
    "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_BIND", "MS_REC", "MS_PRIVATE",
    "MS_SLAVE", "MS_SHARED", "MS_REMOUNT", "MNT_DETACH", "MOUNT_ATTR_RDONLY",
    "MOUNT_ATTR_NOSUID", "MOUNT_ATTR_NODEV", "MOUNT_ATTR_NOEXEC",
    "mount", "umount", "pivot_root", "open_tree", "move_mount", "mount_setattr", "fsmount",
    "bind", "MountFd",
]

MS_RDONLY: int = lib.MS_RDONLY
MS_NOSUID: int = lib.MS_NOSUID
MS_NODEV: int = lib.MS_NODEV
MS_NOEXEC: int = lib.MS_NOEXEC
MS_BIND: int = lib.MS_BIND
MS_REC: int = lib.MS_REC
MS_PRIVATE: int = lib.MS_PRIVATE
MS_SLAVE: int = lib.MS_SLAVE
MS_SHARED: int = lib.MS_SHARED
MS_REMOUNT: int = lib.MS_REMOUNT
MNT_DETACH: int = lib.MNT_DETACH
MOUNT_ATTR_RDONLY: int = lib.MOUNT_ATTR_RDONLY
MOUNT_ATTR_NOSUID: int = lib.MOUNT_ATTR_NOSUID
MOUNT_ATTR_NODEV: int = lib.MOUNT_ATTR_NODEV
MOUNT_ATTR_NOEXEC: int = lib.MOUNT_ATTR_NOEXEC

_AT_FDCWD: int = lib.AT_FDCWD
PathLike = str | os.PathLike[str]


def _b(p: PathLike) -> bytes:
    return os.fsencode(p)


def mount(source: PathLike | None, target: PathLike, fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    src = ffi.NULL if source is None else _b(source)
    check(lib.nsp_mount(src, _b(target), cstr(fstype), flags, cstr(data)), "mount",
          os.fspath(target))


def umount(target: PathLike, flags: int = 0) -> None:
    """umount2(2); ``flags=MNT_DETACH`` for a lazy unmount."""
    check(lib.nsp_umount2(_b(target), flags), "umount2", os.fspath(target))


def pivot_root(new_root: PathLike, put_old: PathLike) -> None:
    """pivot_root(2): the calling process's root becomes `new_root`."""
    check(lib.nsp_pivot_root(_b(new_root), _b(put_old)), "pivot_root", os.fspath(new_root))


def open_tree(path: PathLike, *, clone: bool = True, recursive: bool = True,
              dirfd: int = _AT_FDCWD) -> int:
    """open_tree(2): with `clone`, a detached copy of the mount tree at `path`
    (attach it with move_mount); returns an owned, close-on-exec fd."""
    flags = lib.OPEN_TREE_CLOEXEC
    if clone:
        flags |= lib.OPEN_TREE_CLONE
    if recursive:
        flags |= lib.AT_RECURSIVE
    p = os.fspath(path)
    if p == "":
        flags |= lib.AT_EMPTY_PATH
    return check(lib.nsp_open_tree(dirfd, _b(p), flags), "open_tree", p or None)


def move_mount(from_fd: int, target: PathLike, *, to_dirfd: int = _AT_FDCWD) -> None:
    """move_mount(2): attach the detached mount `from_fd` at `target`."""
    t = os.fspath(target)
    flags = lib.MOVE_MOUNT_F_EMPTY_PATH | (lib.MOVE_MOUNT_T_EMPTY_PATH if t == "" else 0)
    check(lib.nsp_move_mount(from_fd, b"", to_dirfd, _b(t), flags), "move_mount", t or None)


def mount_setattr(target: PathLike | int, *, set: int = 0, clear: int = 0,
                  recursive: bool = False) -> None:
    """mount_setattr(2) on a path, or on a mount fd (from open_tree/fsmount)."""
    flags = lib.AT_RECURSIVE if recursive else 0
    if isinstance(target, int):
        dfd, path, shown = target, b"", f"fd {target}"
        flags |= lib.AT_EMPTY_PATH
    else:
        dfd, path, shown = _AT_FDCWD, _b(target), os.fspath(target)
    check(lib.nsp_mount_setattr(dfd, path, flags, set, clear, 0, 0), "mount_setattr", shown)


def fsmount(fstype: str,
            options: Mapping[str, str | bool] | Iterable[tuple[str, str | bool]] | None = None,
            attrs: int = 0) -> int:
    """A new, detached filesystem mount through fsopen/fsconfig/fsmount.

    `options` are the filesystem's parameters (True for a flag), as a mapping
    or as (key, value) pairs when a key repeats (overlayfs' ``lowerdir+``).
    The kernel's own message for a bad parameter is not retrieved, only the
    errno.  Returns an owned, close-on-exec mount fd for move_mount."""
    fs = check(lib.nsp_fsopen(fstype.encode(), lib.FSOPEN_CLOEXEC), "fsopen", fstype)
    pairs = options.items() if isinstance(options, Mapping) else (options or ())
    try:
        for k, v in pairs:
            if v is True:
                r = lib.nsp_fsconfig(fs, lib.FSCONFIG_SET_FLAG, k.encode(), ffi.NULL, 0)
            else:
                r = lib.nsp_fsconfig(fs, lib.FSCONFIG_SET_STRING, k.encode(),
                                     str(v).encode(), 0)
            check(r, f"fsconfig ({fstype}: {k}={v})")
        check(lib.nsp_fsconfig(fs, lib.FSCONFIG_CMD_CREATE, ffi.NULL, ffi.NULL, 0),
              f"fsconfig create ({fstype})")
        return check(lib.nsp_fsmount(fs, lib.FSMOUNT_CLOEXEC, attrs), "fsmount", fstype)
    finally:
        os.close(fs)


def bind(source: PathLike, target: PathLike, *, recursive: bool = True,
         readonly: bool = False) -> None:
    """Bind-mount `source` at `target`; with `readonly` only the new mount is
    read-only (open_tree + mount_setattr + move_mount: no remount race)."""
    fd = open_tree(source, recursive=recursive)
    try:
        if readonly:
            mount_setattr(fd, set=MOUNT_ATTR_RDONLY, recursive=recursive)
        move_mount(fd, target)
    finally:
        os.close(fd)


class MountFd:
    """An owned mount fd as a context manager (idempotent close)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> MountFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
