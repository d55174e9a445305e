"""The sealed exec helper: what every container's command is exec'd through.

A container's first process is a clone of the calling (Python) process until
it execs.  Were it to exec the command itself, a command of
``/proc/self/exe`` (or a symlink or ``#!`` line to it) would run the host's
interpreter inside the container, and a process there could keep a handle on
that host file and rewrite it (the runc CVE-2019-5736 class).

So the child execs ``nsprim-init`` (csrc/init.c, a freestanding binary of a
few KiB) from a memfd sealed against every change, and nsprim-init execs the
command (or, for ``init=True``, stays as PID 1).  At the command's execve,
``/proc/self/exe`` is that sealed copy: nothing a container can write, and no
host file.  The memfd is made once per process.
"""

from __future__ import annotations

import _thread
import fcntl
import os

__all__ = ["helper_fd", "HELPER_PATH"]

#: the helper as installed inside the package (built by setup.py)
HELPER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsprim-init")

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_MFD_EXEC = 0x10  # linux/memfd.h (6.3+): executable, whatever vm.memfd_noexec says
_lock = _thread.allocate_lock()
_fd = -1
_pid = -1


def _make() -> int:
    with open(HELPER_PATH, "rb") as f:
        data = f.read(1 << 20)
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create("nsprim-init", flags | _MFD_EXEC)
    except OSError:  # kernels before 6.3 know no MFD_EXEC
        fd = os.memfd_create("nsprim-init", flags)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o555)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def helper_fd() -> int:
    """A close-on-exec fd of the sealed helper (owned by this module; do not close).

    The seals stop every write, but not chmod/chown: root in a container can
    change the mode through /proc/1/exe (of an --init), which would make the
    next container's exec fail.  So the mode is checked (one fstat) and put
    back before every use."""
    global _fd, _pid
    with _lock:
        if _fd < 0 or _pid != os.getpid():
            _fd, _pid = _make(), os.getpid()
        st = os.fstat(_fd)
        uid, gid = os.geteuid(), os.getegid()
        if st.st_mode & 0o7777 != 0o555 or st.st_uid != uid or st.st_gid != gid:
            try:
                os.fchown(_fd, uid, gid)
                os.fchmod(_fd, 0o555)
            except OSError:  # not ours to fix (not root): a new one
                _fd = _make()
        return _fd
