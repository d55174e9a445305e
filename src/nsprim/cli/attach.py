"""nsprim attach, start -a [-i], create: the created/started split and the
attach of the daemon's API, for the nsprim command (no daemon needed).

Attach reads what the container writes from its log (the supervisor's shim
writes it; a terminal's output as it comes) and sends our stdin to the
container: to its terminal's master side, which the supervisor holds
(``pidfd_getfd``), or to its stdin FIFO.  The exit status is the
container's when it ends while attached.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
from typing import Any

from nsprim.cli import _fail, _oneline

EXIT_ERROR = 1


def _emit(line: bytes, tty: bool) -> None:
    try:
        entry = json.loads(line)
    except ValueError:
        return
    if not isinstance(entry, dict):
        return
    data = str(entry.get("log", "")).encode("utf-8", "surrogateescape")
    out = sys.stderr if entry.get("stream") == "stderr" and not tty else sys.stdout
    out.buffer.write(data)
    out.flush()


def attach_loop(rec: Any, *, stdin: bool, t0: float, offset: int, fifo: int = -1) -> int:
    """Show the container's output from log byte `offset` and send it our
    stdin, until its run that began at `t0` ends; its exit code (or 0 if
    it is not running and will not be)."""
    from nsprim.daemon.streams import (
        LogTail,
        attach_ended,
        ended_since,
        exit_code_now,
        set_winsize,
        terminal_of,
    )
    from nsprim.supervise import stdin_path

    cfg = rec.config
    tty = bool(cfg.get("tty"))
    target = -1
    saved = None
    old_winch = None
    deadline = time.monotonic() + 30
    if stdin and tty:
        while target < 0:
            try:
                target = terminal_of(rec)
            except OSError:
                if time.monotonic() > deadline or ended_since(rec, t0):
                    break
                time.sleep(0.01)
    elif stdin and fifo >= 0:
        target = fifo
        os.set_blocking(target, True)
    elif stdin and cfg.get("interactive"):
        try:
            target = os.open(stdin_path(rec), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.set_blocking(target, True)
        except OSError:
            target = -1
    reading = target >= 0
    if tty and target >= 0 and os.isatty(0):
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(0)
        ttymod.setraw(0, termios.TCSANOW)

        def winch(_s: int, _f: Any) -> None:
            try:
                sz = os.get_terminal_size(0)
                set_winsize(target, sz.lines, sz.columns)
            except OSError:
                pass

        old_winch = signal.signal(signal.SIGWINCH, winch)
        winch(0, None)
    tail = LogTail(rec.log_path, offset)
    try:
        while True:
            lines = tail.lines()
            if lines:
                for line in lines:
                    _emit(line, tty)
                continue
            if attach_ended(rec, False, t0):
                for line in tail.rest():
                    _emit(line, tty)
                break
            ready, _, _ = select.select([0] if reading else [], [], [], 0.02)
            if ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    reading = False
                    if not tty:
                        # what was written stays in the FIFO only while it is
                        # open: close once the container holds it
                        while not rec.running and not ended_since(rec, t0) and \
                                time.monotonic() < deadline:
                            time.sleep(0.005)
                        os.close(target)
                        target = -1
                    continue
                try:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(target, view):]
                except OSError:
                    reading = False
    finally:
        tail.close()
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if target >= 0:
            os.close(target)
    ended = ended_since(rec, t0)
    code = exit_code_now(rec) if ended else 0
    if ended:
        from nsprim.lifecycle import wait_exited

        wait_exited(rec, 30)  # the supervisor has finished: rm, start work at once
    return int(code or 0)


def cmd_attach(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import find

    try:
        rec = find(a.container)
    except LookupError as e:
        print(f"Error: {_oneline(e)}", file=sys.stderr)
        return EXIT_ERROR
    if not rec.running:
        print("Error response from daemon: You cannot attach to a stopped container, start "
              "it first", file=sys.stderr)
        return EXIT_ERROR
    st = rec.state
    try:
        size = os.stat(rec.log_path).st_size
    except OSError:
        size = 0
    return attach_loop(rec, stdin=not a.no_stdin, t0=float(st.get("started_at") or time.time()),
                       offset=size)


def start_attached(rec: Any, interactive: bool) -> int:
    """start -a [-i]: start the container, then attach until it ends."""
    from nsprim.lifecycle import start_detached

    try:
        offset = os.stat(rec.log_path).st_size
    except OSError:
        offset = 0
    t0 = time.time()
    fifo = -1
    cfg = rec.config
    if interactive and cfg.get("interactive") and not cfg.get("tty"):
        from nsprim.supervise import stdin_path

        try:  # open before the start: the container's first read finds a writer
            os.mkfifo(stdin_path(rec), 0o600)
        except FileExistsError:
            pass
        fifo = os.open(stdin_path(rec), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    err = start_detached(rec)
    if err is not None:
        if fifo >= 0:
            os.close(fifo)
        return _fail(err)
    return attach_loop(rec, stdin=interactive, t0=t0, offset=offset, fifo=fifo)
