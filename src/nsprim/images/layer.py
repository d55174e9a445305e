"""Layer extraction: an OCI/docker layer tarball into a directory that
overlayfs can use as a lower layer.

- OCI whiteouts become overlayfs whiteouts: ``.wh.NAME`` -> a 0/0 character
  device NAME; ``.wh..wh..opq`` -> the directory's ``trusted.overlay.opaque``
  xattr set to ``y``.
- modes (setuid included), owners, mtimes, xattrs (PAX ``SCHILY.xattr.*``),
  hardlinks, symlinks, device nodes and fifos are kept.
- nothing can be written outside the layer directory, whatever the archive
  says: every name is cleaned as if the directory were "/" (``..`` cannot
  climb above it, absolute names start at it), and every parent directory is
  opened with openat2(RESOLVE_IN_ROOT), so a symlink in the archive (to
  ``/etc``, to ``../..``) resolves inside the layer too.  Hardlink targets
  are resolved the same way.

Digests are computed while streaming: the compressed blob's (the registry
digest) and the uncompressed tar's (the config's diff_id).
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import zlib
from collections.abc import Callable

from nsprim._native import lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from typing import IO, Any

__all__ = ["extract_layer", "HashingReader", "LayerError", "decompressor_for", "Bounded"]

_RESOLVE = lib.RESOLVE_IN_ROOT | lib.RESOLVE_NO_MAGICLINKS
_WH = ".wh."
_OPAQUE = ".wh..wh..opq"


if TYPE_CHECKING:
    Readable = IO[bytes] | io.RawIOBase  # what the readers here read from


class LayerError(ValueError):
    """A layer that cannot be used (corrupt archive, digest mismatch)."""


class HashingReader(io.RawIOBase):
    """Read through, hashing (sha256) and counting what passes."""

    def __init__(self, raw: Readable, progress: Callable[[int], None] | None = None) -> None:
        import hashlib  # OpenSSL's: loaded by what hashes layers, not by every import

        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.hash.update(data)
        self.count += n
        if self.progress is not None and n:
            self.progress(n)
        return n

    def drain(self) -> None:
        while self.read(1 << 16):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Inflate(io.RawIOBase):
    """Streaming decompression (gzip through zlib, zstd through zstandard).

    Output is produced at most _OUT bytes at a time, whatever the input's
    ratio: a small compressed chunk never becomes a huge buffer."""

    _OUT = 1 << 20

    def __init__(self, raw: IO[bytes], kind: str) -> None:
        self.raw = raw
        self.kind = kind
        self.buf = b""
        self.eof = False
        self.pending = b""      # input left over after a gzip member ended
        self.started = False    # the current gzip member has had input
        self.z: Any = None
        self.reader: Any = None
        if kind == "gzip":
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif kind == "zstd":
            try:
                import zstandard
            except ImportError:
                raise LayerError("zstd layers need the 'zstandard' package "
                                 "(pip install nsprim[zstd])") from None
            self.reader = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=1 << 16, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def _gzip_more(self) -> bytes:
        """The next piece of gzip output (b"" at the end of the input)."""
        while True:
            data = self.z.unconsumed_tail or self.pending or self.raw.read(1 << 16)
            self.pending = b""
            if not data:
                if self.started and not self.z.eof:
                    raise LayerError("corrupt gzip layer: the stream ends early")
                return b""
            self.started = True
            try:
                out: bytes = self.z.decompress(data, self._OUT)
            except zlib.error as e:
                raise LayerError(f"corrupt gzip layer: {e}") from None
            if self.z.eof:
                # concatenated gzip members: the rest starts a new one
                self.pending = self.z.unused_data
                self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.started = False
            if out:
                return out

    def readinto(self, b: Any) -> int:
        if self.reader is not None:
            try:
                data = self.reader.read(min(len(b), self._OUT))
            except Exception as e:  # zstd.ZstdError
                raise LayerError(f"corrupt zstd layer: {e}") from None
            b[:len(data)] = data
            return len(data)
        while not self.buf and not self.eof:
            if self.z is None:
                self.buf = self.raw.read(1 << 16)
            else:
                self.buf = self._gzip_more()
            if not self.buf:
                self.eof = True
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class Bounded(io.RawIOBase):
    """Read through, raising LayerError once more than `limit` bytes passed
    (`what()` says what), and telling `account` of every byte (it may raise
    too: a budget shared by the layers of one image)."""

    def __init__(self, raw: Readable, limit: int, what: Callable[[int], str],
                 account: Callable[[int], None] | None = None) -> None:
        self.raw = raw
        self.limit = limit
        self.what = what
        self.account = account
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        # never ask for more than one byte past the limit
        want = max(1, min(len(b), self.limit + 1 - self.count))
        data = self.raw.read(want)
        n = len(data)
        self.count += n
        if self.count > self.limit:
            raise LayerError(self.what(self.limit))
        if self.account is not None and n:
            self.account(n)
        b[:n] = data
        return n


def decompressor_for(media_type: str | None, head: bytes) -> str:
    """'gzip', 'zstd' or 'none', from the media type or the magic bytes."""
    mt = media_type or ""
    if mt.endswith("+zstd") or head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if mt.endswith("+gzip") or mt.endswith(".tar.gzip") or head.startswith(b"\x1f\x8b"):
        return "gzip"
    return "none"


class _Root:
    """The layer directory, opened once; paths resolved inside it."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def open(self, rel: str, flags: int) -> int:
        fd = lib.nsp_openat2(self.fd, os.fsencode(rel or "."), flags | os.O_CLOEXEC, 0,
                             _RESOLVE)
        if fd < 0:
            from nsprim._native import ffi

            err = ffi.errno
            raise OSError(err, os.strerror(err), rel)
        return int(fd)

    def dir(self, rel: str) -> int:
        """An O_PATH fd of directory `rel`, created (with parents) if missing."""
        try:
            return self.open(rel, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            pass
        parent, base = posixpath.split(rel)
        pfd = self.dir(parent)
        try:
            try:
                os.mkdir(base, 0o755, dir_fd=pfd)
            except FileExistsError:
                pass
        finally:
            os.close(pfd)
        return self.open(rel, os.O_PATH | os.O_DIRECTORY)


def clean_name(name: str) -> str:
    """A member name as a relative path inside the layer ('' for the root)."""
    p = posixpath.normpath("/" + name.replace("\\", "/"))
    return p.lstrip("/") if p != "/" else ""


def _component(base: str, what: str) -> str:
    """`base` if it is one plain name a directory can hold, else LayerError:
    ``..`` relative to a directory fd is its parent, ``.`` the directory itself."""
    if base in ("", ".", "..") or "/" in base or "\0" in base:
        raise LayerError(f"invalid {what} name {base!r} in layer")
    return base


def _remove(pfd: int, base: str) -> None:
    """Remove `base` (any type, recursively) inside directory fd `pfd`.
    `base` is one name: never ``..`` or a path, whatever the caller passes."""
    _component(base, "entry")
    try:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=pfd)
        try:
            for entry in os.listdir(dfd):
                _remove(dfd, entry)
        finally:
            os.close(dfd)
        os.rmdir(base, dir_fd=pfd)
    else:
        os.unlink(base, dir_fd=pfd)


