"""A network for one user's rootless containers (``--network usernet``), as
rootless podman's rootless-netns: they reach each other by IP address.

Without root, a process cannot move a veth into a namespace that a user
namespace of its own owns unless it holds capabilities there, and each
rootless container has a user namespace of its own.  So the user's
containers on this network all live in one **user namespace and network
namespace per user**, kept by a small holder process (``nsprim-usernet``)
started on demand in the user's run dir:

- the holder unshares a user namespace (full mapping: newuidmap and the
  user's subordinate range, container ids = the rootless containers' ids)
  and a network namespace; pasta is attached to it once, for outbound
  traffic through the host's sockets;
- a command that runs a container on this network (`nsprim run --network
  usernet ...`) re-runs itself joined to the holder's user and network
  namespaces (and a mount namespace of its own) as root of that user
  namespace, with the user's own state root and run dir: there nsprim's
  bridge network works as for root (the bridge ``nsprim0``, a veth per
  container, NAT towards pasta's interface), inside the user's namespace
  only -- nothing is created on the host;
- the holder ends when no container is on its bridge and no command holds
  a lease (``leases/*.lock``, flocked), ending pasta first: the network
  namespace goes with it.

Another user's containers are in another user's namespaces: they cannot
reach these (and a user without a delegated cgroup still has no limits).
Not done: ``-p`` publishing on this network (the per-container pasta of the
default rootless network does it), DNS names.
"""

from __future__ import annotations

import os

__all__ = ["NAME", "INNER_ENV", "run_in_usernet", "holder_pid", "usernet_dir"]

NAME = "usernet"
#: set for the command re-run inside the user's namespaces: its usernet is bridge
INNER_ENV = "NSPRIM_IN_USERNET"
_MARK = "nsprim-usernet"

#: the holder: a user and network namespace of its own; once its maps are
#: written and pasta attached ("go"), it stays until its bridge has no port
#: and no lease is held (checked every half second, after a grace period)
_HOLDER = r"""
import ctypes, fcntl, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x40000000) != 0:
    sys.exit("unshare(user, net): " + os.strerror(ctypes.get_errno()))
sys.stdout.write("ready\n")
sys.stdout.flush()
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
d = sys.argv[2]
leases = os.path.join(d, "leases")


def busy():
    if any(n.startswith("nsp") and n != "nsprim0" for _i, n in socket.if_nameindex()):
        return True
    try:
        names = os.listdir(leases)
    except OSError:
        return False
    for n in names:
        try:
            fd = os.open(os.path.join(leases, n), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        try:
            os.unlink(os.path.join(leases, n))  # a lease nobody holds: a leftover
        except OSError:
            pass
    return False


time.sleep(2.0)
idle = 0
while idle < 3:
    time.sleep(0.5)
    idle = 0 if busy() else idle + 1
try:
    with open(os.path.join(d, "holder.pid")) as f:
        if f.read().strip() == str(os.getpid()):
            os.unlink(os.path.join(d, "holder.pid"))
except OSError:
    pass
# pasta outlives the namespace it served: end it (checked to be that pasta)
pidfile = os.path.join(d, "pasta.pid")
try:
    with open(pidfile) as f:
        pid = int(f.read().strip())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().split(b"\0")
    if os.path.basename(cmd[0]) == b"pasta" and os.fsencode(pidfile) in cmd:
        os.kill(pid, 15)
    os.unlink(pidfile)
except (OSError, ValueError):
    pass
"""

#: join the holder's user and network namespaces, then a mount namespace of
#: our own (private), and exec the command as root of that user namespace
_ENTER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = sys.argv[1]
fds = [os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC) for k in ("user", "net")]
for fd, kind in zip(fds, (0x10000000, 0x40000000)):
    if libc.setns(fd, kind) != 0:
        sys.exit("nsprim: joining the user network (setns): " + os.strerror(ctypes.get_errno()))
    os.close(fd)
if libc.unshare(0x20000) != 0 or libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:
    sys.exit("nsprim: a mount namespace for the user network: "
             + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[2], sys.argv[2:])
"""


def usernet_dir() -> str:
    """This user's usernet directory (in the rootless run dir)."""
    from nsprim.state import run_dir

    d = os.path.join(run_dir(), NAME)
    os.makedirs(os.path.join(d, "leases"), 0o700, exist_ok=True)
    return d


def holder_pid(d: str | None = None) -> int | None:
    """The running holder's pid, checked to be this user's holder of `d`."""
    d = d or usernet_dir()
    try:
        with open(os.path.join(d, "holder.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    if _MARK.encode() in cmd and os.fsencode(d) in cmd:
        return pid
    return None


def _start_holder(d: str) -> int:
    import subprocess
    import sys

    from nsprim.rootless import RootlessError, _full_parts, mapping, start_pasta
    from nsprim.state import atomic_write

    m = mapping("auto")
    if not m.helper:
        why = _full_parts()
        raise RootlessError(f"--network {NAME} needs a full id mapping: "
                            f"{why if isinstance(why, str) else 'newuidmap failed'}")
    p = subprocess.Popen([sys.executable, "-I", "-c", _HOLDER, _MARK, d],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True,
                         cwd="/")
    assert p.stdin is not None and p.stdout is not None
    try:
        if p.stdout.readline() != b"ready\n":
            raise RootlessError(f"--network {NAME}: the namespace holder failed to start")
        m.write(p.pid)
        start_pasta(p.pid, [], os.path.join(d, "pasta.pid"))
        atomic_write(os.path.join(d, "holder.pid"), str(p.pid).encode(), 0o600)
        p.stdin.write(b"go\n")
        p.stdin.close()
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        p.stdout.close()
    return p.pid


def run_in_usernet(argv: list[str]) -> int:
    """Run `argv` (an nsprim command whose containers use the bridge network)
    joined to this user's usernet namespaces, starting the holder if need
    be; a lease keeps the holder while it runs.  Returns its exit status."""
    import fcntl
    import subprocess
    import sys

    from nsprim.state import FileLock, _root_path, _run_path

    d = usernet_dir()
    lock = FileLock(os.path.join(d, "lock"))
    try:
        pid = holder_pid(d) or _start_holder(d)
        lease = os.path.join(d, "leases", f"{os.getpid()}-{os.urandom(4).hex()}.lock")
        lfd = os.open(lease, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(lfd, fcntl.LOCK_EX)
    finally:
        lock.release()
    try:
        os.set_inheritable(lfd, True)  # held by the command (and what it leaves running)
        env = dict(os.environ, NSPRIM_ROOT=os.path.abspath(_root_path()),
                   NSPRIM_RUN=os.path.abspath(_run_path()),
                   NSPRIM_HOST_DIR=os.path.join(d, "host"), **{INNER_ENV: "1"})
        p = subprocess.Popen([sys.executable, "-I", "-c", _ENTER, str(pid), *argv], env=env,
                             pass_fds=(lfd,))
        try:
            return p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
    finally:
        os.close(lfd)
        try:
            os.unlink(lease)
        except OSError:
            pass
