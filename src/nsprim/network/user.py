"""User-defined networks (docker's ``network create``): a bridge per network,
IPAM, NAT (and NAT66), isolation, ``--internal``, and DNS by name.

A network's definition is state of its root: ``<state root>/networks/<id>.json``
(name, subnet, gateway, IPv6 subnet, internal, labels, options).  Its host
objects are named after its id, so roots never share them: the bridge
``nspbr-<id9>`` (made by ``network create``, removed by ``network rm``) and the
nftables tables ``ip nsprim-<id12>`` / ``ip6 nsprim-<id12>``.  Its leases are
host-wide, under ``/run/nsprim-host/networks/<id>/`` (a lock and
``leases.json``: address -> container id, name, aliases, IPv6 address, veth,
owner), so every root and the DNS resolver (:mod:`nsprim.network.dns`) read
the same table.

A lease's owner is either a lock file its container's owner holds (``run``)
or, for ``network connect`` to a running container, its network namespace
(pid and inode): a lease whose owner is gone is collected.

Isolation (each network's ``forward`` chain): a network's containers reach
each other; nothing routed in from another nsprim bridge (the default bridge
or another network) reaches them, except replies and published ports; they
reach no other nsprim bridge; an ``--internal`` network routes nothing out
at all (and its names are not forwarded upstream).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from nsprim._record import field, record
from nsprim.errors import ConfigError
from nsprim.namespace import Namespace
from nsprim.network import mac_for_ip, rules
from nsprim.network.bridge import (
    HOST_DIR,
    HeldPorts,
    _assign_ports,
    _close,
    _elements,
    _held,
    _host_routes,
    _next_free,
    _sysctl,
    nft,
)
from nsprim.network.ports import PortSpec
from nsprim.network.rtnl import Rtnl
from nsprim.state import FileLock, atomic_write, private_dir, run_dir, state_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.network.proxy import Proxy

__all__ = ["Network", "NetworkError", "NetworkNotFound", "create", "get", "networks",
           "remove", "prune", "attach", "connect", "disconnect", "collect", "NetAttachment",
           "BUILTIN", "DNS_ADDRESS", "parse_options"]

BUILTIN = ("bridge", "host", "none")
DNS_ADDRESS = "127.0.0.11"
# docker's default pools start at 172.17; the default bridge takes 10.88-89
USER_SUBNETS = tuple(f"10.{n}.0.0/16" for n in range(90, 128))
BRIDGE_OPTION = "com.docker.network.bridge.name"
_KNOWN_OPTIONS = (BRIDGE_OPTION, "com.docker.network.bridge.enable_ip_masquerade",
                  "com.docker.network.driver.mtu")


class NetworkError(ConfigError):
    """Bad input or a refused change, with docker's one line."""


class NetworkNotFound(NetworkError, LookupError):
    pass


@record(frozen=True)
class Network:
    """A user-defined network (``nsprim.network.create(...)`` or ``get``)."""

    id: str
    name: str
    subnet: str
    gateway: str
    bridge: str
    created: float
    driver: str = "bridge"
    internal: bool = False
    ipv6: bool = False
    subnet6: str | None = None
    gateway6: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return "nsprim-" + self.id[:12]

    @property
    def host_dir(self) -> str:
        return os.path.join(HOST_DIR, "networks", self.id)

    @property
    def leases_path(self) -> str:
        return os.path.join(self.host_dir, "leases.json")

    def containers(self) -> dict[str, dict[str, Any]]:
        """container id -> its endpoint (name, address, IPv6 address, MAC)."""
        out = {}
        for addr, lease in _leases(self).items():
            out[lease["id"]] = {"name": lease.get("name") or "", "address": addr,
                                "address6": lease.get("ip6") or "",
                                "mac": mac_for_ip(addr), "aliases": lease.get("aliases", []),
                                "ifname": lease.get("ifname", "eth0")}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "subnet": self.subnet,
                "gateway": self.gateway, "bridge": self.bridge, "created": self.created,
                "driver": self.driver, "internal": self.internal, "ipv6": self.ipv6,
                "subnet6": self.subnet6, "gateway6": self.gateway6,
                "labels": dict(self.labels), "options": dict(self.options)}

    def remove(self) -> None:
        remove(self.id)


# ---------------------------------------------------------------- definitions

def _defs_dir() -> str:
    return os.path.join(state_root(), "networks")


