"""The one owner of ``nsp_spawn``: it lays a plan out for C, clones the
child, and runs the handshake (see the protocol in csrc/spawn.h).

Creating a container and exec'ing into one are siblings here, as runc's
create and setns processes are: the plan says which namespaces are new and
which are joined; this module does not care.  ``Container`` and
``Namespace.create`` both spawn through it.
"""

from __future__ import annotations

import _socket  # the C module: socket.py (with selectors, enum...) costs 2 ms to import
import os
import struct
from collections.abc import Callable

from nsprim._native import ffi, lib, raise_errno
from nsprim._record import record
from nsprim.plan import Plan, compile_plan

__all__ = ["Child", "spawn", "handshake", "MSG"]

#: struct nsp_msg: type, errno, op index, what (enum nsp_what)
MSG = struct.Struct("=iiii")


@record
class Child:
    """A child between clone and exec: its pid, pidfd, and our end of the
    socket.  `failed` holds (errno, op index, what) when a child that shared
    our memory failed before we woke up."""

    pid: int
    pidfd: int
    sock: _socket.socket
    failed: tuple[int, int, int] | None = None


def spawn(plan: Plan) -> Child:
    """Clone the child that executes `plan`.  Raises the OSError of clone3
    itself; a failure of the child's setup is the handshake's to report."""
    ops, keep = compile_plan(plan.ops)
    args = ffi.new("struct nsp_spawn_args *")
    args.flags = plan.clone_flags
    args.cgroup_fd = plan.cgroup_fd
    args.pidns_fd = -1  # a joined pid namespace is joined for the helper's fork (plan.py)
    args.timens_fd = plan.timens_fd
    args.exec_fd = plan.exec_fd
    args.ops = ops
    args.nops = len(plan.ops)
    res = ffi.new("struct nsp_spawn_result *")
    # one socket for the whole handshake: id maps, the terminal, and the
    # helper's exec (its EOF) or failure.  Without SYNC and PTY ops the child
    # shares our memory: we sleep until it has exec'd the helper or failed (a
    # failure is then also in res.report)
    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        try:
            args.sync_fd = child.fileno()
            args.parent_fd = parent.fileno()
            ret = lib.nsp_spawn(args, res)
            err = ffi.errno
        finally:
            child.close()
        del keep
        if ret < 0:
            raise_errno(err, "clone3 (spawn)")
    except BaseException:
        parent.close()
        raise
    failed = None
    if res.report.type == lib.NSP_MSG_ERROR:
        failed = (res.report.err, res.report.index, res.report.what)
    return Child(res.pid, res.pidfd, parent, failed)


Failure = tuple[int, int, int]  # errno, op index, what
_FD = struct.Struct("=i")


def _recv_fds(sock: _socket.socket, size: int) -> tuple[bytes, list[int]]:
    """One message and the fds passed with it (SCM_RIGHTS)."""
    data, anc, _flags, _addr = sock.recvmsg(size, _socket.CMSG_SPACE(4 * _FD.size))
    fds: list[int] = []
    for level, kind, blob in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [v for (v,) in _FD.iter_unpack(blob[:len(blob) - len(blob) % _FD.size])]
    return data, fds


def handshake(child: Child, on_ready: Callable[[], None]) -> tuple[int, Failure | None]:
    """Answer the child until it has exec'd: READY gets `on_ready()` (the id
    maps) then GO; PTY brings the terminal's master.  Returns (the master or
    -1, None) on success, or (..., (errno, op index, what)) if the child
    failed.  The socket is left open for the caller to close."""
    master = -1
    if child.failed is not None:
        return master, child.failed
    while True:
        data, fds = _recv_fds(child.sock, MSG.size)
        if not data:
            return master, None  # the close-on-exec end closed: the command runs
        mtype, err, index, what = MSG.unpack(data)
        if mtype == lib.NSP_MSG_PTY and fds:
            os.set_inheritable(fds[0], False)
            master = fds[0]
            continue
        for fd in fds:
            os.close(fd)
        if mtype == lib.NSP_MSG_READY:
            on_ready()
            child.sock.send(MSG.pack(lib.NSP_MSG_GO, 0, 0, 0))
        elif mtype == lib.NSP_MSG_ERROR:
            return master, (err, index, what)
