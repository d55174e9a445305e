"""Bridges buried instead of deleted (nsprim.network.graveyard): ``network
rm`` frees the bridge's name at once, a detached reaper deletes it, and a
grave whose reaper was killed is collected.  Nothing named nsp* is left."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from nsprim.network import graveyard, user
from nsprim.network.rtnl import Rtnl

from .conftest import need


def _wait_gone(names: set[str], timeout: float = 10) -> set[str]:
    deadline = time.monotonic() + timeout
    left = names & set(graveyard.graves())
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = names & set(graveyard.graves())
    return left


@pytest.fixture
def host() -> Iterator[None]:
    need(os.geteuid() == 0, "needs root")
    need(subprocess.run(["nft", "--version"], capture_output=True).returncode == 0,
         "needs nftables (apt-get install nftables)")
    need(os.access("/usr/sbin/ip", os.X_OK) or os.access("/sbin/ip", os.X_OK),
         "needs iproute2")
    yield


def _reaper_pids() -> list[int]:
    graveyard._wait_children()
    return list(graveyard._children)


def test_rm_frees_the_bridge_name_at_once_and_the_grave_goes(host: None) -> None:
    before = set(graveyard.graves())
    n = user.create("grave-" + secrets.token_hex(3))
    assert os.path.exists(f"/sys/class/net/{n.bridge}")
    user.remove(n.id)
    # the name is free now: nothing of the network answers to it
    assert not os.path.exists(f"/sys/class/net/{n.bridge}")
    new = set(graveyard.graves()) - before
    assert len(new) == 1, new
    grave = new.pop()
    with open(f"/sys/class/net/{grave}/flags") as f:
        assert int(f.read(), 16) & 1 == 0  # down
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", grave],
                         capture_output=True, text=True)
    assert out.stdout.strip() == ""  # its gateway address went with it
    assert _wait_gone({grave}) == set()
    deadline = time.monotonic() + 5
    lock = os.path.join(graveyard._dir(), grave + ".lock")
    while os.path.exists(lock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(lock)


def test_same_name_and_subnet_again_at_once(host: None) -> None:
    """A network made again right after its rm (the old bridge still in the
    graveyard) gets the same bridge name and subnet, and its gateway works."""
    name = "grave-" + secrets.token_hex(3)
    opt = {user.BRIDGE_OPTION: "nsptst" + secrets.token_hex(3)}
    a = user.create(name, subnet="10.123.45.0/24", options=opt)
    user.remove(a.id)
    b = user.create(name, subnet="10.123.45.0/24", options=opt)
    try:
        assert b.bridge == a.bridge
        idx = socket.if_nametoindex(b.bridge)
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", b.bridge],
                             capture_output=True, text=True).stdout
        assert "10.123.45.1/24" in out and idx > 0
        route = subprocess.run(["ip", "-4", "route", "get", "10.123.45.9"],
                               capture_output=True, text=True).stdout
        assert f"dev {b.bridge}" in route
    finally:
        user.remove(b.id)


def test_a_grave_with_a_live_reaper_is_left_to_it(host: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graveyard, "DELAY", "30")
    # an inheritable fd of the burying process (a supervisor's published-port
    # holder) must not live on in the reaper: the port would stay taken
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.set_inheritable(True)
    try:
        with Rtnl() as rt:
            name = "nsptst" + secrets.token_hex(3)
            rt.add_bridge(name)
            grave = graveyard.bury(rt, name)
    finally:
        inode = os.fstat(held.fileno()).st_ino
        held.close()
    assert grave is not None and grave in graveyard.graves()
    pids = _reaper_pids()
    assert pids
    try:
        time.sleep(0.2)  # the reaper's shell is in its `sleep` now
        for pid in pids:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                family = [pid] + [int(x) for x in f.read().split()]
            assert len(family) == 2  # sh and its sleep
            for p in family:
                fds = [os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")]
                assert f"socket:[{inode}]" not in fds, fds
                assert not any(f.startswith("socket:") for f in fds), fds
        assert grave not in graveyard.reap()  # its reaper holds the lock
        assert grave in graveyard.graves()
    finally:
        for pid in pids:  # a killed reaper: its own session
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while _reaper_pids() and time.monotonic() < deadline:
            time.sleep(0.02)
    # what the killed reaper left, the next command's collect deletes
    from nsprim.collect import collect

    assert grave in collect()
    assert grave not in graveyard.graves()
    assert not os.path.exists(os.path.join(graveyard._dir(), grave + ".lock"))


def test_collect_reaps_a_grave_nobody_works_on(host: None) -> None:
    """A grave with no lock file at all (a reaper killed before it started,
    a host without ``ip``) is deleted by the next collect."""
    grave = graveyard.PREFIX + secrets.token_hex(5)[:9]
    with Rtnl() as rt:
        rt.add_bridge(grave)
    from nsprim.collect import collect

    assert grave in collect()
    assert grave not in graveyard.graves()
