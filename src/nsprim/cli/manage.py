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
import dataclasses
import os
import stat
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
    from nsprim.cgroup import Cgroup
    from nsprim.lifecycle import find

    rc = 0
    for name in a.containers:
        try:
            rec = find(name)
        except LookupError as e:
            rc = _error(_oneline(e))
            continue
        if not rec.running:
            rc = _error(f"container {rec.id} is not running")
            continue
        paused = bool(rec.state.get("paused"))
        if paused == frozen:
            rc = _error(f"container {rec.id} is already paused" if frozen else
                        f"container {rec.id} is not paused")
            continue
        try:
            cg = Cgroup.open(rec.id[:16])
        except OSError:
            rc = _error(f"container {rec.id} has no cgroup to freeze")
            continue
        try:
            cg.freeze() if frozen else cg.thaw()
        except (OSError, TimeoutError) as e:
            rc = _error(_oneline(e))
            continue
        finally:
            cg.close()
        rec.update_state(paused=frozen)
        from nsprim.events import emit

        emit(rec.id, "pause" if frozen else "unpause", rec.config)
        print(name)
    return rc


def cmd_pause(a: argparse.Namespace) -> int:
    return _freeze(a, True)


def cmd_unpause(a: argparse.Namespace) -> int:
    return _freeze(a, False)


# ------------------------------------------------------------------ rename

def cmd_rename(a: argparse.Namespace) -> int:
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import check_name, find, release_name, reserve

    try:
        check_name(a.new_name)
    except ConfigError as e:
        return _bad(str(e))
    try:
        rec = find(a.container)
    except LookupError as e:
        return _error(_oneline(e))
    old = rec.name
    if old == a.new_name:
        return _error("Renaming a container with the same name as its current name")
    try:
        reserve(a.new_name, rec.id)
    except ConfigError as e:
        return _error(str(e))
    cfg = rec.config
    cfg["name"] = a.new_name
    rec.write_config(cfg)
    if old:
        release_name(old, rec.id)
    from nsprim.events import emit

    emit(rec.id, "rename", cfg, oldName="/" + old)
    return 0


# ------------------------------------------------------------------ update

def update_spec(spec: Any, a: argparse.Namespace) -> Any:
    """`spec` with the limits `a` gives (checked by spec.validate)."""
    from nsprim.spec import validate

    changes: dict[str, Any] = {}
    for f in ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
              "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems", "pids_limit",
              "blkio_weight", "restart"):
        v = getattr(a, f, None)
        if v is not None and any(x.name == f for x in dataclasses.fields(spec)):
            changes[f] = v
    new = dataclasses.replace(spec, **changes)
    validate(new)
    return new


def cmd_update(a: argparse.Namespace) -> int:
    from nsprim.cgroup import Cgroup
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import find
    from nsprim.spec import limits_of

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
        if rec.running:
            try:
                cg = Cgroup.open(rec.id[:16])
            except OSError:
                rc = _error(f"container {rec.id} has no cgroup to update")
                continue
            try:
                limits = limits_of(spec)
                cg.set_limits(limits)
            except (OSError, ConfigError) as e:
                rc = _error(f"Cannot update container {rec.id}: {_oneline(e)}")
                continue
            finally:
                cg.close()
        cfg = rec.config
        cfg.update({k: v for k, v in spec.to_json().items()
                    if k in ("memory", "memory_swap", "memory_reservation", "cpus",
                             "cpu_shares", "cpu_period", "cpu_quota", "cpuset_cpus",
                             "cpuset_mems", "pids_limit", "blkio_weight", "restart")})
        rec.write_config(cfg)
        from nsprim.events import emit

        emit(rec.id, "update", cfg)
        print(name)
    return rc


# -------------------------------------------------------------------- diff

def _lower_has(layers: list[str], rel: str) -> bool:
    for layer in layers:
        try:
            os.lstat(os.path.join(layer, rel))
            return True
        except OSError:
            continue
    return False


def changes(upper: str, layers: list[str]) -> list[tuple[str, str]]:
    """docker's (kind, path) of a container layer: D for a whiteout, A for
    what no lower layer has, C for what one does; sorted by path."""
    out: list[tuple[str, str]] = []

    def walk(rel: str) -> None:
        d = os.path.join(upper, rel)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return
        for n in names:
            r = os.path.join(rel, n)
            try:
                st = os.lstat(os.path.join(upper, r))
            except OSError:
                continue
            path = "/" + r
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("D", path))
                continue
            out.append(("C" if _lower_has(layers, r) else "A", path))
            if stat.S_ISDIR(st.st_mode):
                walk(r)

    walk("")
    return out


def _layers(rec: Any) -> list[str] | None:
    spec = rec.spec
    if not spec.image_id:
        return None
    from nsprim.images.store import default_store

    return list(reversed(default_store().get(spec.image_id).layers))


def cmd_diff(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import find

    try:
        rec = find(a.container)
        layers = _layers(rec)
    except (LookupError, OSError) as e:
        return _error(_oneline(e))
    if layers is None:
        return _error(f"container {rec.id} has no image layers to compare with (--rootfs)")
    for kind, path in changes(os.path.join(rec.dir, "upper"), layers):
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