#: rootless extraction (nsprim.rootless): files stay the user's; an owner
#: other than root is recorded in this xattr ("uid:gid") instead
OWNER_XATTR = "user.nsprim.owner"


def _in_userns() -> bool:
    from nsprim.rootless import in_user_namespace

    return in_user_namespace()


def _apply_meta(pfd: int, base: str, m: tarfile.TarInfo, is_link: bool, fd: int = -1) -> None:
    rootless = os.geteuid() != 0
    if rootless:
        if (m.uid, m.gid) != (0, 0) and not is_link:
            _record_owner(pfd, base, m, fd)
        if fd >= 0:
            os.fchmod(fd, m.mode & 0o7777)
        elif not is_link:
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
    elif fd >= 0:
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
    else:
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not is_link:
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
    xattrs = {k[len("SCHILY.xattr."):]: v for k, v in m.pax_headers.items()
              if k.startswith("SCHILY.xattr.")}
    if xattrs and not is_link:
        target = fd if fd >= 0 else os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                             dir_fd=pfd)
        try:
            for k, v in xattrs.items():
                val = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
                try:
                    os.setxattr(f"/proc/self/fd/{target}", k, val)
                except OSError:
                    pass  # a namespace this filesystem lacks: as docker, skip
        finally:
            if target != fd:
                os.close(target)


def _record_owner(pfd: int, base: str, m: tarfile.TarInfo, fd: int) -> None:
    """Rootless: keep the owner the archive gave (`uid:gid`) in an xattr."""
    target = fd if fd >= 0 else os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                         dir_fd=pfd)
    try:
        os.setxattr(f"/proc/self/fd/{target}", OWNER_XATTR, f"{m.uid}:{m.gid}".encode())
    except OSError:
        pass  # a filesystem without user xattrs: the owner is the user's, as is
    finally:
        if target != fd:
            os.close(target)