@contextmanager
def _defs_locked() -> Iterator[None]:
    lock = FileLock(os.path.join(run_dir(), "network", "networks.lock"))
    try:
        yield
    finally:
        lock.release()


def _load(path: str) -> Network | None:
    try:
        with open(path) as f:
            d = json.load(f)
        return Network(d["id"], d["name"], d["subnet"], d["gateway"], d["bridge"],
                       float(d["created"]), d.get("driver", "bridge"),
                       bool(d.get("internal")), bool(d.get("ipv6")), d.get("subnet6"),
                       d.get("gateway6"), dict(d.get("labels") or {}),
                       dict(d.get("options") or {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def networks() -> list[Network]:
    """This root's user-defined networks, oldest first."""
    try:
        names = os.listdir(_defs_dir())
    except FileNotFoundError:
        return []
    out = [n for n in (_load(os.path.join(_defs_dir(), x)) for x in names
                       if x.endswith(".json")) if n is not None]
    return sorted(out, key=lambda n: n.created)


def get(name: str) -> Network:
    """A network by name, full id or unique id prefix."""
    nets = networks()
    for n in nets:
        if n.name == name or n.id == name:
            return n
    hits = [n for n in nets if len(name) >= 1 and n.id.startswith(name)]
    if len(hits) == 1:
        return hits[0]
    raise NetworkNotFound(f"network {name} not found")


# ------------------------------------------------------------ validation (IPAM)

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_name(name: str) -> None:
    if (not name or len(name) > 128 or not set(name) <= _NAME_OK or not name[0].isalnum()):
        raise NetworkError(f"invalid network name {name!r}: [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    if name in BUILTIN:
        raise NetworkError(f"operation is not permitted on predefined {name} network ")


def parse_subnet(text: str, flag: str = "--subnet") -> ipaddress.IPv4Network | \
        ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NetworkError(f'invalid argument "{text}" for "{flag}" flag: invalid CIDR '
                           f"address: {text}") from None


def parse_ip(text: str, flag: str = "--ip") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise NetworkError(f'invalid argument "{text}" for "{flag}" flag: invalid string '
                           f"being converted to IP address: {text}") from None


def parse_options(items: Iterable[str], flag: str = "--opt") -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise NetworkError(f'invalid argument "{item}" for "{flag}" flag: '
                               "expected KEY=VALUE")
        out[k] = v
    return out


def _overlaps(net: ipaddress.IPv4Network | ipaddress.IPv6Network,
              others: Iterable[str | None]) -> bool:
    for o in others:
        if not o:
            continue
        on = ipaddress.ip_network(o)
        if on.version == net.version and on.overlaps(net):
            return True
    return False


def plan_network(name: str, *, subnets: Sequence[str] = (), gateway: str | None = None,
                 ipv6: bool = False, taken: Sequence[str] = (),
                 routes: Sequence[ipaddress.IPv4Network] = ()) -> dict[str, str | None]:
    """Pure IPAM for ``network create``: the IPv4 subnet and gateway (and with
    `ipv6` the IPv6 ones) from the flags, clear of `taken` subnets and host
    `routes`; NetworkError with docker's line for bad input."""
    v4 = [parse_subnet(s) for s in subnets]
    nets4 = [s for s in v4 if s.version == 4]
    nets6 = [s for s in v4 if s.version == 6]
    if len(nets4) > 1 or len(nets6) > 1:
        raise NetworkError("one --subnet per address family")
    if nets6 and not ipv6:
        raise NetworkError(f"invalid subnet {nets6[0]}: an IPv6 subnet needs --ipv6")
    for s in nets4 + nets6:
        if s.num_addresses < (8 if s.version == 4 else 8):
            raise NetworkError(f"invalid subnet {s}: too small")
        if s.version == 4 and s.prefixlen < 8:
            raise NetworkError(f"invalid subnet {s}: too large")
        if _overlaps(s, taken) or (s.version == 4 and any(r.overlaps(s) for r in routes)):
            raise NetworkError("invalid pool request: Pool overlaps with other one on this "
                               "address space")
    if nets4:
        net4 = nets4[0]
    else:
        for cand in USER_SUBNETS:
            c = ipaddress.IPv4Network(cand)
            if not _overlaps(c, taken) and not any(r.overlaps(c) for r in routes):
                net4 = c
                break
        else:
            raise NetworkError("could not find an available, non-overlapping IPv4 address "
                               "pool among the defaults to assign to the network")
    gw4 = net4.network_address + 1
    if gateway is not None:
        g = parse_ip(gateway, "--gateway")
        if g.version != 4 or g not in net4 or g in (net4.network_address,
                                                     net4.broadcast_address):
            raise NetworkError(f"no matching subnet for gateway {gateway}")
        gw4 = g
    out: dict[str, str | None] = {"subnet": str(net4), "gateway": str(gw4),
                                  "subnet6": None, "gateway6": None}
    if ipv6:
        if nets6:
            net6 = nets6[0]
            if net6.prefixlen > 120:
                raise NetworkError(f"invalid subnet {net6}: too small")
        else:
            for _ in range(16):
                raw = b"\xfd" + secrets.token_bytes(5) + b"\0" * 10
                net6 = ipaddress.IPv6Network((int.from_bytes(raw, "big"), 64))
                if not _overlaps(net6, taken):
                    break
        out["subnet6"] = str(net6)
        out["gateway6"] = str(net6.network_address + 1)
    return out


# ------------------------------------------------------------------ host objects

def _ruleset(n: Network) -> str:
    return rules.ruleset(n.table, n.bridge, n.subnet, isolate=True, internal=n.internal,
                         subnet6=n.subnet6 if n.ipv6 else None) + rules.guard(n.table)


def _ensure_host(n: Network) -> None:
    """The bridge with its gateway addresses and the tables (idempotent)."""
    try:
        socket.if_nametoindex(n.bridge)
        return
    except OSError:
        pass
    with Rtnl() as rt:
        rt.add_bridge(n.bridge)
        try:
            idx = socket.if_nametoindex(n.bridge)
            net = ipaddress.IPv4Network(n.subnet)
            rt.add_addr(idx, n.gateway, net.prefixlen)
            if n.ipv6 and n.subnet6 and n.gateway6:
                _sysctl(f"net/ipv6/conf/{n.bridge}/disable_ipv6", "0")
                rt.add_addr6(idx, n.gateway6, ipaddress.IPv6Network(n.subnet6).prefixlen)
            rt.set_link(idx, up=True)
            nft().run(_drop_commands(n) + _ruleset(n))  # one transaction
            _sysctl("net/ipv4/ip_forward", "1")
            _sysctl(f"net/ipv4/conf/{n.bridge}/route_localnet", "1")
            if n.ipv6 and not n.internal:
                _sysctl("net/ipv6/conf/all/forwarding", "1")
        except BaseException:
            _teardown_host(n)
            raise


def _drop_commands(n: Network) -> str:
    return rules.drop(n.table)


def _drop_tables(n: Network) -> None:
    try:
        nft().run(_drop_commands(n))
    except OSError:
        pass


def _teardown_host(n: Network, *, wait: bool = True) -> None:
    """The tables (one transaction, ~0.4 ms) and the bridge.  Deleting the
    bridge waits for an RCU barrier in the kernel (30-55 ms here); without
    `wait` it is buried instead (:mod:`nsprim.network.graveyard`): out of
    service and its name free at once, deleted in the background."""
    _drop_tables(n)
    try:
        with Rtnl() as rt:
            if wait:
                rt.del_link(n.bridge)
            else:
                from nsprim.network.graveyard import bury

                bury(rt, n.bridge, ((n.gateway, ipaddress.IPv4Network(n.subnet).prefixlen),))
    except OSError:
        pass


# ------------------------------------------------------------------ create / rm

def create(name: str, *, subnet: str | Sequence[str] | None = None,
           gateway: str | None = None, ipv6: bool = False, internal: bool = False,
           labels: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
           driver: str = "bridge") -> Network:
    """Create a user-defined bridge network (``docker network create``):
    everything is checked before anything is made."""
    check_name(name)
    if driver != "bridge":
        raise NetworkError(f"plugin \"{driver}\" not found")
    opts = dict(options or {})
    for k in opts:
        if k not in _KNOWN_OPTIONS:
            raise NetworkError(f"invalid option {k!r}: known options are "
                               + ", ".join(_KNOWN_OPTIONS))
    subnets = [subnet] if isinstance(subnet, str) else list(subnet or ())
    net_id = secrets.token_hex(32)
    bridge_name = opts.get(BRIDGE_OPTION) or "nspbr-" + net_id[:9]
    if len(bridge_name) > 15 or not bridge_name.isprintable() or "/" in bridge_name \
            or " " in bridge_name:
        raise NetworkError(f"invalid bridge name {bridge_name!r}")
    os.makedirs(os.path.join(run_dir(), "network"), 0o700, exist_ok=True)
    # the root's lock (names), then the host's (subnets and bridges: another
    # root choosing at the same time sees this one's bridge and route)
    with _defs_locked(), FileLock(os.path.join(private_dir(HOST_DIR), "networks.lock")):
        nets = networks()
        if any(n.name == name for n in nets):
            raise NetworkError(f"network with name {name} already exists")
        if any(n.bridge == bridge_name for n in nets) or _link_exists(bridge_name):
            raise NetworkError(f"bridge name {bridge_name} is already in use")
        taken = [s for n in nets for s in (n.subnet, n.subnet6) if s]
        plan = plan_network(name, subnets=subnets, gateway=gateway, ipv6=ipv6, taken=taken,
                            routes=_host_routes())
        n = Network(net_id, name, str(plan["subnet"]), str(plan["gateway"]), bridge_name,
                    time.time(), driver, internal, ipv6, plan["subnet6"], plan["gateway6"],
                    dict(labels or {}), opts)
        _ensure_host(n)
        try:
            os.makedirs(private_dir(os.path.join(HOST_DIR, "networks")), 0o700, exist_ok=True)
            os.makedirs(n.host_dir, 0o700, exist_ok=True)
            os.makedirs(_defs_dir(), 0o700, exist_ok=True)
            atomic_write(os.path.join(_defs_dir(), n.id + ".json"),
                         json.dumps(n.to_json()).encode(), 0o600)
        except BaseException:
            _teardown_host(n)
            raise
    return n


def _link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def remove(name: str) -> Network:
    """``docker network rm``: refused while a container is attached."""
    if name in BUILTIN:
        raise NetworkError(f"{name} is a pre-defined network and cannot be removed")
    with _defs_locked():
        n = get(name)
        with _net_locked(n):
            _collect_net(n)
            if _leases(n):
                raise NetworkError(f"error while removing network: network {n.name} id "
                                   f"{n.id} has active endpoints")
            _teardown_host(n, wait=False)
            try:
                os.unlink(os.path.join(_defs_dir(), n.id + ".json"))
            except FileNotFoundError:
                pass
            for f in ("leases.json",):
                try:
                    os.unlink(os.path.join(n.host_dir, f))
                except FileNotFoundError:
                    pass
        try:
            os.unlink(os.path.join(n.host_dir, "lock"))
            os.rmdir(n.host_dir)
        except OSError:
            pass
    return n


def prune(until: float | None = None, labels: Mapping[str, str | None] | None = None
          ) -> list[str]:
    """Remove the networks no container uses; their names."""
    out = []
    for n in networks():
        if until is not None and n.created >= until:
            continue
        if labels and not all(k in n.labels and (v is None or n.labels[k] == v)
                              for k, v in labels.items()):
            continue
        try:
            remove(n.id)
        except NetworkError:
            continue
        out.append(n.name)
    return out


# ------------------------------------------------------------------ leases

@contextmanager
def _net_locked(n: Network) -> Iterator[None]:
    lock = FileLock(os.path.join(private_dir(n.host_dir), "lock"))
    try:
        yield
    finally:
        lock.release()


def _read_leases(n: Network) -> dict[str, Any]:
    try:
        with open(n.leases_path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _leases(n: Network) -> dict[str, Any]:
    got = _read_leases(n).get("leases", {})
    return got if isinstance(got, dict) else {}


def _write_leases(n: Network, leases: dict[str, Any], last: str | None) -> None:
    atomic_write(n.leases_path, json.dumps({"leases": leases, "last": last}).encode(), 0o600,
                 durable=False)


def _alive(lease: Mapping[str, Any]) -> bool:
    owner = lease.get("owner")
    if isinstance(owner, str):
        return _held(owner)
    if isinstance(owner, dict):  # network connect: the namespace (pid, inode)
        try:
            return bool(os.stat(f"/proc/{int(owner['pid'])}/ns/net").st_ino ==
                        int(owner["ino"]))
        except (OSError, KeyError, ValueError, TypeError):
            return False
    return False


def _collect_net(n: Network) -> list[str]:
    """Drop the leases of gone owners (under the network's lock)."""
    leases = _leases(n)
    dead = [a for a, lease in leases.items() if not _alive(lease)]
    if not dead:
        return []
    out = []
    for a in dead:
        lease = leases.pop(a)
        _release(n, a, lease, delete_veth=True)
        if isinstance(lease.get("owner"), str):
            try:
                os.unlink(lease["owner"])
            except OSError:
                pass
        out.append(str(lease.get("id", a)))
    _write_leases(n, leases, _read_leases(n).get("last"))
    return out


def collect() -> list[str]:
    """Release the leases of this root's networks whose owners are gone; and
    if containers are left on them but the DNS resolver is gone (killed),
    start a new one: it adopts their namespaces."""
    out: list[str] = []
    live = False
    for n in networks():
        if not os.path.exists(n.leases_path):
            continue
        with _net_locked(n):
            out += _collect_net(n)
            live = live or bool(_leases(n))
    if live:
        from nsprim.network import dns

        dns.ensure_running()
    return out


def _nft_ports(verb: str, n: Network, ip: str, ports: Iterable[dict[str, Any]],
              prefix: str = "") -> None:
    cmds = prefix + "".join(f"{verb} element ip {n.table} {m} {{ {', '.join(els)} }}\n"
                            for m, els in _elements(ip, ports).items())
    if prefix:
        rules.run_endpoint(nft(), n.table, cmds)
    elif cmds:
        nft().run(cmds)


def _release(n: Network, address: str, lease: Mapping[str, Any], *,
             delete_veth: bool = True) -> None:
    from nsprim.network import dns

    try:
        _nft_ports("delete", n, address, lease.get("ports", []))
    except OSError:
        pass
    try:  # its own transaction: a missing element fails the whole of one
        nft().run(rules.endpoint("delete", n.table, str(lease["veth"]), address,
                                 lease.get("ip6")))
    except (OSError, KeyError):
        pass
    dns.leave(str(lease.get("id", "")), n.leases_path)
    if delete_veth:
        try:
            with Rtnl() as rt:
                rt.del_link(str(lease["veth"]))
        except (OSError, KeyError):
            pass


# ------------------------------------------------------------------ attach

class NetAttachment(HeldPorts):
    """A container's endpoint on a user-defined network; detach() undoes it.
    Quacks like :class:`nsprim.network.bridge.Attachment`."""

    def __init__(self, network: Network, container_id: str, address: str, address6: str | None,
                 ifname: str, veth: str, ports: list[dict[str, Any]], lock: FileLock | None,
                 holders: list[socket.socket]) -> None:
        self.network = network
        self.id = container_id
        self.address = address
        self.address6 = address6
        self.gateway = network.gateway
        self.prefixlen = ipaddress.IPv4Network(network.subnet).prefixlen
        self.ifname = ifname
        self.veth = veth
        self.ports = ports
        self._lock = lock
        self._holders = holders
        self._proxy: Proxy | None = None

    def detach(self, *, netns_gone: bool = False) -> None:
        if self._lock is None:
            return
        if self._proxy is not None:
            proxy, self._proxy = self._proxy, None
            proxy.stop()
        _drop_lease(self.network, self.id, delete_veth=not netns_gone)
        _close(self._holders)
        self._lock.release(unlink=True)
        self._lock = None


def _drop_lease(n: Network, container_id: str, *, delete_veth: bool = True) -> bool:
    with _net_locked(n):
        state = _read_leases(n)
        leases = state.get("leases", {})
        hit = [a for a, lease in leases.items() if lease.get("id") == container_id]
        for a in hit:
            lease = leases.pop(a)
            _release(n, a, lease, delete_veth=delete_veth)
            if isinstance(lease.get("owner"), str):  # its lock file (the owner may be gone)
                try:
                    os.unlink(lease["owner"])
                except OSError:
                    pass
        if hit:
            _write_leases(n, leases, state.get("last"))
    return bool(hit)


def _veth_name(container_id: str, slot: int) -> str:
    # 'g'..'p' are no hex digits: never the default bridge's nsp<id12>
    return "nsp" + container_id[:11] + chr(ord("g") + slot)


def attach(network: str | Network, container_id: str, netns: Namespace, *,
           name: str | None = None, aliases: Sequence[str] = (), ip: str | None = None,
           ip6: str | None = None, inner: Rtnl | None = None, publish: Iterable[PortSpec] = (),
           ifname: str = "eth0", ifindex: int = 2, owner: Any = None,
           upstream: Sequence[str] | None = None) -> NetAttachment:
    """Put `netns` on a user-defined network: a veth (`ifname` inside), its
    addresses, a default route (on eth0), published ports, and its names in
    the network's DNS table (and the resolver's socket at 127.0.0.11:53 in
    the namespace).  `owner`: None (a lock file is made and held by the
    returned attachment) or a {pid, ino} of a running container's netns.
    `upstream`: where its DNS forwards other names (its ``--dns``; None or
    empty: the host's resolvers now), recorded in its lease."""
    from nsprim.network import dns

    n = network if isinstance(network, Network) else get(network)
    upstream = [] if n.internal else (list(upstream) if upstream else dns.upstreams())
    slot = int(ifname[3:]) if ifname.startswith("eth") and ifname[3:].isdigit() else 0
    veth = _veth_name(container_id, slot)
    lock: FileLock | None = None
    if owner is None:
        lock = FileLock(os.path.join(run_dir(), "network", "owners", container_id + "-"
                                     + n.id[:12] + ".lock"))
        owner = lock.path
    holders: list[socket.socket] = []
    proxied: list[tuple[socket.socket, dict[str, Any]]] = []
    net4 = ipaddress.IPv4Network(n.subnet)
    try:
        _check_ip(n, ip, ip6)
        _ensure_host(n)
        with _net_locked(n):
            state = _read_leases(n)
            leases = state.get("leases", {})
            if any(lease.get("id") == container_id for lease in leases.values()):
                raise NetworkError(f"endpoint with name {name or container_id[:12]} already "
                                   f"exists in network {n.name}")
            if ip is not None:
                if ip in leases or ip == n.gateway:
                    raise NetworkError(f"Address already in use: {ip}")
                address = ip
            else:
                taken = dict(leases)
                taken[n.gateway] = {}
                address = _next_free(net4, taken, state.get("last"))
            address6 = None
            if n.ipv6 and n.subnet6:
                if ip6 is not None:
                    if any(lease.get("ip6") == ip6 for lease in leases.values()):
                        raise NetworkError(f"Address already in use: {ip6}")
                    address6 = ip6
                else:
                    net6 = ipaddress.IPv6Network(n.subnet6)
                    off = int(ipaddress.IPv4Address(address)) - int(net4.network_address)
                    address6 = str(net6.network_address + off)
            ports = _assign_ports(list(publish), leases, holders, proxied) \
                if not n.internal else []
            leases[address] = {"id": container_id, "name": name, "aliases": list(aliases),
                               "ip6": address6, "veth": veth, "ports": ports, "owner": owner,
                               "ifname": ifname, "netns": os.fstat(netns.fd).st_ino,
                               "internal": n.internal, "upstream": upstream}
            _write_leases(n, leases, address if ip is None else state.get("last"))
        try:
            # the veth's own addresses are its only sources (anti-spoofing),
            # from before it exists; the published ports in the same call
            _nft_ports("add", n, address, ports,
                       prefix=rules.endpoint("add", n.table, veth, address, address6))
            with Rtnl() as rt:
                rt.add_veth(veth, ifname, netns.fd, master=socket.if_nametoindex(n.bridge),
                            peer_index=ifindex, peer_mac=mac_for_ip(address))
            if ifindex == 0:  # a running container's namespace: the kernel chose
                ifindex = netns.run_in(lambda: socket.if_nametoindex(ifname))
            with inner or Rtnl(netns) as rin:
                rin.add_addr(ifindex, address, net4.prefixlen)
                if address6 is not None:
                    rin.add_addr6(ifindex, address6,
                                  ipaddress.IPv6Network(str(n.subnet6)).prefixlen)
                rin.set_link(ifindex, up=True)
                rin.set_link(1, up=True)
                if ifindex == 2 and not n.internal:
                    rin.add_default_route(n.gateway)
                    if address6 is not None and n.gateway6:
                        rin.add_default_route6(n.gateway6)
            dns.join(container_id, n.leases_path, netns, internal=n.internal,
                     upstream=upstream)
        except BaseException:
            _drop_lease(n, container_id)
            raise
    except BaseException:
        _close(holders)
        if lock is not None:
            lock.release(unlink=True)
        raise
    att = NetAttachment(n, container_id, address, address6, ifname, veth, ports, lock, holders)
    if proxied:  # [::]/[::1] ports: served by a userland proxy, as on the bridge
        from nsprim.network.proxy import Listener, Proxy

        att._proxy = Proxy([Listener(sk, e["proto"], (address, e["container_port"]))
                            for sk, e in proxied]).start()
    return att


def _check_ip(n: Network, ip: str | None, ip6: str | None) -> None:
    if ip is not None:
        a = parse_ip(ip)
        net4 = ipaddress.IPv4Network(n.subnet)
        if a.version != 4 or a not in net4 or a in (net4.network_address,
                                                     net4.broadcast_address):
            raise NetworkError(f"Invalid address {ip}: It does not belong to any of this "
                               "network's subnets")
    if ip6 is not None:
        a6 = parse_ip(ip6, "--ip6")
        if not n.ipv6 or n.subnet6 is None or a6.version != 6 or \
                a6 not in ipaddress.IPv6Network(n.subnet6):
            raise NetworkError(f"Invalid address {ip6}: It does not belong to any of this "
                               "network's subnets")


def release_container(container_id: str) -> bool:
    """Drop `container_id`'s leases on every network of this root (its
    supervisor cleaning up after it; its namespace is gone, the veths too)."""
    hit = False
    for n in networks():
        if any(lease.get("id") == container_id for lease in _leases(n).values()):
            hit = _drop_lease(n, container_id, delete_veth=False) or hit
    return hit


def endpoints_of(container_id: str) -> dict[str, dict[str, Any]]:
    """network name -> endpoint of `container_id` on this root's networks."""
    out = {}
    for n in networks():
        for addr, lease in _leases(n).items():
            if lease.get("id") == container_id:
                out[n.name] = {"network": n, "address": addr, **lease}
    return out


def connect(network: str, container: str, *, aliases: Sequence[str] = (),
            ip: str | None = None, ip6: str | None = None) -> NetAttachment | None:
    """``docker network connect``: a running container gets one more
    interface (eth1, eth2...) on `network`; a created or stopped one has it
    in its record, attached when it starts (None).  Either way its record
    keeps it, so a restart brings it back, as in docker."""
    from nsprim.lifecycle import _live_pid, find

    n = get(network)
    rec = find(container)
    live = _live_pid(rec) if rec.running else None
    cid = rec.id
    if live is None:  # created or stopped: its record only (attached on start)
        record_endpoint(rec, n, aliases=aliases, ip=ip, ip6=ip6)
        return None
    if any(lease.get("id") == cid for lease in _leases(n).values()) or \
            _recorded(rec.config, n) is not None:
        raise NetworkError(f"endpoint with name {rec.name} already exists in network "
                           f"{n.name}")
    pid = live[0]
    ns = Namespace.of(pid, "net")
    try:
        used = _ifnames_in(ns)
        slot = next(i for i in range(1, 10) if f"eth{i}" not in used)
        ino = os.fstat(ns.fd).st_ino
        att = attach(n, cid, ns, name=rec.name, aliases=aliases, ip=ip, ip6=ip6,
                     ifname=f"eth{slot}", ifindex=0, owner={"pid": pid, "ino": ino},
                     upstream=_own_upstream(rec))
    finally:
        ns.close()
    if not n.internal:
        # a default-bridge container now asks the network's resolver, as in
        # docker (its other names are forwarded to its own upstreams)
        from nsprim.network.etc import rewrite_resolv

        rewrite_resolv(run_dir(), cid, DNS_ADDRESS)
    try:  # kept in its record: a restart brings it back, as in docker
        _append_endpoint(find(cid), n, aliases, ip, ip6)
    except (LookupError, OSError):
        pass  # removed meanwhile: nothing to keep
    return att


def _recorded(cfg: Mapping[str, Any], n: Network) -> int | None:
    """-1: `n` is the record's primary network; i: its extra_networks[i];
    None: not on it."""
    if cfg.get("network") in (n.name, n.id):
        return -1
    for i, e in enumerate(cfg.get("extra_networks") or ()):
        if isinstance(e, Mapping) and e.get("name") in (n.name, n.id):
            return i
    return None


def record_endpoint(rec: Any, n: Network, *, aliases: Sequence[str] = (),
                    ip: str | None = None, ip6: str | None = None) -> None:
    """`network connect` in the record of `rec` (extra_networks): checked
    first (docker's words: the network's subnet, not connected twice), then
    written (NetworkError before anything is written)."""
    cfg = rec.config
    if _recorded(cfg, n) is not None:
        raise NetworkError(f"endpoint with name {rec.name or rec.id[:12]} already exists "
                           f"in network {n.name}")
    primary = str(cfg.get("network") or "bridge")
    if primary.startswith("container:") or primary == "host":
        raise NetworkError("container sharing network namespace with another container or "
                           "host cannot be connected to any other network")
    if primary == "none":
        raise NetworkError("container cannot be connected to multiple networks with one of "
                           "the networks in private (none) mode")
    _check_ip(n, ip, ip6)
    if ip is not None and (ip == n.gateway or ip in _leases(n)):
        raise NetworkError(f"Address already in use: {ip}")
    _append_endpoint(rec, n, aliases, ip, ip6)


def _append_endpoint(rec: Any, n: Network, aliases: Sequence[str], ip: str | None,
                     ip6: str | None) -> None:
    cfg = rec.config
    if _recorded(cfg, n) is not None:
        return
    cfg["extra_networks"] = list(cfg.get("extra_networks") or ()) + [
        {"name": n.name, "aliases": [str(a) for a in aliases], "ip": ip, "ip6": ip6}]
    rec.write_config(cfg)


def forget_endpoint(rec: Any, n: Network) -> bool:
    """`network disconnect` in the record of `rec`: True when `n` was one
    of its extra networks."""
    cfg = rec.config
    i = _recorded(cfg, n)
    if i is None or i < 0:
        return False
    extra = list(cfg.get("extra_networks") or ())
    del extra[i]
    cfg["extra_networks"] = extra
    rec.write_config(cfg)
    return True


def _own_upstream(rec: Any) -> list[str] | None:
    """The upstream resolvers of a running container (not the connecting
    command's): what its other networks' leases recorded, else its
    ``--dns``, else None (the host's)."""
    for ep in endpoints_of(rec.id).values():
        ups = ep.get("upstream")
        if isinstance(ups, list) and ups and not ep.get("internal"):
            return [str(u) for u in ups]
    try:
        own = [str(d) for d in rec.spec.dns]
    except (OSError, ValueError, TypeError, AttributeError):
        own = []
    return own or None


def _ifnames_in(ns: Namespace) -> set[str]:
    return set(ns.run_in(lambda: [name for _, name in socket.if_nameindex()]))


def disconnect(network: str, container: str) -> None:
    """``docker network disconnect``: its interface on `network` is removed."""
    from nsprim.lifecycle import find

    n = get(network)
    rec = find(container)
    recorded = forget_endpoint(rec, n)
    if not (rec.running and _drop_lease(n, rec.id)) and not recorded:
        raise NetworkError(f"container {rec.id[:12]} is not connected to network {n.name}")


def inspect_shape(n: Network, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker's ``network inspect`` JSON of `n`."""
    from datetime import datetime, timezone

    config = [{"Subnet": n.subnet, "Gateway": n.gateway}]
    if n.ipv6 and n.subnet6:
        config.append({"Subnet": n.subnet6, "Gateway": str(n.gateway6)})
    containers = {}
    plen6 = ipaddress.IPv6Network(n.subnet6).prefixlen if n.subnet6 else 0
    for cid, ep in n.containers().items():
        containers[cid] = {
            "Name": ep["name"] or (names or {}).get(cid, cid[:12]),
            "EndpointID": cid, "MacAddress": ep["mac"],
            "IPv4Address": f"{ep['address']}/{ipaddress.IPv4Network(n.subnet).prefixlen}",
            "IPv6Address": (f"{ep['address6']}/{plen6}" if ep["address6"] else "")}
    created = datetime.fromtimestamp(n.created, timezone.utc).isoformat().replace("+00:00", "Z")
    return {"Name": n.name, "Id": n.id, "Created": created, "Scope": "local",
            "Driver": n.driver, "EnableIPv4": True, "EnableIPv6": n.ipv6,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": n.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": dict(n.options), "Labels": dict(n.labels)}


def free_error(e: OSError) -> str:
    return e.strerror or os.strerror(e.errno or errno.EIO)
