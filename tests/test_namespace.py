"""Namespace objects against the real kernel."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nsprim import ConfigError, Container, Namespace, NamespaceKind, run
from nsprim.namespace import NamespaceKind as NK


def test_current_matches_proc_inode() -> None:
    for kind in NamespaceKind:
        path = f"/proc/self/ns/{kind.value}"
        if not os.path.exists(path):
            continue
        with Namespace.current(kind) as ns:
            assert ns.kind is kind
            assert ns.inode == os.stat(path).st_ino


def test_of_pid_and_equality() -> None:
    with Namespace.of(os.getpid(), "net") as a, Namespace.current(NK.NET) as b:
        assert a == b and hash(a) == hash(b)
        assert a.fd != b.fd


def test_from_path_checks_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="net namespace, not"):
        Namespace.from_path("/proc/self/ns/net", "uts")
    f = tmp_path / "plain"
    f.write_text("x")
    with pytest.raises(OSError, match="not a namespace file"):
        Namespace.from_path(f)


def test_unknown_kind_is_config_error() -> None:
    with pytest.raises(ConfigError, match="'bogus'"):
        NamespaceKind.parse("bogus")


def test_fds_are_cloexec() -> None:
    with Namespace.current("uts") as ns:
        assert not os.get_inheritable(ns.fd)


def test_close_is_idempotent() -> None:
    ns = Namespace.current("uts")
    ns.close()
    ns.close()
    assert ns.closed
    with pytest.raises(ValueError):
        _ = ns.fd


def test_create_gives_new_namespace(root: None) -> None:
    with Namespace.create("uts") as new, Namespace.current("uts") as mine:
        assert new != mine
        assert new.kind is NK.UTS


def test_enter_switches_thread_and_restores(root: None) -> None:
    import socket

    host_name = socket.gethostname()
    with Namespace.create("uts") as new:
        def in_thread() -> None:
            # a thread of its own: setns is per thread
            with new.enter():
                assert os.stat("/proc/thread-self/ns/uts").st_ino == new.inode
                socket.sethostname("entered")
                results.append(socket.gethostname())
            results.append(socket.gethostname())

        results: list[str] = []
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        assert results == ["entered", host_name]
    assert socket.gethostname() == host_name


def test_enter_net_namespace_sees_only_lo(root: None) -> None:
    with Namespace.create("net") as new:
        out: list[list[str]] = []

        def look() -> None:
            with new.enter():
                out.append(sorted(name for _, name in __import__("socket").if_nameindex()))

        t = threading.Thread(target=look)
        t.start()
        t.join()
    assert out == [["lo"]]


def test_persist_and_unpersist(root: None, tmp_path: Path) -> None:
    target = tmp_path / "netns"
    with Namespace.create("net") as ns:
        inode = ns.inode
        ns.persist(target)
    # the namespace outlives every fd: it is held by the bind mount
    with Namespace.from_path(target, "net") as again:
        assert again.inode == inode
    Namespace.unpersist(target)
    assert not target.exists()


def test_container_namespaces_differ_from_host(rootfs: str) -> None:
    r = run(["/bin/sh", "-c", "for k in pid net mnt uts ipc cgroup; do "
             "stat -L -c %i /proc/self/ns/$k; done"], rootfs=rootfs, capture_output=True)
    inside = [int(x) for x in r.stdout.split()]
    host = [os.stat(f"/proc/self/ns/{k}").st_ino for k in
            ("pid", "net", "mnt", "uts", "ipc", "cgroup")]
    assert all(a != b for a, b in zip(inside, host, strict=True)), (inside, host)


def test_namespace_of_running_container(rootfs: str) -> None:
    with Container(["/bin/sleep", "30"], rootfs=rootfs, hostname="peer") as c:
        assert c.pid is not None
        with Namespace.of(c.pid, "uts") as uts:
            r = run(["/bin/hostname"], rootfs=rootfs, namespaces={"uts": uts},
                    capture_output=True)
        assert r.stdout == b"peer\n"
        with Namespace.of(c.pid, "pid") as pidns:
            r = run(["/bin/sh", "-c", "ls /proc | grep -E '^[0-9]+$' | head -1"],
                    rootfs=rootfs, namespaces={"pid": pidns}, capture_output=True)
        # the joined pid namespace already has the sleeper as pid 1
        assert r.stdout.strip() == b"1"


def test_join_needs_matching_kind(rootfs: str) -> None:
    with Namespace.current("uts") as uts:
        with pytest.raises(ConfigError, match="given a uts namespace"):
            run(["/bin/true"], rootfs=rootfs, namespaces={"net": uts})


def test_create_time_namespace(root: None) -> None:
    with Namespace.create("time") as ns, Namespace.current("time") as mine:
        assert ns.kind is NK.TIME and ns != mine
