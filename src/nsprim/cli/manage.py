"""nsprim pause, unpause, rename, update, diff, export.

- ``pause``/``unpause``: the cgroup freezer (``cgroup.freeze`` on v2, the v1
  freezer elsewhere); ``paused`` in the record's state.
- ``rename OLD NEW``: the name moves under the names lock.
- ``update [--memory] [--memory-swap] [--memory-reservation] [--cpus]
  [--cpu-shares] [--cpu-period] [--cpu-quota] [--cpuset-cpus] [--cpuset-mems]
  [--pids-limit] [--blkio-weight] [--restart]``: new limits on a running
  container's cgroup, and in its spec (so ``restart`` keeps them).
- ``diff``: the container layer (overlay upper dir) as docker's ``A``/``C``/
  ``D`` lines.
- ``export [-o FILE]``: the container's filesystem (no volumes) as a tar.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from nsprim.cli import _int_arg, _oneline

EXIT_ERROR = 1


def _error(msg: str) -> int:
    print(f"Error response from daemon: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _bad(msg: str) -> int:
    print(f"nsprim: {msg}", file=sys.stderr)
    return 125


def add_pause_parser(sub: Any) -> None:
    for name, what in (("pause", "pause all processes in containers"),
                       ("unpause", "unpause all processes in containers")):
        p = sub.add_parser(name, help=what)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")


def add_rename_parser(sub: Any) -> None:
    p = sub.add_parser("rename", help="rename a container")
    p.add_argument("container")
    p.add_argument("new_name")


def add_update_parser(sub: Any) -> None:
    p = sub.add_parser("update", help="update a container's resource limits")
    p.add_argument("-m", "--memory", metavar="SIZE")
    p.add_argument("--memory-swap", metavar="SIZE")
    p.add_argument("--memory-reservation", metavar="SIZE")
    p.add_argument("--cpus", metavar="N")
    p.add_argument("--cpu-shares", type=_int_arg("cpu-shares"), metavar="N")
    p.add_argument("--cpu-period", type=_int_arg("cpu-period"), metavar="USEC")
    p.add_argument("--cpu-quota", type=_int_arg("cpu-quota"), metavar="USEC")
    p.add_argument("--cpuset-cpus", metavar="LIST")
    p.add_argument("--cpuset-mems", metavar="LIST")
    p.add_argument("--pids-limit", type=_int_arg("pids-limit"), metavar="N")
    p.add_argument("--blkio-weight", type=_int_arg("blkio-weight"), metavar="N")
    p.add_argument("--restart", metavar="POLICY")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


def add_diff_parser(sub: Any) -> None:
    p = sub.add_parser("diff", help="list the changes to a container's filesystem")
    p.add_argument("container")


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("container")


# ----------------------------------------------------------- pause/unpause

def _freeze(a: argparse.Namespace, frozen: bool) -> int:
    from nsprim.lifecycle import find
    from nsprim.manage import Conflict, set_paused

    rc = 0
    for name in a.containers:
        try:
            rec = find(name)
        except LookupError as e:
            rc = _error(_oneline(e))
            continue
        try:
            set_paused(rec, frozen)
        except (Conflict, OSError, TimeoutError) as e:
            rc = _error(_oneline(e))
            continue
        print(name)
    return rc


def cmd_pause(a: argparse.Namespace) -> int:
    return _freeze(a, True)


def cmd_unpause(a: argparse.Namespace) -> int:
    return _freeze(a, False)


# ------------------------------------------------------------------ rename

def cmd_rename(a: argparse.Namespace) -> int:
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import check_name, find
    from nsprim.manage import Conflict, rename

    try:
        check_name(a.new_name)
    except ConfigError as e:
        return _bad(str(e))
    try:
        rec = find(a.container)
    except LookupError as e:
        return _error(_oneline(e))
    try:
        rename(rec, a.new_name)
    except (Conflict, ConfigError) as e:
        return _error(str(e))
    return 0


# ------------------------------------------------------------------ update

def update_spec(spec: Any, a: argparse.Namespace) -> Any:
    """`spec` with the limits `a` gives (checked by spec.validate)."""
    from nsprim.manage import UPDATABLE
    from nsprim.manage import update_spec as lib_update_spec

    return lib_update_spec(spec, {f: getattr(a, f, None) for f in UPDATABLE})


def cmd_update(a: argparse.Namespace) -> int:
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import find
    from nsprim.manage import Conflict, update

    try:
        recs = [(n, find(n)) for n in a.containers]
    except LookupError as e:
        return _error(_oneline(e))
    try:
        news = [(n, rec, update_spec(rec.spec, a)) for n, rec in recs]
    except ConfigError as e:
        return _bad(str(e))
    rc = 0
    for name, rec, spec in news:
        try:
            update(rec, spec)
        except Conflict as e:
            rc = _error(str(e))
            continue
        except (OSError, ConfigError) as e:
            rc = _error(f"Cannot update container {rec.id}: {_oneline(e)}")
            continue
        print(name)
    return rc


# -------------------------------------------------------------------- diff

def cmd_diff(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import find
    from nsprim.manage import container_changes

    try:
        rec = find(a.container)
        found = container_changes(rec)
    except (LookupError, OSError) as e:
        return _error(_oneline(e))
    if found is None:
        return _error(f"container {rec.id} has no image layers to compare with (--rootfs)")
    for kind, path in found:
        print(f"{kind} {path}")
    return 0


# ------------------------------------------------------------------ export

def cmd_export(a: argparse.Namespace) -> int:
    from nsprim.archive import ArchiveError, container_root, write_archive
    from nsprim.lifecycle import find

    try:
        rec = find(a.container)
    except LookupError as e:
        return _error(_oneline(e))
    if a.output is None and sys.stdout.isatty():
        return _error("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    try:
        with container_root(rec, live=False) as root:
            if a.output is None:
                write_archive(root, "/", sys.stdout.buffer, name="")
                sys.stdout.flush()
            else:
                tmp = a.output + ".nsprim-tmp"
                try:
                    with open(tmp, "wb") as f:
                        write_archive(root, "/", f, name="")
                    os.replace(tmp, a.output)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
    except (ArchiveError, OSError, LookupError) as e:
        return _error(_oneline(e))
    return 0
