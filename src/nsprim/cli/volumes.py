"""nsprim volume create|ls|rm|inspect."""

from __future__ import annotations

import argparse

from nsprim.cli import (
    _fail,
    _oneline,
)


def cmd_volume(a: argparse.Namespace) -> int:
    import json

    from nsprim import volumes
    from nsprim.errors import ConfigError

    try:
        if a.volume_command == "create":
            info, _ = volumes.create(a.name)
            print(info.name)
        elif a.volume_command == "ls":
            vols = volumes.list_volumes()
            if a.quiet:
                for v in vols:
                    print(v.name)
            elif a.format == "json":
                for v in vols:
                    print(json.dumps(v.to_json()))
            else:
                print(f"{'DRIVER':10} VOLUME NAME")
                for v in vols:
                    print(f"{'local':10} {v.name}")
        elif a.volume_command == "rm":
            for n in a.names:
                volumes.remove(n)
                print(n)
        elif a.volume_command == "inspect":
            print(json.dumps([volumes.get(n).to_json() for n in a.names], indent=4))
        else:
            return _fail("volume: expected create, ls, rm or inspect")
    except (ConfigError, LookupError, OSError) as e:
        return _fail(_oneline(e))
    return 0
