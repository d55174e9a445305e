"""Where nsprim keeps things on the host, and small helpers for state files.

- state root (persistent): ``NSPRIM_ROOT``, default /var/lib/nsprim
  (rootless: ``$XDG_DATA_HOME/nsprim``, default ~/.local/share/nsprim)
- run dir (runtime: locks, per-boot state): ``NSPRIM_RUN``, default
  /run/nsprim, or ``$NSPRIM_ROOT/run`` when only NSPRIM_ROOT is set
  (rootless: ``$XDG_RUNTIME_DIR/nsprim``, else ``<state root>/run``)

Both are private to their owner (mode 0700, like docker's /var/lib/docker
0710): container roots, volume data, image layers and logs below them are
unreachable to other host users, so no one else can read a container's files
or run a setuid binary that a container wrote into its own filesystem.  The
mode is enforced on first use in each process, also on a root an older
version made 0711/0755; a root owned by another user is refused.

``root_id()`` is a short stable id of the state root: host objects that all
roots share a namespace for (cgroups) carry it, so that one root only ever
collects its own.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat

from nsprim._digest import sha256_hex

__all__ = ["state_root", "run_dir", "root_id", "private_dir", "FileLock", "atomic_write",
           "remove_tree"]

_private: set[str] = set()  # directories already made private by this process


def private_dir(path: str) -> str:
    """Create `path` (mode 0700) or make an existing one 0700; refuse one that
    another user owns when running as root.  Checked once per process."""
    if path in _private:
        return path
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, 0o755, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "nsprim state path is not a directory", path)
    if st.st_uid != os.geteuid():
        if os.geteuid() == 0:
            raise PermissionError(errno.EPERM, f"nsprim state directory is owned by uid "
                                  f"{st.st_uid}, not root: refusing to use it", path)
        from nsprim.rootless import check_owned

        check_owned(path)  # rootless: another user's directory is refused too
    elif stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    _private.add(path)
    return path


#: (state root, run dir) chosen explicitly by use_root(), else None
_chosen: tuple[str, str] | None = None


def use_root(root: str, run: str | None = None) -> None:
    """Make `root` this process's state root, and `run` (default
    `root`/run) its run dir: the CLI's ``--root`` and the supervisor's
    arguments.  The environment is not changed; NSPRIM_ROOT and NSPRIM_RUN
    only give the defaults."""
    global _chosen
    root = os.path.abspath(root)
    _chosen = (root, os.path.abspath(run) if run else os.path.join(root, "run"))


def root_args() -> list[str]:
    """The arguments that give a child process of nsprim's this state root
    and run dir (``--root R --run D``), whichever way they were chosen."""
    return ["--root", os.path.abspath(_root_path()), "--run", os.path.abspath(_run_path())]


def _root_path() -> str:
    if _chosen is not None:
        return _chosen[0]
    root = os.environ.get("NSPRIM_ROOT")
    if root:
        return os.path.abspath(root)  # (bind sources and leases name it)
    if os.geteuid() != 0:  # rootless: $XDG_DATA_HOME/nsprim (nsprim.rootless)
        from nsprim.rootless import data_home

        return os.path.join(data_home(), "nsprim")
    return "/var/lib/nsprim"


def _run_path() -> str:
    if _chosen is not None:
        return _chosen[1]
    run = os.environ.get("NSPRIM_RUN")
    if run:
        return os.path.abspath(run)
    root = os.environ.get("NSPRIM_ROOT")
    if root:
        return os.path.join(os.path.abspath(root), "run")
    if os.geteuid() != 0:  # rootless: $XDG_RUNTIME_DIR/nsprim, else in the state root
        from nsprim.rootless import runtime_dir

        xdg = runtime_dir()
        return os.path.join(xdg, "nsprim") if xdg else os.path.join(_root_path(), "run")
    return "/run/nsprim"


def state_root() -> str:
    """The state root, created private (0700) if need be."""
    return private_dir(_root_path())


def run_dir() -> str:
    """The run dir, created private (0700) if need be."""
    run = _run_path()
    if run.startswith(_root_path().rstrip("/") + "/"):
        state_root()  # the run dir is inside the root: the root first, private
    return private_dir(run)


def root_id() -> str:
    """12 hex digits naming this state root (and run dir) on the host."""
    return _root_id(_root_path(), _run_path())


@functools.lru_cache(maxsize=8)
def _root_id(root: str, run: str) -> str:
    key = f"{os.path.realpath(root)}\0{os.path.realpath(run)}"
    return sha256_hex(key.encode())[:12]


class FileLock:
    """An exclusive flock on a file (close-on-exec), held until release()."""

    def __init__(self, path: str, *, blocking: bool = True) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    @classmethod
    def try_acquire(cls, path: str) -> FileLock | None:
        """The lock if nobody holds it, else None."""
        try:
            return cls(path, blocking=False)
        except BlockingIOError:
            return None

    def release(self, *, unlink: bool = False) -> None:
        if self.fd >= 0:
            if unlink:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write, fsync, rename: readers see the old file or the new one.  State
    that does not outlive a boot (the run dir) skips the fsync (`durable`)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def remove_tree(path: str) -> None:
    """Remove the directory tree `path`, ignoring errors: what
    ``shutil.rmtree(path, ignore_errors=True)`` does, without importing
    shutil (and its compression modules: 2 ms) on the CLI's path.  Like
    shutil's, it works relative to directory fds and never follows a symlink:
    a link inside the tree is removed, not what it points at."""
    try:
        walk = os.fwalk(path, topdown=False)
        for _top, dirs, files, fd in walk:
            for name in files:
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
            for name in dirs:
                try:
                    os.rmdir(name, dir_fd=fd)
                except NotADirectoryError:  # a symlink to a directory
                    try:
                        os.unlink(name, dir_fd=fd)
                    except OSError:
                        pass
                except OSError:
                    pass
        os.rmdir(path)
    except OSError:
        if os.geteuid() != 0 and os.path.lexists(path):
            # rootless: files of subordinate ids, or unreadable directories
            # (overlay's work dir) go through the user namespace
            from nsprim import rootless

            rootless.remove_tree(path)
