"""Kernel namespaces as objects: open, inspect, enter, create, persist.

setns(2) acts on the calling *thread*: `Namespace.enter()` switches only the
thread that calls it, and restores the previous namespace on exit.  The kernel
refuses to move a multi-threaded process into another mount or user namespace
(EINVAL); containers join those in their own child instead (see Container).
"""

from __future__ import annotations

import enum
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nsprim._native import check, ffi, lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["NamespaceKind", "Namespace"]

_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3) from linux/nsfs.h


class NamespaceKind(enum.Enum):
    """A kind of namespace; the value is its name under /proc/PID/ns/."""

    PID = "pid"
    NET = "net"
    MNT = "mnt"
    UTS = "uts"
    IPC = "ipc"
    USER = "user"
    CGROUP = "cgroup"
    TIME = "time"

    # members are singletons: identity hashing, in C (Enum's own is Python code)
    __hash__ = object.__hash__

    @property
    def flag(self) -> int:
        """The CLONE_NEW* flag of this kind."""
        return _FLAGS[self]

    @classmethod
    def parse(cls, value: NamespaceKind | str) -> NamespaceKind:
        if isinstance(value, NamespaceKind):
            return value
        try:
            return cls(value.lower())
        except (ValueError, AttributeError):
            from nsprim.errors import ConfigError

            names = ", ".join(k.value for k in cls)
            raise ConfigError(f"unknown namespace kind {value!r} (one of {names})") from None

    @classmethod
    def from_flag(cls, flag: int) -> NamespaceKind:
        for k in cls:
            if k.flag == flag:
                return k
        raise ValueError(f"not a namespace flag: {flag:#x}")


_FLAG_NAMES = {
    NamespaceKind.PID: "CLONE_NEWPID",
    NamespaceKind.NET: "CLONE_NEWNET",
    NamespaceKind.MNT: "CLONE_NEWNS",
    NamespaceKind.UTS: "CLONE_NEWUTS",
    NamespaceKind.IPC: "CLONE_NEWIPC",
    NamespaceKind.USER: "CLONE_NEWUSER",
    NamespaceKind.CGROUP: "CLONE_NEWCGROUP",
    NamespaceKind.TIME: "CLONE_NEWTIME",
}


_FLAGS = {k: int(getattr(lib, n)) for k, n in _FLAG_NAMES.items()}
# kinds a thread can unshare for itself in a multi-threaded process
_PER_THREAD = frozenset({NamespaceKind.NET, NamespaceKind.UTS, NamespaceKind.IPC,
                         NamespaceKind.CGROUP})


