"""nsprim volume create|ls|rm|inspect."""

from __future__ import annotations

import argparse

from nsprim.cli import (
    _fail,
    _oneline,
)


def _volume_ls(a: argparse.Namespace) -> int:
    import sys

    from nsprim.cli.listing import FilterError, emit, label_match, parse_filters
    from nsprim.dockerfmt import load, shapes

    try:
        f = parse_filters(a.filter, ("name", "label", "driver", "dangling"))
    except FilterError as e:
        print(str(e), file=sys.stderr)
        return 1
    rows = []
    for v in load.volume_objects():
        if "name" in f and not any(n in v["Name"] for n in f["name"]):
            continue
        if "driver" in f and v["Driver"] not in f["driver"]:
            continue
        if "label" in f and not label_match(v["Labels"] or {}, f["label"]):
            continue
        rows.append(shapes.volume_row(v))
    return emit(a.format, rows, default=shapes.VOLUMES_TABLE, headers=shapes.VOLUME_HEADERS,
                quiet=a.quiet, quiet_field="Name")


def cmd_volume(a: argparse.Namespace) -> int:
    from nsprim import volumes
    from nsprim.errors import ConfigError

    try:
        if a.volume_command == "create":
            info, _ = volumes.create(a.name)
            print(info.name)
        elif a.volume_command in ("ls", "list"):
            return _volume_ls(a)
        elif a.volume_command in ("rm", "remove"):
            for n in a.names:
                volumes.remove(n)
                print(n)
        elif a.volume_command == "inspect":
            from nsprim.cli.containers import inspect_objects

            return inspect_objects(a.names, "volume", a.format)
        else:
            return _fail("volume: expected create, ls, rm or inspect")
    except (ConfigError, LookupError, OSError) as e:
        return _fail(_oneline(e))
    return 0
