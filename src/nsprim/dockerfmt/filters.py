"""docker's ``--filter`` (and the API's ``filters``): parsing and the
selection of containers, shared by the CLI and the Docker API daemon.

The same key given twice matches either value; different keys must all
match.  A bad key or value is refused in docker's words."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FilterError", "parse_filters", "api_filters", "label_match",
           "CONTAINER_FILTERS", "select_containers"]


class FilterError(ValueError):
    """A --filter that docker would refuse (its words)."""


def parse_filters(values: Sequence[str], allowed: Iterable[str]) -> dict[str, list[str]]:
    """``--filter k=v`` values -> {k: [v...]}; an unknown key or a value
    without ``=`` is refused as docker does."""
    ok = set(allowed)
    out: dict[str, list[str]] = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not eq:
            raise FilterError(f'invalid argument "{v}" for "-f, --filter" flag: bad format of '
                              "filter (expected name=value)")
        key = key.strip().lower()
        if key not in ok:
            raise FilterError(f"Error response from daemon: invalid filter '{key}'")
        out.setdefault(key, []).append(val.strip())
    return out


def label_match(labels: Mapping[str, str], wanted: Sequence[str]) -> bool:
    """docker's label filter: every ``key`` or ``key=value`` given matches."""
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def api_filters(text: str | None) -> dict[str, list[str]]:
    """The Engine API's ``filters`` query parameter (JSON: ``{"status":
    ["running"]}``, or the older ``{"status": {"running": true}}``) as
    {key: [values]}."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise FilterError(f"invalid filter {text!r}") from None
    if not isinstance(data, dict):
        raise FilterError(f"invalid filter {text!r}")
    out: dict[str, list[str]] = {}
    for k, v in data.items():
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[str(k)] = list(v)
        elif isinstance(v, dict):
            out[str(k)] = [str(x) for x, on in v.items() if on]
        else:
            raise FilterError(f"invalid filter {text!r}")
    return out


CONTAINER_FILTERS = ("id", "name", "label", "status", "ancestor", "exited", "before", "since",
               "network", "volume", "publish", "expose", "health", "is-task")
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def _port_filter(value: str) -> tuple[int, int, str | None]:
    ports, _, proto = value.partition("/")
    lo, _, hi = ports.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("", "tcp", "udp"):
        raise FilterError(f"Error response from daemon: invalid filter value '{value}'")
    return int(lo), int(hi or lo), proto or None


def _image_names(ref: str) -> set[str]:
    """The spellings of an image reference (``busybox``, ``busybox:latest``,
    ``docker.io/library/busybox:latest``) for the ancestor filter."""
    names = {ref}
    try:
        from nsprim.images.reference import parse_reference

        r = parse_reference(ref)
        names |= {str(r), r.familiar()}
    except ValueError:
        pass
    return names


def select_containers(items: Sequence[Any], f: Mapping[str, Sequence[str]], *,
                      show_all: bool = False, last: int = -1) -> list[Any]:
    """docker's selection of containers (:class:`nsprim.dockerfmt.load.Container`,
    newest first): the running ones unless `show_all` (or `last`, or a status or
    exited filter), those the filters `f` match, then the `last` newest.
    FilterError, in docker's words, for a bad filter value."""
    from nsprim.dockerfmt import shapes

    unknown = set(f) - set(CONTAINER_FILTERS)
    if unknown:
        raise FilterError(f"Error response from daemon: invalid filter '{sorted(unknown)[0]}'")
    for st in f.get("status", []):
        if st not in _STATUSES:
            raise FilterError(f"Error response from daemon: invalid filter 'status={st}'")
    for code in f.get("exited", []):
        if not code.lstrip("-").isdigit():
            raise FilterError(f"Error response from daemon: invalid filter 'exited={code}'")
    ports = {k: [_port_filter(v) for v in f.get(k, [])] for k in ("publish", "expose")}
    by_ref: dict[str, Any] = {}
    for key in ("before", "since"):
        for ref in f.get(key, []):
            match = [c for c in items if c.name == ref or c.id.startswith(ref)]
            if not match:
                raise FilterError(f"Error response from daemon: No such container: {ref}")
            by_ref[ref] = match[0]
    ancestors = [_image_names(r) for r in f.get("ancestor", [])]
    show_all = show_all or last > 0 or "status" in f or "exited" in f
    out = []
    for c in items:
        status = shapes.docker_status(c.status)
        if not show_all and status not in ("running", "paused", "restarting"):
            continue
        spec = c.spec
        if "id" in f and not any(c.id.startswith(v) for v in f["id"]):
            continue
        if "name" in f and not any(_name_match(v, c.name) for v in f["name"]):
            continue
        if "label" in f and not label_match(dict(spec.labels), f["label"]):
            continue
        if "status" in f and status not in f["status"]:
            continue
        if "exited" in f and not (status == "exited" and
                                  str(c.state.get("exit_code") or 0) in
                                  [str(int(v)) for v in f["exited"]]):
            continue
        if ancestors and not any(
                (spec.image and names & _image_names(spec.image)) or
                (spec.image_id and any(n.removeprefix("sha256:") and
                                       spec.image_id.removeprefix("sha256:").startswith(
                                           n.removeprefix("sha256:")) for n in names
                                       if len(n.removeprefix("sha256:")) >= 3 and
                                       all(ch in "0123456789abcdef"
                                           for ch in n.removeprefix("sha256:"))))
                for names in ancestors):
            continue
        if any(not (c.spec.created < by_ref[r].spec.created) for r in f.get("before", [])):
            continue
        if any(not (c.spec.created > by_ref[r].spec.created) for r in f.get("since", [])):
            continue
        net = spec.network or "bridge"
        if "network" in f and not any(v == net or (len(v) >= 3 and
                                                   shapes.network_id(net).startswith(v))
                                      for v in f["network"]):
            continue
        if "volume" in f:
            mounts = shapes.mounts(spec)
            if not any(v in (m.get("Name"), m.get("Source"), m.get("Destination"))
                       for v in f["volume"] for m in mounts):
                continue
        if "health" in f and (shapes.health_status(c.state) or "none") not in f["health"]:
            continue
        if "is-task" in f and "true" in f["is-task"]:
            continue
        if ports["publish"] or ports["expose"]:
            published = [(int(p.get("container_port") or 0), str(p.get("proto", "tcp")))
                         for p in c.state.get("ports") or []] \
                if status == "running" else []
            exposed = [(int(k.partition("/")[0]), k.partition("/")[2])
                       for k in shapes.exposed_ports(spec, None) or {}]
            ok = True
            for key, have in (("publish", published), ("expose", exposed)):
                for lo, hi, proto in ports[key]:
                    if not any(lo <= port <= hi and proto in (None, pr) for port, pr in have):
                        ok = False
            if not ok:
                continue
        out.append(c)
    if last > 0:
        out = out[:last]
    return out


def _name_match(pattern: str, name: str) -> bool:
    """docker's name filter: a regular expression searched in the name."""
    import re

    try:
        return re.search(pattern, name) is not None or re.search(pattern, "/" + name) is not None
    except re.error:
        return pattern in name
