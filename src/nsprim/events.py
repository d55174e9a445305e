"""Events (``nsprim events``, the daemon's ``GET /events``): one JSON line
per event in ``<state root>/events.jsonl``, docker's shape (``Type``,
``Action``, ``Actor: {ID, Attributes}``, ``scope``, ``time``,
``timeNano``; container events also ``status``, ``id``, ``from``).

- containers: written by the record's state changes (create, start, die,
  restart) and by the commands (destroy, pause, unpause, rename, update);
- images: by the image store (pull, tag, untag, delete, load, import), by
  ``save`` and ``push``;
- volumes: by the volume code (create, mount, unmount, destroy);
- networks: ``network(action, name, container=...)`` (create, connect,
  disconnect, destroy), one call where the network code does each.

Kept to about 4 MiB (the file before is ``events.jsonl.1``).  Best effort:
an event that cannot be written never stops what emits it.  `matches` is
docker's ``--filter`` and `Tail` follows the file, for the CLI and the
daemon alike."""

from __future__ import annotations

import json
import os
import time

from nsprim.state import state_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

__all__ = ["emit", "emit_event", "image", "volume", "network", "path", "MAX_BYTES",
           "FILTERS", "matches", "Tail", "template_view", "network_id"]

MAX_BYTES = 4 << 20
MAX_LINE = 64 << 10  # a longer line is not an event of ours: skipped when read
#: docker's ``events --filter`` keys that nsprim's events can match
FILTERS = ("container", "event", "type", "image", "volume", "network", "label", "scope",
           "name")


def path(root: str | None = None) -> str:
    return os.path.join(root or state_root(), "events.jsonl")


