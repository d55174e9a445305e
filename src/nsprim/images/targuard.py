"""Bounds on tar headers, checked on the raw bytes before ``tarfile`` sees them.

``tarfile`` reads an extended header (PAX ``x``/``g``/``X``, GNU long names
``L``/``K``) whole into memory, whatever size its header claims, and some
Python versions parse PAX records with regular expressions that are
quadratic in runs of digits (CVE-2024-6232).  Layers and ``load`` archives
are untrusted, so every header is checked here first, whatever the Python:

- an extended header larger than MAX_META (1 MiB) is refused;
- a PAX header must be well-formed records (``LEN KEY=VALUE\\n``, each LEN
  bytes long) and may hold no run of more than MAX_DIGITS ASCII digits, which
  keeps ``tarfile``'s regular expressions linear;
- at most MAX_CHAIN extended headers precede a member (``tarfile`` recurses
  once per header), at most one of them a PAX ``x`` header;
- global PAX headers are small (they are applied to every later member) and
  may not set ``size``; GNU sparse members are refused;
- optionally, at most `max_members` members (an archive ``tarfile`` indexes).

To find the headers, the guard follows the archive as ``tarfile`` does:
the data of regular members (and of types it does not know) is skipped,
rounded up to 512 bytes, with the size a PAX ``size`` record gives; other
types have no data; a zero block or a block with a bad checksum ends what
``tarfile`` reads, and the guard stops checking there too.
"""

from __future__ import annotations

import io
import re

from nsprim.images.layer import LayerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["TarGuard", "GuardedReader", "check_archive", "MAX_META"]

BLOCK = 512
MAX_META = 1 << 20          # one PAX or GNU long-name header
MAX_GLOBAL = 64 << 10       # all global PAX headers of an archive together
MAX_DIGITS = 32             # longest run of ASCII digits in a PAX header
MAX_CHAIN = 8               # extended headers in front of one member

_PAX = (b"x", b"X", b"g")
_LONG = (b"L", b"K")
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # link, symlink, chr, blk, dir, fifo
_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (MAX_DIGITS + 1))

_HEADER, _SKIP, _META, _DONE = range(4)


def _field(raw: bytes) -> int:
    """A numeric header field: octal text, or base-256 when the high bit is set.
    ValueError when it is neither (tarfile then stops reading)."""
    if raw[0] in (0x80, 0xFF):
        n = int.from_bytes(raw[1:], "big")
        return n - (256 ** (len(raw) - 1)) if raw[0] == 0xFF else n
    text = raw.split(b"\0", 1)[0].strip()
    return int(text or b"0", 8) if re.fullmatch(rb"[0-7]*", text) else int("x")


def _checksum_ok(hdr: bytes) -> bool:
    try:
        want = _field(hdr[148:156])
    except ValueError:
        return False
    rest = hdr[:148] + b" " * 8 + hdr[156:]
    unsigned = sum(rest)
    signed = sum(b - 256 if b > 127 else b for b in rest)
    return want in (unsigned, signed)


def _pax_records(data: bytes, what: str) -> dict[bytes, bytes]:
    """Parse PAX records linearly; LayerError unless every byte belongs to a
    well-formed record (NUL padding at the end aside)."""
    if _DIGIT_RUN.search(data):
        raise LayerError(f"{what}: a run of more than {MAX_DIGITS} digits in a PAX header")
    out: dict[bytes, bytes] = {}
    pos, end = 0, len(data.rstrip(b"\0"))
    while pos < end:
        sp = data.find(b" ", pos, pos + 9)
        if sp <= pos or not data[pos:sp].isdigit():
            raise LayerError(f"{what}: malformed PAX record at byte {pos}")
        length = int(data[pos:sp])
        stop = pos + length
        if length <= sp - pos + 1 or stop > end or data[stop - 1:stop] != b"\n":
            raise LayerError(f"{what}: malformed PAX record at byte {pos}")
        eq = data.find(b"=", sp + 1, stop - 1)
        if eq <= sp + 1:
            raise LayerError(f"{what}: malformed PAX record at byte {pos}")
        out[data[sp + 1:eq]] = data[eq + 1:stop - 1]
        pos = stop
    return out


def _pax_int(value: bytes) -> int:
    # as tarfile reads a PAX number: int() of the text, 0 when it is not one
    try:
        return int(value.decode("utf-8", "surrogateescape"))
    except ValueError:
        return 0


