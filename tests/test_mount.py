"""The mount wrappers, used for real in a forked child of our own that has a
private mount namespace, so that nothing reaches the host's mount table."""

from __future__ import annotations

import errno
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nsprim import mount as m


def in_private_mount_ns(fn: Callable[[], object]) -> object:
    """Run fn in a forked child that unshared its mount namespace (private
    propagation); returns fn's result or re-raises its exception."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        try:
            from nsprim._native import check, lib

            check(lib.nsp_unshare(lib.CLONE_NEWNS), "unshare")
            m.mount(None, "/", flags=m.MS_REC | m.MS_PRIVATE)
            q.put(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 - carried back to the test
            q.put(("err", e))

    p = ctx.Process(target=child)
    p.start()
    kind, value = q.get(timeout=30)
    p.join(30)
    if kind == "err":
        raise value
    return value


def test_tmpfs_mount_and_umount(root: None, tmp_path: Path) -> None:
    def go() -> tuple[bool, bool]:
        m.mount("tmpfs", tmp_path, "tmpfs", m.MS_NOSUID, "size=1m")
        (tmp_path / "f").write_text("x")
        mounted = os.path.ismount(tmp_path)
        m.umount(tmp_path)
        return mounted, (tmp_path / "f").exists()

    assert in_private_mount_ns(go) == (True, False)
    assert not os.path.ismount(tmp_path)


def test_readonly_bind(root: None, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("hello")

    def go() -> tuple[str, int]:
        m.bind(src, dst, readonly=True)
        text = (dst / "f").read_text()
        try:
            (dst / "g").write_text("no")
            code = 0
        except OSError as e:
            code = e.errno or 0
        return text, code

    assert in_private_mount_ns(go) == ("hello", errno.EROFS)


def test_fsmount_and_move_mount(root: None, tmp_path: Path) -> None:
    def go() -> bool:
        fd = m.fsmount("tmpfs", {"size": "1m", "mode": "0755"})
        with m.MountFd(fd) as mfd:
            m.move_mount(mfd.fd, tmp_path)
        return os.path.ismount(tmp_path)

    assert in_private_mount_ns(go) is True


def test_fsmount_bad_option_names_it(root: None) -> None:
    def go() -> None:
        m.fsmount("tmpfs", {"nosuchoption": "1"})

    with pytest.raises(OSError, match="nosuchoption"):
        in_private_mount_ns(go)


def test_errors_name_syscall_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as ei:
        m.open_tree(missing)
    assert ei.value.filename == str(missing)
    assert "open_tree" in str(ei.value)


def test_pivot_root_in_container_namespace(root: None, rootfs: str) -> None:
    # pivot_root into the rootfs from a child of our own
    def go() -> list[str]:
        m.bind(rootfs, rootfs)
        os.chdir(rootfs)
        m.pivot_root(".", ".")
        m.umount(".", m.MNT_DETACH)
        os.chdir("/")
        return sorted(os.listdir("/"))

    names = in_private_mount_ns(go)
    assert isinstance(names, list) and "bin" in names and "etc" in names
    # the host's root is untouched
    assert os.path.isdir("/proc/self")