def extract_layer(stream: Readable, dest: str, *, whiteouts: bool = True) -> tuple[str, int]:
    """Extract the uncompressed tar `stream` into `dest`.

    Returns (diff_id, size): the sha256 of the tar and its length.  Raises
    LayerError for a corrupt archive.
    """
    import tarfile

    from nsprim.images.targuard import GuardedReader, TarGuard

    hashed = HashingReader(stream)
    # every header is checked on the raw bytes before tarfile parses it
    guarded = GuardedReader(hashed, TarGuard("layer"))
    root = _Root(dest)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    try:
        try:
            tar = tarfile.open(fileobj=io.BufferedReader(guarded, 1 << 16), mode="r|")
        except tarfile.TarError as e:
            raise LayerError(f"not a tar archive: {e}") from None
        with tar:
            try:
                for m in tar:
                    _extract_member(tar, m, root, dirs, whiteouts)
            except tarfile.TarError as e:
                raise LayerError(f"corrupt layer archive: {e}") from None
        hashed.drain()
        # directories last: creating their entries changed their times
        for rel, m in reversed(dirs):
            try:
                dfd = root.open(rel, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                os.utime(f"/proc/self/fd/{dfd}", ns=(int(m.mtime * 1e9),) * 2)
            except OSError:
                pass
            finally:
                os.close(dfd)
    finally:
        root.close()
    return hashed.digest(), hashed.count


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root: _Root,
                    dirs: list[tuple[str, tarfile.TarInfo]], whiteouts: bool) -> None:
    rel = clean_name(m.name)
    if rel == "":
        if m.isdir():
            dirs.append(("", m))
        return
    parent, base = posixpath.split(rel)
    pfd = root.dir(parent)
    try:
        if whiteouts and base == _OPAQUE:
            # rootless overlays are mounted with userxattr (nsprim.rootfs)
            from nsprim.rootless import in_user_namespace

            ns = "user" if os.geteuid() != 0 or in_user_namespace() else "trusted"
            os.setxattr(f"/proc/self/fd/{pfd}", f"{ns}.overlay.opaque", b"y")
            return
        if whiteouts and base.startswith(_WH + _WH):
            return  # other aufs metadata (.wh..wh.plnk, ...): skipped, as docker does
        if whiteouts and base.startswith(_WH):
            # the target gets the confinement of every other name: one
            # component inside the directory pfd, never "." or ".."
            name = _component(base[len(_WH):], "whiteout")
            _remove(pfd, name)
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
            return
        if m.isdir():
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    _remove(pfd, base)
                    os.mkdir(base, 0o700, dir_fd=pfd)
            except FileNotFoundError:
                os.mkdir(base, 0o700, dir_fd=pfd)
            _apply_meta(pfd, base, m, False)
            dirs.append((rel, m))
            return
        _remove(pfd, base)  # a later entry replaces an earlier one
        if m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                src = tar.extractfile(m)
                assert src is not None
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    os.write(fd, chunk)
                _apply_meta(pfd, base, m, False, fd)
                os.utime(fd, ns=(int(m.mtime * 1e9),) * 2)
            finally:
                os.close(fd)
            return
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            _apply_meta(pfd, base, m, True)
        elif m.islnk():
            target = clean_name(m.linkname)
            if not target:
                raise LayerError(f"hardlink {m.name!r} to the layer root")
            tparent, tbase = posixpath.split(target)
            tpfd = root.open(tparent, os.O_PATH | os.O_DIRECTORY)
            try:
                os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tpfd)
            return
        elif (m.ischr() or m.isblk()) and (os.geteuid() != 0 or _in_userns()):
            # rootless: no device nodes (as rootless podman); nodev would
            # make them useless in the container anyway
            import sys

            print(f"nsprim: skipped device node /{rel} (rootless)", file=sys.stderr)
            return
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(base, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor),
                     dir_fd=pfd)
            _apply_meta(pfd, base, m, False)
        else:
            return  # unknown member types are skipped, as docker does
        try:
            os.utime(base, ns=(int(m.mtime * 1e9),) * 2, dir_fd=pfd, follow_symlinks=False)
        except OSError:
            pass
    finally:
        os.close(pfd)


def open_layer_stream(raw: IO[bytes], media_type: str | None = None) -> tuple[IO[bytes], str]:
    """Wrap a (possibly compressed) layer blob for extract_layer."""
    buffered = io.BufferedReader(raw if isinstance(raw, io.RawIOBase) else _Raw(raw), 1 << 16)
    head = buffered.peek(4)[:4]
    kind = decompressor_for(media_type, head)
    if kind == "none":
        return buffered, kind
    return io.BufferedReader(_Inflate(buffered, kind), 1 << 16), kind


class _Raw(io.RawIOBase):
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)
