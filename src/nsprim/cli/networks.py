"""nsprim network ls|inspect: docker's three built-in networks (bridge is
nsprim's bridge ``nsprim0``)."""

from __future__ import annotations

import argparse
import sys

from nsprim.cli import _fail


def cmd_network(a: argparse.Namespace) -> int:
    from nsprim.cli.containers import inspect_objects
    from nsprim.cli.listing import FilterError, emit, label_match, parse_filters
    from nsprim.dockerfmt import load, shapes

    if a.network_command == "inspect":
        return inspect_objects(a.names, "network", a.format)
    if a.network_command not in ("ls", "list"):
        return _fail("network: expected ls or inspect")
    try:
        f = parse_filters(a.filter, ("name", "id", "driver", "type", "label", "scope"))
    except FilterError as e:
        print(str(e), file=sys.stderr)
        return 1
    items = load.containers()
    rows = []
    for name in load.network_names():
        n = load.inspect_network(name, items)
        if "name" in f and not any(v in n["Name"] for v in f["name"]):
            continue
        if "id" in f and not any(n["Id"].startswith(v) for v in f["id"]):
            continue
        if "driver" in f and n["Driver"] not in f["driver"]:
            continue
        if "type" in f and "builtin" not in f["type"]:
            continue
        if "scope" in f and n["Scope"] not in f["scope"]:
            continue
        if "label" in f and not label_match(n["Labels"], f["label"]):
            continue
        rows.append(shapes.network_row(n, trunc=not a.no_trunc))
    return emit(a.format, rows, default=shapes.NETWORKS_TABLE, headers=shapes.NETWORK_HEADERS,
                quiet=a.quiet)