def emit_event(kind: str, action: str, ident: str, attrs: Mapping[str, Any] | None = None,
               *, root: str | None = None) -> None:
    """Append one event of type `kind` (container, image, volume, network)
    whose actor is `ident`; `root`: the state root (default: the current)."""
    ns = time.time_ns()
    actor = {str(k): str(v) for k, v in (attrs or {}).items()}
    ev: dict[str, Any] = {}
    if kind == "container":
        ev = {"status": action, "id": ident, "from": actor.get("image", "")}
    ev.update({"Type": kind, "Action": action, "Actor": {"ID": ident, "Attributes": actor},
               "scope": "local", "time": ns // 10**9, "timeNano": ns})
    line = json.dumps(ev) + "\n"
    p = path(root)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line.encode())  # one write: whole lines, also between processes
        if os.fstat(fd).st_size > MAX_BYTES:
            os.replace(p, p + ".1")
    except OSError:
        pass
    finally:
        os.close(fd)


def emit(container_id: str, action: str, cfg: dict[str, Any] | None = None,
         **attrs: Any) -> None:
    """Append one container event (`cfg`: the record's spec, for its name,
    image and labels)."""
    cfg = cfg or {}
    actor: dict[str, Any] = {}
    labels = cfg.get("labels")
    if isinstance(labels, dict):  # docker puts the labels among the attributes
        actor.update(labels)
    actor.update({"name": str(cfg.get("name") or ""),
                  "image": str(cfg.get("image") or cfg.get("rootfs") or "")})
    actor.update(attrs)
    emit_event("container", action, container_id, actor)


def image(action: str, ident: str, name: str = "", *, root: str | None = None) -> None:
    """An image event: `ident` the image id (or, for pull and push, the
    reference), `name` the name it concerns."""
    emit_event("image", action, ident, {"name": name or ident}, root=root)


def volume(action: str, name: str, *, root: str | None = None, **attrs: Any) -> None:
    """A volume event (create, mount, unmount, destroy); `attrs` such as
    ``container=``, ``destination=``, ``read/write=`` go in the Attributes."""
    emit_event("volume", action, name, {"driver": "local", **attrs}, root=root)


def network_id(name: str) -> str:
    """A network's id: 64 hex digits, stable for its name (what inspect and
    ``network ls`` show)."""
    from nsprim._digest import sha256_hex

    return sha256_hex(f"nsprim-network\0{name}".encode())


def network(action: str, name: str, *, container: str | None = None, type: str = "bridge",
            network_id_: str | None = None, root: str | None = None) -> None:  # noqa: A002
    """A network event (create, connect, disconnect, destroy) of the network
    `name`: one call where the network code does each (``container``: the id
    of the container connected or disconnected)."""
    attrs = {"name": name, "type": type}
    if container:
        attrs["container"] = container
    emit_event("network", action, network_id_ or network_id(name), attrs, root=root)


# ------------------------------------------------------------------- read

def _strip_tag(ref: str) -> str:
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash and not ref.startswith("sha256:") else ref


def matches(ev: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """docker's ``events --filter``: values of one key match if any does,
    different keys must all match.  container/volume/network: the actor's id
    (or a prefix of it) or its name; image: an image event's id or name, a
    container's image (with or without tag); label: ``KEY`` or ``KEY=VALUE``
    among the attributes."""
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    ident = str(actor.get("ID", ""))
    for key, want in filters.items():
        if not want:
            continue
        if key == "type":
            ok = ev.get("Type") in want
        elif key == "event":
            ok = any(ev.get("Action") == w or str(ev.get("Action", "")).startswith(w + ":")
                     for w in want)
        elif key == "scope":
            ok = ev.get("scope", "local") in want
        elif key in ("container", "volume", "network", "name"):
            kind = "container" if key == "name" else key
            ok = ev.get("Type") == kind and any(
                w == attrs.get("name") or (w and ident.startswith(w)) for w in want)
        elif key == "image":
            name = str(attrs.get("name" if ev.get("Type") == "image" else "image", ""))
            if ev.get("Type") not in ("image", "container"):
                ok = False
            else:
                cands = {ident, name, _strip_tag(ident), _strip_tag(name)}
                ok = any(w in cands for w in want)
        elif key == "label":
            ok = True
            for w in want:
                k, eq, v = w.partition("=")
                if k not in attrs or (eq and attrs[k] != v):
                    ok = False
        else:
            ok = False
        if not ok:
            return False
    return True


def _parse(raw: str) -> dict[str, Any] | None:
    if len(raw) > MAX_LINE:
        return None
    try:
        ev = json.loads(raw)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) else None


class Tail:
    """Follows the events file: `poll` returns the events written since
    the last call (the first call: those already there, the older file's
    first), across rotations."""

    def __init__(self, root: str | None = None) -> None:
        self.path = path(root)
        self._f: Any = None
        self._partial = ""
        self._first = True

    def _lines(self, f: Any) -> Iterator[str]:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                return
            text = self._partial + chunk
            *whole, self._partial = text.split("\n")
            if len(self._partial) > MAX_LINE:
                self._partial = ""
            yield from whole

    def poll(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._first:
            self._first = False
            try:
                with open(self.path + ".1", errors="replace") as old:
                    for raw in self._lines(old):
                        ev = _parse(raw)
                        if ev is not None:
                            out.append(ev)
                self._partial = ""
            except FileNotFoundError:
                pass
        for _ in range(2):
            if self._f is None:
                try:
                    self._f = open(self.path, errors="replace")  # noqa: SIM115
                except FileNotFoundError:
                    return out
                self._partial = ""
            for raw in self._lines(self._f):
                ev = _parse(raw)
                if ev is not None:
                    out.append(ev)
            try:  # rotated: read on in the new file
                if os.stat(self.path).st_ino == os.fstat(self._f.fileno()).st_ino:
                    break
            except FileNotFoundError:
                break
            self._f.close()
            self._f = None
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def template_view(ev: Mapping[str, Any]) -> dict[str, Any]:
    """An event as docker's ``events.Message`` shows it to a ``--format``
    template (``{{.Actor.Attributes.name}}``, ``{{.Status}}``...)."""
    actor = ev.get("Actor") or {}
    return {"Status": ev.get("status", ""), "ID": ev.get("id", ""), "From": ev.get("from", ""),
            "Type": ev.get("Type", ""), "Action": ev.get("Action", ""),
            "Actor": {"ID": actor.get("ID", ""), "Attributes": dict(actor.get("Attributes")
                                                                    or {})},
            "Scope": ev.get("scope", "local"), "Time": ev.get("time", 0),
            "TimeNano": ev.get("timeNano", 0)}
