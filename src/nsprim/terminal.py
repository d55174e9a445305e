"""The terminal side of ``-t``: our terminal in raw mode, copied to and from
the container's terminal (whose master nsprim holds), with the window size
kept in step, until the container's side ends."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
__all__ = ["proxy"]


def proxy(master: int, ended: Callable[[], bool], stdin: int = -1, stdout: int = 1,
          output: Callable[[bytes], None] | None = None) -> None:
    """Copy between `stdin` (made raw if a terminal; -1: none) / `stdout`
    and the terminal `master` until `master` hangs up, or `ended()` and
    nothing more is to be read.  Input typed before the container was ready
    is kept (raw mode is set without flushing: TCSANOW).  `output(data)`,
    if given, also gets what the container's terminal writes (its log)."""
    import fcntl
    import struct
    import termios
    import tty

    saved = None
    if stdin >= 0 and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)

    def winsize(*_: Any) -> None:
        if stdin >= 0 and os.isatty(stdin):
            size = fcntl.ioctl(stdin, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

    def copy_out() -> bool:
        """One read of the container's side, copied out; False at its end."""
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if data:
            os.write(stdout, data)
            if output is not None:
                output(data)
        return bool(data)

    old = signal.signal(signal.SIGWINCH, winsize)
    winsize()
    ours = stdin
    try:
        while True:
            fds = [master] + ([ours] if ours >= 0 else [])
            ready, _, _ = select.select(fds, [], [], 0.2)
            if master in ready and not copy_out():
                break
            if ours >= 0 and ours in ready:
                data = os.read(ours, 65536)
                if not data:
                    ours = -1
                else:
                    os.write(master, data)
            if ended() and master not in ready:
                # the container has ended: what it wrote last may still be on
                # its way through the terminal (the kernel moves it to our
                # side asynchronously), so read until the side hangs up or
                # stays quiet for a moment
                while select.select([master], [], [], 0.1)[0] and copy_out():
                    pass
                break
    finally:
        signal.signal(signal.SIGWINCH, old)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