class TarGuard:
    """A push parser that follows a tar stream's headers (feed it every byte
    in order) and raises LayerError at the first header out of bounds."""

    def __init__(self, what: str = "archive", *, max_members: int | None = None) -> None:
        self.what = what
        self.max_members = max_members
        self.members = 0
        self.state = _HEADER
        self.hdr = bytearray()
        self.meta = bytearray()
        self.meta_type = b""
        self.meta_left = 0
        self.skip = 0
        self.chain = 0
        self.pax_size: int | None = None
        self.seen_x = False
        self.global_bytes = 0

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def skippable(self) -> int:
        """Bytes that can pass unseen now (member data)."""
        return self.skip if self.state == _SKIP else 0

    def skipped(self, n: int) -> None:
        """`n` bytes of member data (at most skippable()) went by unseen."""
        if not 0 <= n <= self.skippable():
            raise ValueError(f"cannot skip {n} bytes here")
        self._to_data(self.skip - n)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view) and self.state != _DONE:
            if self.state == _SKIP:
                n = min(self.skip, len(view))
                self.skip -= n
                view = view[n:]
                if self.skip == 0:
                    self.state = _HEADER
            elif self.state == _HEADER:
                n = min(BLOCK - len(self.hdr), len(view))
                self.hdr += view[:n]
                view = view[n:]
                if len(self.hdr) == BLOCK:
                    hdr, self.hdr = bytes(self.hdr), bytearray()
                    self._header(hdr)
            else:  # _META
                n = min(self.meta_left, len(view))
                self.meta += view[:n]
                self.meta_left -= n
                view = view[n:]
                if self.meta_left == 0:
                    self._meta_done()

    def _to_data(self, n: int) -> None:
        self.skip = n
        self.state = _SKIP if n else _HEADER

    def _header(self, hdr: bytes) -> None:
        if hdr.count(0) == BLOCK or not _checksum_ok(hdr):
            self.state = _DONE  # where tarfile stops reading members
            return
        try:
            size = _field(hdr[124:136])
        except ValueError:
            self.state = _DONE
            return
        kind = hdr[156:157]
        if size < 0:
            raise LayerError(f"{self.what}: a tar header with a negative size")
        if kind == b"S":
            raise LayerError(f"{self.what}: GNU sparse members are not supported")
        if kind in _PAX or kind in _LONG:
            self.chain += 1
            if self.chain > MAX_CHAIN:
                raise LayerError(f"{self.what}: more than {MAX_CHAIN} extended headers in "
                                 "front of one member")
            if size > MAX_META:
                raise LayerError(f"{self.what}: a {kind.decode()!r} extended header of "
                                 f"{size} bytes (the limit is {MAX_META})")
            if kind in (b"x", b"X"):
                if self.seen_x:
                    raise LayerError(f"{self.what}: two PAX headers in front of one member")
                self.seen_x = True
            if kind == b"g":
                self.global_bytes += size
                if self.global_bytes > MAX_GLOBAL:
                    raise LayerError(f"{self.what}: global PAX headers larger than "
                                     f"{MAX_GLOBAL} bytes")
            self.meta_type = kind
            self.meta = bytearray()
            self.meta_left = size
            self.state = _META
            if size == 0:
                self._meta_done()
            return
        self.members += 1
        if self.max_members is not None and self.members > self.max_members:
            raise LayerError(f"{self.what}: more than {self.max_members} members")
        name = hdr[0:100].split(b"\0", 1)[0]
        if kind == b"\0" and name.endswith(b"/"):
            kind = b"5"  # an old-style directory, as tarfile reads it
        if self.pax_size is not None:
            size = self.pax_size
        self.chain, self.seen_x, self.pax_size = 0, False, None
        self._to_data(0 if kind in _NO_DATA else -(-size // BLOCK) * BLOCK)

    def _meta_done(self) -> None:
        data = bytes(self.meta)
        size = len(data)
        self.meta = bytearray()
        if self.meta_type in _PAX:
            records = _pax_records(data, self.what)
            if any(k.startswith(b"GNU.sparse.") for k in records):
                raise LayerError(f"{self.what}: GNU sparse members are not supported")
            if self.meta_type == b"g":
                if b"size" in records:
                    raise LayerError(f"{self.what}: a global PAX header sets 'size'")
            elif b"size" in records:
                self.pax_size = _pax_int(records[b"size"])
                if self.pax_size < 0:
                    raise LayerError(f"{self.what}: a PAX header with a negative size")
        self._to_data(-(-size // BLOCK) * BLOCK - size)


class GuardedReader(io.RawIOBase):
    """Read through a TarGuard: what passes has had its headers checked."""

    def __init__(self, raw: IO[bytes] | io.RawIOBase, guard: TarGuard) -> None:
        self.raw = raw
        self.guard = guard

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        if n:
            self.guard.feed(data)
        b[:n] = data
        return n


def check_archive(f: IO[bytes], what: str, *, max_members: int | None = None,
                  max_bytes: int | None = None) -> None:
    """Check every header of the plain (uncompressed) tar `f`, from where it
    is to the end; member data is skipped by seeking when `f` can.  An
    archive longer than `max_bytes` is refused too."""
    guard = TarGuard(what, max_members=max_members)
    seekable = f.seekable()
    pos = 0
    while not guard.done:
        skip = guard.skippable()
        if max_bytes is not None and pos + skip > max_bytes:
            raise LayerError(f"{what}: longer than {max_bytes} bytes")
        if seekable and skip > (1 << 16):
            f.seek(skip, io.SEEK_CUR)
            guard.skipped(skip)
            pos += skip
            continue
        chunk = f.read(min(max(skip, BLOCK), 1 << 20))
        if not chunk:
            return
        pos += len(chunk)
        guard.feed(chunk)
