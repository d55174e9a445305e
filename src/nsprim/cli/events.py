"""nsprim events [--since TIME] [--until TIME] [--filter KEY=VALUE] [--format json]:
container events (nsprim.events), past ones in the range, then new ones as
they come (until --until, or ^C).  Filters: container (name or id), event
(action), type (container), image, label is not kept."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from nsprim.cli import _oneline


def add_parser(sub: Any) -> None:
    p = sub.add_parser("events", help="container events")
    p.add_argument("--since", metavar="TIME")
    p.add_argument("--until", metavar="TIME")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--format", default=None, metavar="json")


_FILTERS = ("container", "event", "type", "image", "name")


def _match(ev: dict[str, Any], filters: dict[str, set[str]]) -> bool:
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    for k, want in filters.items():
        if k in ("container", "name"):
            cid = str(actor.get("ID", ""))
            if not any(w == attrs.get("name") or (len(w) >= 3 and cid.startswith(w))
                       for w in want):
                return False
        elif k == "event" and ev.get("Action") not in want:
            return False
        elif k == "type" and ev.get("Type") not in want:
            return False
        elif k == "image" and attrs.get("image") not in want:
            return False
    return True


def line(ev: dict[str, Any]) -> str:
    """docker's text line of an event."""
    ns = int(ev.get("timeNano", 0))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
        f".{ns % 10**9:09d}Z"
    actor = ev.get("Actor") or {}
    attrs = ", ".join(f"{k}={v}" for k, v in sorted((actor.get("Attributes") or {}).items()))
    return f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID')} ({attrs})"


def cmd_events(a: argparse.Namespace) -> int:
    from nsprim import events
    from nsprim.cli.when import parse_time

    try:
        since = None if a.since is None else parse_time(a.since, "since")
        until = None if a.until is None else parse_time(a.until, "until")
    except ValueError as e:
        return _bad(str(e))
    filters: dict[str, set[str]] = {}
    for f in a.filter:
        k, sep, v = f.partition("=")
        if not sep or k not in _FILTERS:
            return _bad(f"invalid filter {f!r}: " + ", ".join(_FILTERS) + " (KEY=VALUE)")
        filters.setdefault(k, set()).add(v)
    if a.format not in (None, "json", "{{json .}}"):
        return _bad(f"invalid --format {a.format!r}: json")
    start = since if since is not None else time.time()

    def show(raw: str) -> bool:
        """Print one event if it is in range; False once past --until."""
        try:
            ev = json.loads(raw)
        except ValueError:
            return True
        t = int(ev.get("timeNano", 0)) / 1e9
        if until is not None and t > until:
            return False
        if t < start or not _match(ev, filters):
            return True
        print(json.dumps(ev) if a.format else line(ev), flush=True)
        return True

    p = events.path()
    for old in (p + ".1",):
        try:
            with open(old) as f:
                for raw in f:
                    if not show(raw):
                        return 0
        except FileNotFoundError:
            pass
    try:
        f = open(p)
    except FileNotFoundError:
        f = None
    try:
        while True:
            if f is None:
                try:
                    f = open(p)
                except FileNotFoundError:
                    pass
            if f is not None:
                for raw in f:
                    if not show(raw):
                        return 0
                try:  # rotated: go on with the new file
                    if os.stat(p).st_ino != os.fstat(f.fileno()).st_ino:
                        f.close()
                        f = None
                        continue
                except FileNotFoundError:
                    pass
            if until is not None and time.time() > until:
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        return 0
    finally:
        if f is not None:
            f.close()


def _bad(msg: str) -> int:
    print(f"nsprim: {_oneline(ValueError(msg))}", file=sys.stderr)
    return 125
