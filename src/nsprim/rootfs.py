"""OverlayRootfs: read-only image layers under a fresh writable layer,
mounted as one overlayfs for a container.

    with OverlayRootfs(image.layers) as root:      # lowest layer first
        run([...], rootfs=root)                    # writes land in root.upper

The mount is made with the new mount API, one ``lowerdir+`` per layer
(kernel 6.8+), which has no length limit; older kernels get the classic
``lowerdir=a:b:c`` string through mount(2), with short symlinks standing in
for long paths when it would not fit a page.  The container layer (upper and
work dirs) lives under ``<state root>/containers/<id>`` and is removed on
exit unless ``keep=True``.  Each OverlayRootfs holds a lock file while
mounted; ``OverlayRootfs.collect()`` unmounts and removes what killed owners
left.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from nsprim import mount as m
from nsprim.state import FileLock, remove_tree, state_root

__all__ = ["OverlayRootfs"]

_PAGE = 4000  # mount(2) data must fit a page


def containers_dir() -> str:
    return os.path.join(state_root(), "containers")


class OverlayRootfs:
    """An overlay of `layers` (directories, lowest first) plus a writable layer."""

    def __init__(self, layers: Sequence[str | os.PathLike[str]], *, id: str | None = None,
                 keep: bool = False, readonly: bool = False, reuse: bool = False,
                 in_userns: bool = False) -> None:
        if not layers:
            raise ValueError("an overlay needs at least one layer")
        self.layers = [os.fspath(x) for x in layers]
        for d in self.layers:
            if not os.path.isdir(d):
                raise FileNotFoundError(2, "layer directory missing", d)
        self.id = id or os.urandom(16).hex()
        self.keep = keep
        self.readonly = readonly
        self.reuse = reuse  # mount over an existing container layer (a restart)
        self.dir = os.path.join(containers_dir(), self.id)
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.path = os.path.join(self.dir, "merged")
        self.mounted = False
        #: rootless: the container's child mounts it, in its user namespace
        #: (see mount_data); mount() only prepares the directories
        self.in_userns = in_userns
        self._lock: FileLock | None = None
        self._created = False

    def __fspath__(self) -> str:
        return self.path

    def mount(self) -> OverlayRootfs:
        if self.mounted:
            return self
        # private: the state root is 0700 (see nsprim.state); the container's
        # own files (upper, merged) keep the modes the container sees
        os.makedirs(containers_dir(), mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            if not self.reuse:
                raise FileExistsError(errno.EEXIST, "container layer exists", self.dir) from None
        self._created = True
        try:
            self._lock = FileLock(os.path.join(self.dir, "lock"))
            if self.keep:
                open(os.path.join(self.dir, "keep"), "w").close()
            for d in (self.upper, self.work, self.path):
                os.makedirs(d, 0o755, exist_ok=self.reuse)
            if not self.in_userns:
                self._mount()
                self.mounted = True
        except BaseException:
            self.close()
            raise
        return self

    def _mount(self) -> None:
        from nsprim.rootless import in_user_namespace

        if in_user_namespace():  # root of a user namespace (rootless build): userxattr
            m.mount("overlay", self.path, "overlay", m.MS_RDONLY if self.readonly else 0,
                    self.mount_data())
            return
        # lowerdir lists the top layer first
        lowers = list(reversed(self.layers))
        attrs = m.MOUNT_ATTR_RDONLY if self.readonly else 0
        try:
            # a layer removed at the end (keep=False: `run --rm`) is mounted
            # `volatile`: no sync of the whole upper filesystem at unmount
            # (overlayfs syncs it: milliseconds, tens under other I/O); what
            # it held is thrown away, so a crash loses nothing kept
            fd = m.fsmount("overlay", _fs_options(lowers, self.upper, self.work,
                                                   volatile=not self.keep), attrs)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENAMETOOLONG):
                raise
            fd = -1
        if fd >= 0:
            try:
                m.move_mount(fd, self.path)
            finally:
                os.close(fd)
            return
        lower = ":".join(lowers)
        data = f"lowerdir={lower},upperdir={self.upper},workdir={self.work}"
        if len(data) > _PAGE:
            links = os.path.join(self.dir, "l")
            os.mkdir(links, 0o700)
            short = []
            for i, layer in enumerate(lowers):
                os.symlink(layer, os.path.join(links, str(i)))
                short.append(f"l/{i}")
            data = f"lowerdir={':'.join(short)},upperdir=upper,workdir=work"
            cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.chdir(self.dir)  # relative names resolve from here
                m.mount("overlay", self.path, "overlay",
                        m.MS_RDONLY if self.readonly else 0, data)
            finally:
                os.fchdir(cwd)
                os.close(cwd)
            return
        m.mount("overlay", self.path, "overlay", m.MS_RDONLY if self.readonly else 0, data)

    def mount_data(self) -> str:
        """The overlay's mount(2) options for a mount inside a user namespace
        (``userxattr``: whiteouts and opaque directories in user.overlay.*).
        Long layer lists go through short symlinks under the container's
        directory, so the options fit a page."""
        lowers = list(reversed(self.layers))
        data = (f"lowerdir={':'.join(lowers)},upperdir={self.upper},workdir={self.work},"
                "userxattr")
        if len(data) <= _PAGE:
            return data
        links = os.path.join(self.dir, "l")
        os.makedirs(links, 0o700, exist_ok=True)
        short = []
        for i, layer in enumerate(lowers):
            link = os.path.join(links, str(i))
            if not os.path.islink(link):
                os.symlink(layer, link)
            short.append(link)
        return (f"lowerdir={':'.join(short)},upperdir={self.upper},workdir={self.work},"
                "userxattr")

    def unmount(self) -> None:
        if self.mounted:
            try:
                m.umount(self.path)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                m.umount(self.path, m.MNT_DETACH)
            self.mounted = False

    def held_fds(self) -> list[int]:
        """The fd of the lock that marks this layer in use (mounted).  A
        process that takes the container over keeps it open; collection
        leaves the layer alone while it is."""
        return [self._lock.fd] if self._lock is not None and self._lock.fd >= 0 else []

    def close(self) -> None:
        """Unmount and (unless kept) remove the container layer.  Idempotent."""
        self.unmount()
        if self._created and not self.keep:
            if self.reuse:  # the directory is a container record's: remove only ours
                for d in (self.upper, self.work, self.path, os.path.join(self.dir, "l")):
                    remove_tree(d)
            else:
                remove_tree(self.dir)
            self._created = False
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> OverlayRootfs:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OverlayRootfs {self.path} layers={len(self.layers)} mounted={self.mounted}>"

    @staticmethod
    def collect() -> list[str]:
        """Unmount and remove container layers whose owner is gone (lock free)."""
        base = containers_dir()
        out: list[str] = []
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            return out
        for name in names:
            d = os.path.join(base, name)
            lockf = os.path.join(d, "lock")
            if not os.path.exists(lockf):
                continue
            lock = FileLock.try_acquire(lockf)
            if lock is None:
                continue
            try:
                merged = os.path.join(d, "merged")
                if os.path.ismount(merged):
                    m.umount(merged, m.MNT_DETACH)
                if os.path.exists(os.path.join(d, "keep")):
                    continue
                remove_tree(d)
                out.append(name)
            finally:
                lock.release()
        return out


def _fs_options(lowers: list[str], upper: str, work: str, *,
                volatile: bool = False) -> list[tuple[str, str | bool]]:
    opts: list[tuple[str, str | bool]] = [("lowerdir+", d) for d in lowers]
    opts += [("upperdir", upper), ("workdir", work)]
    return opts + [("volatile", True)] if volatile else opts
