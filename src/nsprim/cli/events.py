"""nsprim events [--since TIME] [--until TIME] [--filter KEY=VALUE]...
[--format json|TEMPLATE]: events of containers, images, volumes and
networks (nsprim.events), past ones in the range, then new ones as they come
(until --until, or ^C).  Filters (docker's): container, event, type, image,
volume, network, label, scope.  ``--format``: ``json`` (docker's JSON
shape, a line each) or a Go template over docker's ``events.Message``
(``{{.Type}} {{.Action}} {{.Actor.Attributes.name}}``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from nsprim.cli import _oneline


def add_parser(sub: Any) -> None:
    p = sub.add_parser("events", help="container, image, volume and network events")
    p.add_argument("--since", metavar="TIME")
    p.add_argument("--until", metavar="TIME")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--format", default=None, metavar="json|TEMPLATE")


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
        if not sep or k not in events.FILTERS:
            return _bad(f"invalid filter {f!r}: " + ", ".join(events.FILTERS) +
                        " (KEY=VALUE)")
        filters.setdefault(k, set()).add(v)
    tmpl = None
    fmt = (a.format or "").strip()
    if fmt and fmt not in ("json", "{{json .}}"):
        from nsprim.dockerfmt.gotemplate import TemplateError, parse, prepare_format

        try:
            tmpl = parse(prepare_format(fmt)[1])
        except TemplateError as e:
            print(f"template parsing error: {e}", file=sys.stderr)
            return 1
    start = since if since is not None else time.time()

    def show(ev: dict[str, Any]) -> bool:
        """Print one event if it is in range; False once past --until."""
        try:
            t = int(ev.get("timeNano", 0)) / 1e9
        except (TypeError, ValueError):
            return True
        if until is not None and t > until:
            return False
        if t < start or not events.matches(ev, filters):
            return True
        if tmpl is not None:
            from nsprim.dockerfmt.gotemplate import TemplateError

            try:
                text = tmpl.execute(events.template_view(ev))
            except TemplateError as e:
                print(str(e), file=sys.stderr)
                return True
        else:
            text = json.dumps(ev) if fmt else line(ev)
        print(text, flush=True)
        return True

    tail = events.Tail()
    try:
        while True:
            for ev in tail.poll():
                if not show(ev):
                    return 0
            if until is not None and time.time() > until:
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        return 0
    finally:
        tail.close()


def _bad(msg: str) -> int:
    print(f"nsprim: {_oneline(ValueError(msg))}", file=sys.stderr)
    return 125
