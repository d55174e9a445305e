"""Changing a container that exists: pause/unpause, rename, update, and
its filesystem changes (the library behind ``nsprim pause``, ``rename``,
``update``, ``diff`` and the daemon's routes of the same names).

Errors: :class:`Conflict` when the container is not in a state for the
action (docker's 409), ``ConfigError`` for a bad value (400), ``OSError``
from the kernel.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any

#: the spec fields ``update`` may change
UPDATABLE = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
             "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems", "pids_limit",
             "blkio_weight", "restart")


class Conflict(RuntimeError):
    """The container is not in a state for the action (docker's 409)."""


def set_paused(rec: Any, frozen: bool) -> None:
    """Freeze (`frozen`) or thaw the container's cgroup; ``paused`` in its
    state; a pause/unpause event."""
    from nsprim.cgroup import Cgroup

    if not rec.running:
        raise Conflict(f"container {rec.id} is not running")
    paused = bool(rec.state.get("paused"))
    if paused == frozen:
        raise Conflict(f"container {rec.id} is already paused" if frozen else
                       f"container {rec.id} is not paused")
    try:
        cg = Cgroup.open(rec.id[:16])
    except OSError:
        raise Conflict(f"container {rec.id} has no cgroup to freeze") from None
    try:
        cg.freeze() if frozen else cg.thaw()
    finally:
        cg.close()
    rec.update_state(paused=frozen)
    from nsprim.events import emit

    emit(rec.id, "pause" if frozen else "unpause", rec.config)


def rename(rec: Any, new_name: str) -> str:
    """Give the container `new_name` (checked, reserved under the names
    lock); returns the old name.  ConfigError for a bad name, Conflict for
    the same name or one in use."""
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import check_name, release_name, reserve

    check_name(new_name)
    old = str(rec.name or "")
    if old == new_name:
        raise Conflict("Renaming a container with the same name as its current name")
    try:
        reserve(new_name, rec.id)
    except ConfigError as e:
        raise Conflict(str(e)) from None
    cfg = rec.config
    cfg["name"] = new_name
    rec.write_config(cfg)
    if old:
        release_name(old, rec.id)
    from nsprim.events import emit

    emit(rec.id, "rename", cfg, oldName="/" + old)
    return old


def update_spec(spec: Any, changes: dict[str, Any]) -> Any:
    """`spec` with the limits in `changes` (UPDATABLE keys; None: unchanged),
    checked by spec.validate (ConfigError)."""
    from nsprim.spec import validate

    names = {x.name for x in dataclasses.fields(spec)}
    new = dataclasses.replace(spec, **{k: v for k, v in changes.items()
                                       if k in UPDATABLE and v is not None and k in names})
    validate(new)
    return new


def update(rec: Any, spec: Any) -> None:
    """Apply the limits of `spec` (from update_spec) to the running
    container's cgroup and keep them in its record (so a restart keeps
    them); an update event.  Conflict when a running container has no
    cgroup; OSError/ConfigError from the kernel's answer."""
    from nsprim.cgroup import Cgroup
    from nsprim.spec import limits_of

    if rec.running:
        try:
            cg = Cgroup.open(rec.id[:16])
        except OSError:
            raise Conflict(f"container {rec.id} has no cgroup to update") from None
        try:
            limits = limits_of(spec)
            cg.ensure_v1(limits)  # a container started without v1 cgroups
            cg.set_limits(limits)
        finally:
            cg.close()
    cfg = rec.config
    cfg.update({k: v for k, v in spec.to_json().items() if k in UPDATABLE})
    rec.write_config(cfg)
    from nsprim.events import emit

    emit(rec.id, "update", cfg)


# ------------------------------------------------------------------ diff

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


def image_layers(rec: Any) -> list[str] | None:
    """The container's image layers, top first (None for a --rootfs one)."""
    spec = rec.spec
    if not spec.image_id:
        return None
    from nsprim.images.store import default_store

    return list(reversed(default_store().get(spec.image_id).layers))


def container_changes(rec: Any) -> list[tuple[str, str]] | None:
    """changes() of the container of record `rec` (None without image)."""
    layers = image_layers(rec)
    if layers is None:
        return None
    return changes(os.path.join(rec.dir, "upper"), layers)