def _in_thread(fn: Callable[[], T], name: str) -> T:
    """Run `fn` in a thread of its own (namespace changes are per thread) and
    return its result, or raise its exception, here."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["r"] = fn()
        except BaseException as e:  # carried to the caller
            box["e"] = e

    import threading

    t = threading.Thread(target=work, name=name)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["r"]  # type: ignore[no-any-return]


class Namespace:
    """One namespace, held open by a file descriptor (close-on-exec).

    Create with :meth:`of` (a process's), :meth:`from_path`, :meth:`current`
    or :meth:`create`; use as a context manager to close it.
    """

    def __init__(self, fd: int, kind: NamespaceKind | str | None = None, *, owned: bool = True):
        self._fd = fd
        self._owned = owned
        actual = NamespaceKind.from_flag(fcntl.ioctl(fd, _NS_GET_NSTYPE))
        if kind is not None and NamespaceKind.parse(kind) is not actual:
            if owned:
                os.close(fd)
            raise ValueError(f"fd {fd} is a {actual.value} namespace, not {kind}")
        self.kind = actual

    # --- opening
    @classmethod
    def from_path(cls, path: str | os.PathLike[str], kind: NamespaceKind | str | None = None
                  ) -> Namespace:
        """Open a namespace file (/proc/PID/ns/KIND, or a persisted bind mount)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return cls(fd, kind)
        except OSError as e:
            os.close(fd)
            raise OSError(e.errno, f"{os.fspath(path)!r} is not a namespace file") from e

    @classmethod
    def of(cls, pid: int, kind: NamespaceKind | str) -> Namespace:
        """The namespace of `kind` that process `pid` is in."""
        k = NamespaceKind.parse(kind)
        return cls.from_path(f"/proc/{pid}/ns/{k.value}", k)

    @classmethod
    def current(cls, kind: NamespaceKind | str) -> Namespace:
        """The calling thread's namespace of `kind`."""
        k = NamespaceKind.parse(kind)
        return cls.from_path(f"/proc/thread-self/ns/{k.value}", k)

    @classmethod
    def create(cls, kind: NamespaceKind | str,
               then: Callable[[], object] | None = None) -> Namespace:
        """A new, empty namespace of `kind`, held by the returned object.

        The caller's own namespaces do not change.  Network, uts, ipc and
        cgroup namespaces are made by a short-lived thread that unshares its
        own (these are per thread), opens it and ends; `then`, if given, runs
        in that thread while it is inside the new namespace (e.g. to open a
        socket there).  Other kinds are made by a short-lived helper process.
        A new user namespace has no id mappings.
        """
        from nsprim import _spawn
        from nsprim.plan import Op, Plan  # a plan of one step: wait

        k = NamespaceKind.parse(kind)
        if k in _PER_THREAD:
            return cls._create_in_thread(k, then)
        if then is not None:
            raise ValueError(f"then= needs a per-thread namespace kind, not {k.value}")
        try:
            child = _spawn.spawn(Plan([Op(lib.NSP_OP_SYNC, "sync")], clone_flags=k.flag))
        except OSError as e:
            raise OSError(e.errno, f"clone3 (new {k.value} namespace) failed: "
                          f"{os.strerror(e.errno or 0)}") from None
        try:
            child.sock.recv(64)  # READY: the helper is in its namespaces
            return cls.of(child.pid, k)
        finally:
            child.sock.close()  # the helper exits on EOF
            os.waitpid(child.pid, 0)
            os.close(child.pidfd)

    @classmethod
    def _create_in_thread(cls, k: NamespaceKind, then: Callable[[], object] | None
                          ) -> Namespace:
        def work() -> int:
            check(lib.nsp_unshare(k.flag), f"unshare ({k.value})")
            fd = os.open(f"/proc/thread-self/ns/{k.value}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if then is not None:
                    then()
            except BaseException:
                os.close(fd)
                raise
            return fd

        return cls(_in_thread(work, f"nsprim-new-{k.value}-ns"), k)

    # --- properties
    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ValueError("namespace is closed")
        return self._fd

    @property
    def inode(self) -> int:
        """The namespace's inode number: equal inodes, same namespace."""
        return os.fstat(self.fd).st_ino

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Namespace):
            return NotImplemented
        a, b = os.fstat(self.fd), os.fstat(other.fd)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def __hash__(self) -> int:
        return hash((self.kind, self.inode))

    def __repr__(self) -> str:
        if self.closed:
            return f"<Namespace {self.kind.value} closed>"
        return f"<Namespace {self.kind.value}:[{self.inode}] fd={self._fd}>"

    # --- actions
    @contextmanager
    def enter(self) -> Iterator[Namespace]:
        """Switch the calling thread into this namespace for the with-block.

        The previous namespace is restored on exit.  For pid and time
        namespaces only children created inside the block are affected.
        """
        k = self.kind
        saved_path = "/proc/thread-self/ns/" + (
            "pid_for_children" if k is NamespaceKind.PID
            else "time_for_children" if k is NamespaceKind.TIME else k.value
        )
        saved = os.open(saved_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            check(lib.nsp_setns(self.fd, k.flag), f"setns ({k.value})")
            try:
                yield self
            finally:
                check(lib.nsp_setns(saved, k.flag), f"setns back ({k.value})")
        finally:
            os.close(saved)

    def run_in(self, fn: Callable[[], T]) -> T:
        """Call `fn` in a short-lived thread that is inside this namespace (the
        caller's thread never moves); its result is returned, its exception
        raised here.  Sockets made by `fn` stay in this namespace."""
        def work() -> T:
            with self.enter():
                return fn()

        return _in_thread(work, f"nsprim-in-{self.kind.value}-ns")

    def persist(self, path: str | os.PathLike[str]) -> None:
        """Keep the namespace alive at `path` (a bind mount of its nsfs file,
        as ``ip netns add`` does).  Undo with :meth:`unpersist`."""
        p = os.fspath(path)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
        os.close(fd)
        src = f"/proc/self/fd/{self.fd}".encode()
        try:
            check(lib.nsp_mount(src, os.fsencode(p), ffi.NULL, lib.MS_BIND, ffi.NULL),
                  "mount (persist namespace)", p)
        except BaseException:
            os.unlink(p)
            raise

    @staticmethod
    def unpersist(path: str | os.PathLike[str]) -> None:
        """Remove a namespace persisted with :meth:`persist`."""
        p = os.fspath(path)
        check(lib.nsp_umount2(os.fsencode(p), lib.MNT_DETACH), "umount (namespace)", p)
        os.unlink(p)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            if self._owned:
                os.close(fd)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
