"""Run a command (as root) in a user namespace of its own whose
user.max_user_namespaces is 0: a host where unprivileged user namespaces are
off, without touching the host's setting.  Maps root and UID (argv 1, GID
argv 2) so that the command may drop to that user (setpriv).  Exits with the
command's status."""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main() -> int:
    uid, gid, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(ready_r)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(90)
        os.write(ready_w, b"x")
        os.read(go_r, 1)
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
        os.execvp(argv[0], argv)
    os.close(go_r)
    os.close(ready_w)
    os.read(ready_r, 1)
    for name, text in (("uid_map", f"0 0 1\n{uid} {uid} 1\n"),
                       ("gid_map", f"0 0 1\n{gid} {gid} 1\n")):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
