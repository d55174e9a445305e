"""sha256 of small inputs (names, ids, a profile's text) without loading
OpenSSL: importing `hashlib` costs about 1.5 ms, a sixth of the CLI's budget.
Layers and blobs, which are large, still use hashlib (OpenSSL is faster there)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["sha256_hex"]


def _builtin() -> Callable[[bytes], Any]:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]  # 3.10, 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # 3.12+
        except ImportError:  # another interpreter
            from hashlib import sha256
    f: Callable[[bytes], Any] = sha256
    return f


_sha256: Callable[[bytes], Any] | None = None


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data`, as hex digits."""
    global _sha256
    if _sha256 is None:
        _sha256 = _builtin()
    digest: str = _sha256(data).hexdigest()
    return digest
