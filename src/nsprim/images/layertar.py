"""A layer directory (overlayfs format) -> a deterministic OCI layer tar.

The directory may be an overlay's upper directory or an extracted layer:
overlayfs whiteouts (0/0 character devices) become ``.wh.NAME`` entries,
opaque directories (``trusted.overlay.opaque=y``, or ``user.overlay.opaque``
of an overlay mounted in a user namespace) get ``.wh..wh..opq``.
Entries are sorted, times are normalised to `mtime` (0 unless given),
user and group names are left empty, and only the xattrs an image may carry
are kept (``trusted.overlay.*`` never), so the same tree gives the same
bytes, and extract_layer() of those bytes gives the same tree back.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from typing import IO, Any

__all__ = ["write_layer_tar", "HashingWriter"]

_SKIP_XATTR = ("trusted.overlay.", "user.overlay.", "security.selinux")


class HashingWriter:
    """A file-like sink that hashes (sha256) and counts what is written."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hash.update(data)
        self.count += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def tell(self) -> int:
        return self.count

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for k in sorted(names):
        if k.startswith(_SKIP_XATTR):
            continue
        try:
            v = os.getxattr(path, k, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
    return out


def _opaque(path: str) -> bool:
    # user.overlay.opaque: an overlay mounted in a user namespace (userxattr)
    for ns in ("trusted", "user"):
        try:
            if os.getxattr(path, f"{ns}.overlay.opaque", follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def write_layer_tar(src: str, out: Any, *, mtime: int = 0) -> None:
    """Write the tree under `src` to `out` (a binary file-like) as a tar."""
    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                       encoding="utf-8", errors="surrogateescape")
    links: dict[tuple[int, int], str] = {}
    try:
        _walk(tar, src, "", links, mtime)
    finally:
        tar.close()


def _info(name: str, st: os.stat_result, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = mtime
    return ti


def _walk(tar: tarfile.TarFile, base: str, rel: str, links: dict[tuple[int, int], str],
          mtime: int) -> None:
    d = os.path.join(base, rel) if rel else base
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        arc = f"{rel}/{name}" if rel else name
        st = os.lstat(path)
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            wh = _info(f"{rel}/.wh.{name}" if rel else f".wh.{name}", st, mtime)
            wh.type = tarfile.REGTYPE
            wh.mode = 0o644
            wh.uid = wh.gid = 0
            tar.addfile(wh)
            continue
        ti = _info(arc, st, mtime)
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            ti.pax_headers = _xattrs(path)
            tar.addfile(ti)
            if _opaque(path):
                op = _info(f"{arc}/.wh..wh..opq", st, mtime)
                op.type = tarfile.REGTYPE
                op.mode = 0o644
                op.uid = op.gid = 0
                op.pax_headers = {}
                tar.addfile(op)
            _walk(tar, base, arc, links, mtime)
            continue
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                ti.type = tarfile.LNKTYPE
                ti.linkname = links[key]
                tar.addfile(ti)
                continue
            if st.st_nlink > 1:
                links[key] = arc
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            ti.pax_headers = _xattrs(path)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                tar.addfile(ti, f)
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
            tar.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            tar.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tar.addfile(ti)
        # sockets are skipped, as docker does
