"""The compiled C core and the errno -> OSError helper.

`ffi` and `lib` come from the cffi extension built by ``csrc/build_ffi.py`` at
install time (``pip install .``); nothing is compiled at import.
"""

from __future__ import annotations

import os

from nsprim._nsprim_c import ffi, lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ffi", "lib", "check", "raise_errno", "cstr"]


def raise_errno(err: int, what: str, path: str | None = None) -> None:
    """Raise the OSError subclass of `err` (PermissionError, FileNotFoundError...)."""
    msg = f"{what} failed: {os.strerror(err)}"
    if path is None:
        raise OSError(err, msg)
    raise OSError(err, msg, path)


def check(ret: int, what: str, path: str | None = None) -> int:
    """Return `ret`, or raise an OSError built from errno if it is negative."""
    if ret < 0:
        raise_errno(ffi.errno, what, path)
    return ret


def cstr(s: str | bytes | None) -> Any:
    """A C string for cffi (NULL for None); the result must be kept alive."""
    if s is None:
        return ffi.NULL
    if isinstance(s, str):
        s = os.fsencode(s)
    return ffi.new("char[]", s)
