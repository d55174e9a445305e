"""nsprim network create|ls|inspect|rm|prune|connect|disconnect: docker's
three built-in networks (bridge is nsprim's bridge ``nsprim0``) and the
user-defined ones (nsprim.network.user)."""

from __future__ import annotations

import argparse
import sys

from nsprim.cli import _fail


def add_network_parsers(ns: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nc = ns.add_parser("create", help="create a user-defined bridge network")
    nc.add_argument("-d", "--driver", default="bridge")
    nc.add_argument("--subnet", action="append", default=[], metavar="CIDR")
    nc.add_argument("--gateway", metavar="IP")
    nc.add_argument("--ipv6", action="store_true", help="IPv6 too (a ULA /64 by default)")
    nc.add_argument("--internal", action="store_true", help="no route out of the network")
    nc.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    nc.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    nc.add_argument("--attachable", action="store_true", help="accepted (docker's swarm flag)")
    nc.add_argument("name")
    nr = ns.add_parser("rm", aliases=["remove"], help="remove networks")
    nr.add_argument("-f", "--force", action="store_true")
    nr.add_argument("names", nargs="+")
    npr = ns.add_parser("prune", help="remove the networks no container uses")
    npr.add_argument("-f", "--force", action="store_true")
    npr.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    nco = ns.add_parser("connect", help="connect a running container to a network")
    nco.add_argument("--alias", action="append", default=[])
    nco.add_argument("--ip", metavar="IPV4")
    nco.add_argument("--ip6", metavar="IPV6")
    nco.add_argument("network")
    nco.add_argument("container")
    nd = ns.add_parser("disconnect", help="disconnect a container from a network")
    nd.add_argument("-f", "--force", action="store_true")
    nd.add_argument("network")
    nd.add_argument("container")


def cmd_network(a: argparse.Namespace) -> int:
    from nsprim.cli.containers import inspect_objects
    from nsprim.cli.listing import FilterError, emit, label_match, parse_filters
    from nsprim.dockerfmt import load, shapes

    _collect()
    if a.network_command == "inspect":
        return inspect_objects(a.names, "network", a.format)
    if a.network_command in ("create", "rm", "remove", "prune", "connect", "disconnect"):
        return _change(a)
    if a.network_command not in ("ls", "list"):
        return _fail("network: expected create, ls, inspect, rm, prune, connect or disconnect")
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
        builtin = n["Name"] in shapes.BUILTIN_NETWORKS
        if "type" in f and ("builtin" if builtin else "custom") not in f["type"]:
            continue
        if "scope" in f and n["Scope"] not in f["scope"]:
            continue
        if "label" in f and not label_match(n["Labels"], f["label"]):
            continue
        rows.append(shapes.network_row(n, trunc=not a.no_trunc))
    return emit(a.format, rows, default=shapes.NETWORKS_TABLE, headers=shapes.NETWORK_HEADERS,
                quiet=a.quiet)


def _collect() -> None:
    """Leases of killed owners go (and a killed resolver is replaced) before
    a network command looks: its view is true."""
    import os

    from nsprim.state import state_root

    if os.path.isdir(os.path.join(state_root(), "networks")):
        from nsprim.network import user

        try:
            user.collect()
        except OSError:
            pass


def _change(a: argparse.Namespace) -> int:
    from nsprim.errors import ConfigError
    from nsprim.network import user

    try:
        if a.network_command == "prune":
            _prune_filters(a.filter)  # bad filters: before anything is removed
        if a.network_command == "create":
            from nsprim.spec import parse_labels

            n = user.create(a.name, subnet=a.subnet, gateway=a.gateway, ipv6=a.ipv6,
                            internal=a.internal, labels=parse_labels(a.label),
                            options=user.parse_options(a.opt, "--opt"), driver=a.driver)
            print(n.id)
        elif a.network_command in ("rm", "remove"):
            code = 0
            for name in a.names:
                try:
                    user.remove(name)
                    print(name)
                except user.NetworkNotFound as e:
                    if not a.force:
                        code = _fail(f"Error response from daemon: {e}")
                except ConfigError as e:
                    code = _fail(f"Error response from daemon: {e}")
            return code
        elif a.network_command == "prune":
            until, labels = _prune_filters(a.filter)
            gone = user.prune(until, labels)
            if gone:
                print("Deleted Networks:")
                print("\n".join(gone))
        elif a.network_command == "connect":
            try:  # a flag's error: docker's 125
                if a.ip:
                    user.parse_ip(a.ip, "--ip")
                if a.ip6:
                    user.parse_ip(a.ip6, "--ip6")
            except ConfigError as e:
                return _fail(str(e))
            user.connect(a.network, a.container, aliases=a.alias, ip=a.ip, ip6=a.ip6)
        elif a.network_command == "disconnect":
            user.disconnect(a.network, a.container)
    except (ConfigError, LookupError) as e:
        msg = str(e.args[0]) if isinstance(e, LookupError) and e.args else str(e)
        # docker's CLI: 1 for connect/disconnect's object errors
        return _fail(f"Error response from daemon: {msg}",
                     1 if a.network_command in ("connect", "disconnect") else 125)
    except OSError as e:
        return _fail(f"Error response from daemon: {user.free_error(e)}")
    return 0


def _prune_filters(items: list[str]) -> tuple[float | None, dict[str, str | None]]:
    from nsprim.errors import ConfigError

    until: float | None = None
    labels: dict[str, str | None] = {}
    for item in items:
        k, _, v = item.partition("=")
        if k == "until":
            import time

            from nsprim.health import parse_duration

            until = time.time() - parse_duration(v, "until")
        elif k == "label":
            lk, eq, lv = v.partition("=")
            labels[lk] = lv if eq else None
        else:
            raise ConfigError(f"invalid filter {k!r}")
    return until, labels
