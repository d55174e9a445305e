"""Bridges removed without waiting for the kernel.

Deleting a network device waits for an RCU barrier in the kernel: 30-55 ms
here, whatever the device, most of ``network rm``.  `bury()` takes a bridge
out of service at once
instead -- down (its routes go with it), its IPv4 addresses deleted, renamed
``nspgr-<9 hex>`` so that its name is free for the next network -- and a
detached ``ip link delete`` (its own session, stdio on /dev/null, after
`DELAY` seconds) pays the wait.  Taking it down, deleting an address and renaming cost about 0.2 ms
each.

Nothing leaks: the reaper holds a lock file under
``/run/nsprim-host/graveyard/`` (its fd is passed to it) while it runs, and
`reap()` -- run by every `bury()` and by :func:`nsprim.collect.collect` when a
graveyard link exists -- deletes each graveyard link whose lock nobody holds
(a killed reaper, or a host without ``ip``) and drops stale lock files.  A
graveyard link belongs to no state root: only a bridge that no container of
any root uses any more is buried, so any root may finish it off.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket

from nsprim.network.rtnl import Rtnl

__all__ = ["PREFIX", "bury", "reap", "graves"]

PREFIX = "nspgr-"
_IP = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")
_children: list[int] = []
#: seconds a buried bridge waits before its deletion (a burst of commands --
#: a script's ``network create``, ``run``, ``rm`` -- is not slowed by it)
DELAY = os.environ.get("NSPRIM_GRAVEYARD_DELAY") or "0.5"


def _dir() -> str:
    from nsprim.network.bridge import HOST_DIR
    from nsprim.state import private_dir

    private_dir(HOST_DIR)
    return private_dir(os.path.join(HOST_DIR, "graveyard"))


def graves() -> list[str]:
    """The graveyard links on the host."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(PREFIX))
    except OSError:
        return []


def _lock(path: str, blocking: bool) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _wait_children() -> None:
    for pid in list(_children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else
            done = pid
        if done:
            _children.remove(pid)


def bury(rt: Rtnl, name: str, addresses: tuple[tuple[str, int], ...] = ()) -> str | None:
    """Take the bridge `name` out of service now and delete it in the
    background; `addresses` (IPv4 address, prefix length) are deleted first.
    Returns its graveyard name (None if there was no such link).  Falls back
    to deleting it here (and waiting) if a step fails."""
    try:
        idx = socket.if_nametoindex(name)
    except OSError:
        return None
    _wait_children()
    grave = PREFIX + secrets.token_hex(5)[:9]
    directory = _dir()
    lock = os.path.join(directory, grave + ".lock")
    fd = _lock(lock, True)
    assert fd is not None
    try:
        try:
            rt.set_link(idx, up=False)
            for address, plen in addresses:
                try:
                    rt.del_addr(idx, address, plen)
                except OSError as e:
                    if e.errno != errno.EADDRNOTAVAIL:
                        raise
            rt.rename_link(idx, grave)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            rt.del_link(name)  # the slow way
            _unlink(lock)
            return None
        if not _spawn_reaper(grave, fd, lock):
            try:
                rt.del_link(grave)
            except OSError:
                pass
            _unlink(lock)
    finally:
        os.close(fd)
    reap(skip=grave)
    return grave


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _spawn_reaper(grave: str, lock_fd: int, lock_path: str) -> bool:
    """``ip link delete GRAVE`` in its own session, holding `lock_fd` (as fd
    3 or 4) until it exits; False if there is no ``ip``."""
    ip = next((p for p in _IP if os.access(p, os.X_OK)), None)
    if ip is None or not os.access("/bin/sh", os.X_OK):
        return False
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        target = 3 if lock_fd != 3 else 4
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_DUP2, lock_fd, target)]
        # nothing else of this process: an inherited fd (a supervisor's
        # published-port holders) would stay open as long as the reaper
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()
                    if fd > 2 and fd not in (target, lock_fd, devnull)]
        try:
            # `sh -c 'sleep D; ip link delete GRAVE; rm -f LOCK'`: the delay
            # keeps the kernel's wait (RTNL held ~15 ms of it) off the next
            # commands; the lock file goes once the link is gone
            pid = os.posix_spawn("/bin/sh", ["sh", "-c", 'sleep "$1"; "$2" link delete "$0"; '
                                             'exec rm -f "$3"', grave, DELAY, ip, lock_path],
                                 {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                                 file_actions=actions, setsid=True)
        except OSError:
            return False
    finally:
        os.close(devnull)
    _children.append(pid)
    return True


def _inheritable_fds() -> list[int]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if os.get_inheritable(fd):
                out.append(fd)
        except (ValueError, OSError):
            continue  # the listing's own fd, closed by now
    return out


def reap(skip: str | None = None) -> list[str]:
    """Delete the graveyard links no reaper is working on (waiting for the
    kernel); drop stale lock files.  Returns the names deleted."""
    names = graves()
    try:
        directory = _dir()
        files = os.listdir(directory)
    except OSError:
        return []
    out: list[str] = []
    for name in names:
        if name == skip:
            continue
        path = os.path.join(directory, name + ".lock")
        fd = _lock(path, False)
        if fd is None:
            continue  # its reaper is at it
        try:
            try:
                with Rtnl() as rt:
                    rt.del_link(name)
                out.append(name)
            except OSError:
                pass
            _unlink(path)
        finally:
            os.close(fd)
    for f in files:
        if not f.endswith(".lock") or f[:-5] in names:
            continue
        path = os.path.join(directory, f)
        fd = _lock(path, False)
        if fd is not None:
            if not os.path.exists(f"/sys/class/net/{f[:-5]}"):
                _unlink(path)
            os.close(fd)
    return out
