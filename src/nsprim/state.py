"""Where nsprim keeps things on the host, and small helpers for state files.

- state root (persistent): ``NSPRIM_ROOT``, default /var/lib/nsprim
- run dir (runtime: locks, per-boot state): ``NSPRIM_RUN``, default
  /run/nsprim, or ``$NSPRIM_ROOT/run`` when only NSPRIM_ROOT is set
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["state_root", "run_dir", "FileLock", "atomic_write"]


def state_root() -> str:
    return os.environ.get("NSPRIM_ROOT") or "/var/lib/nsprim"


def run_dir() -> str:
    run = os.environ.get("NSPRIM_RUN")
    if run:
        return run
    root = os.environ.get("NSPRIM_ROOT")
    return os.path.join(root, "run") if root else "/run/nsprim"


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
