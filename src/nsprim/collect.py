"""Collection: what killed nsprim processes of this state root left behind.

One entry point, `collect()`, run by every CLI command that creates or
lists containers (and by the supervisor). It frees, in this order:

1. container records that say running while their supervisor is gone
   (marked exited, their resources freed, ``--rm`` ones removed);
2. overlays (a container's layer) whose owner's lock is free;
3. bridge leases whose owner's lock is free (with the host's veth and
   nftables elements);
4. cgroups whose owner's lock is free (what is in them is killed).
5. image pulls and loads that were killed (their tmp/ entries);
6. the socket and lock of a killed CLI helper (nsprim.helper).

Each kind lives under this root's own directories (records and layers under
the state root, leases and cgroup locks under its run dir, cgroups named with the root's id),
so one root never collects another's.

It costs nothing when there is nothing to collect: each kind is first
checked with one ``listdir`` of its directory (no lock files: nothing of that
kind can be left), and the modules that know how to free a kind (cgroups,
the network stack, the image store) are imported only when that check finds
something. A CLI command that has nothing to collect pays a few ``listdir``
calls, not the ~17 ms that walking every cgroup hierarchy and importing the
network stack took.
"""

from __future__ import annotations

import os

from nsprim.state import run_dir, state_root

__all__ = ["collect"]


def _entries(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def collect(*, images: bool = True) -> list[str]:
    """Free what killed owners left in this state root; returns what was
    freed (container ids, overlay ids, lease ids, cgroup names). Errors of
    one kind do not stop the others (the next command tries again)."""
    out: list[str] = []
    root, run = state_root(), run_dir()
    if _entries(os.path.join(root, "containers")):  # records and their layers
        from nsprim.lifecycle import collect as collect_records
        from nsprim.rootfs import OverlayRootfs

        out += _guard(collect_records)
        out += _guard(OverlayRootfs.collect)
    if _entries(os.path.join(run, "network")):
        from nsprim.network import bridge

        out += _guard(bridge.collect)
    if _entries(os.path.join(root, "networks")):  # user-defined networks' leases
        from nsprim.network import user

        out += _guard(user.collect)
    if any(n.startswith("nspgr-") for n in _entries("/sys/class/net")):
        from nsprim.network import graveyard  # bridges whose reaper was killed

        out += _guard(graveyard.reap)
    if _entries(os.path.join(run, "cgroups")):
        from nsprim.cgroup import Cgroup

        out += _guard(Cgroup.collect)
    if images and _entries(os.path.join(root, "images", "tmp")):
        from nsprim.images.store import default_store

        try:
            default_store()  # opening the store collects tmp/ (pulls still running stay)
        except OSError:
            pass
    if os.path.exists(os.path.join(run, "helper.lock")):
        from nsprim import helper

        out += _guard(lambda: helper.collect(run))
    return out


def _guard(fn: object) -> list[str]:
    assert callable(fn)
    try:
        got = fn()
    except OSError:
        return []
    return [str(x) for x in got] if isinstance(got, list) else []
