"""The bridge network: a host bridge ``nsprim0``, a veth pair per container,
addresses from an IPAM that never hands one out twice, NAT, published ports.

Host objects, all named nsprim's: the bridge ``nsprim0`` (gateway address
.1 of the subnet), veths ``nsp<id>``, the nftables table ``ip nsprim`` (all
rules live there; nothing is written to other tables).  State under the run
dir ``network/``: ``config.json`` (the subnet) and ``leases.json`` (address ->
container, veth, ports), changed under a file lock.  A lease names its
owner's lock file: when the owner dies, ``collect()`` removes its veth, ports
and address.

The bridge and the table are host objects that every state root shares.  A
host-wide registry under ``/run/nsprim-host`` (a lock and one file per root
that has leases, naming its network dir) makes them shared with counts every
root sees: a root that loses its last lease removes the bridge and the table
only when no other root has a live container on them, and addresses and
published ports are handed out clear of every root's leases.

``route_localnet`` is on for the bridge (so that ports published on
127.0.0.1 reach containers); the table's ``input`` chain drops what a
container sends to 127.0.0.0/8 unless it belongs to a published port's DNAT
(the CVE-2020-8558 class: a raw frame to a host service on loopback).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from nsprim._record import field, record
from nsprim.errors import ConfigError
from nsprim.namespace import Namespace
from nsprim.network import mac_for_ip, rules
from nsprim.network.nft import Nft
from nsprim.network.ports import PortSpec, is_ipv6, join_host_port
from nsprim.network.rtnl import Rtnl
from nsprim.state import FileLock, atomic_write, private_dir, root_id, run_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.network.etc import EtcOptions
    from nsprim.network.proxy import Proxy

__all__ = ["BRIDGE", "TABLE", "Attachment", "attach", "collect", "network_dir",
           "DEFAULT_SUBNETS"]

BRIDGE = "nsprim0"
TABLE = "nsprim"
# shared by every state root on the host (a rootless user network,
# nsprim.network.rootless_net, has its own)
HOST_DIR = os.environ.get("NSPRIM_HOST_DIR") or "/run/nsprim-host"
DEFAULT_SUBNETS = ("10.88.0.0/16", "10.89.0.0/16", "172.29.0.0/16", "10.199.0.0/16")
_EPHEMERAL = (32768, 60999)
_LO, _ETH0 = 1, 2  # interface indexes in a container's new network namespace
_nft: Nft | None = None


def nft() -> Nft:
    global _nft
    if _nft is None:
        _nft = Nft()
    return _nft


def network_dir() -> str:
    return os.path.join(run_dir(), "network")


@contextmanager
def _locked() -> Iterator[None]:
    os.makedirs(network_dir(), mode=0o700, exist_ok=True)
    lock = FileLock(os.path.join(network_dir(), "lock"))
    try:
        yield
    finally:
        lock.release()


def _read(name: str, directory: str | None = None) -> dict[str, Any]:
    try:
        with open(os.path.join(directory or network_dir(), name)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(name: str, data: dict[str, Any]) -> None:
    # the run dir is per boot: no fsync needed
    atomic_write(os.path.join(network_dir(), name), json.dumps(data).encode(), 0o600,
                 durable=False)


# ------------------------------------------------- host-wide registry of users

@contextmanager
def _host_locked() -> Iterator[None]:
    """The host-wide lock over the bridge, the table and the registry (taken
    after a root's own network lock, never before)."""
    lock = FileLock(os.path.join(private_dir(HOST_DIR), "bridge.lock"))
    try:
        yield
    finally:
        lock.release()


def _users_dir() -> str:
    return os.path.join(HOST_DIR, "bridge-users")


def _register() -> None:
    """Note this root as a user of the bridge (under the host lock)."""
    path = os.path.join(_users_dir(), root_id())
    if not os.path.exists(path):
        os.makedirs(_users_dir(), 0o700, exist_ok=True)
        atomic_write(path, network_dir().encode(), 0o600, durable=False)


def _other_roots() -> list[tuple[str, str]]:
    """(registry file, network dir) of every other root using the bridge."""
    try:
        names = os.listdir(_users_dir())
    except FileNotFoundError:
        return []
    out = []
    me = root_id()
    for name in names:
        if name == me or ".tmp." in name:
            continue
        path = os.path.join(_users_dir(), name)
        try:
            with open(path) as f:
                out.append((path, f.read()))
        except OSError:
            continue
    return out


def _held(path: str) -> bool:
    """Whether someone holds the lock file `path` (created by nobody here)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _foreign_leases() -> dict[str, Any]:
    """The leases of the other roots on the bridge (address -> lease)."""
    out: dict[str, Any] = {}
    for _, ndir in _other_roots():
        leases = _read("leases.json", ndir).get("leases", {})
        if isinstance(leases, dict):
            out.update(leases)
    return out


def _others_attached() -> bool:
    """Whether another root has a live container on the bridge; the
    registrations of roots with none are dropped."""
    attached = False
    for path, ndir in _other_roots():
        leases = _read("leases.json", ndir).get("leases", {})
        if isinstance(leases, dict) and any(
                isinstance(lease, dict) and _held(str(lease.get("owner", "")))
                for lease in leases.values()):
            attached = True
            continue
        try:
            os.unlink(path)  # no live container: its root re-registers on attach
        except FileNotFoundError:
            pass
    return attached


def _leave_host() -> None:
    """This root has no lease left: remove the bridge and the table unless
    another root still has containers on them (call under the root's lock)."""
    with _host_locked():
        try:
            os.unlink(os.path.join(_users_dir(), root_id()))
        except FileNotFoundError:
            pass
        if not _others_attached():
            _teardown_host()
            return
    try:
        os.unlink(os.path.join(network_dir(), "config.json"))  # re-read on next attach
    except FileNotFoundError:
        pass


# ------------------------------------------------------------------ subnet

def _host_routes() -> list[ipaddress.IPv4Network]:
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[0] == BRIDGE:
                    continue
                dest = ipaddress.IPv4Address(socket.ntohl(int(p[1], 16)))
                mask = ipaddress.IPv4Address(socket.ntohl(int(p[7], 16)))
                if int(mask) == 0:
                    continue  # the default route collides with nothing
                out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except OSError:
        pass
    return out


def choose_subnet(wanted: str | None) -> ipaddress.IPv4Network:
    """`wanted` if it collides with no host route (else a clear error), or the
    first default that collides with none."""
    routes = _host_routes()
    if wanted:
        try:
            net = ipaddress.IPv4Network(wanted, strict=True)
        except ValueError as e:
            raise ConfigError(f"invalid subnet {wanted!r}: {e}") from None
        if net.prefixlen > 28:
            raise ConfigError(f"invalid subnet {wanted!r}: smaller than a /28")
        clash = [r for r in routes if r.overlaps(net)]
        if clash:
            raise ConfigError(f"subnet {wanted} overlaps the host's route to {clash[0]}")
        return net
    for cand in DEFAULT_SUBNETS:
        net = ipaddress.IPv4Network(cand)
        if not any(r.overlaps(net) for r in routes):
            return net
    raise ConfigError("every default subnet overlaps a host route; set NSPRIM_SUBNET")


# ------------------------------------------------------------------- host

def _sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(value)


def _ruleset(net: ipaddress.IPv4Network) -> str:
    return rules.ruleset(TABLE, BRIDGE, str(net), isolate=False) + rules.guard(TABLE)


def _ensure_rules(net: ipaddress.IPv4Network) -> None:
    """The tables, or (a table another root or an older nsprim made) at least
    the loopback guard in it and the anti-spoofing table."""
    # whole lines: "table ip nsprim-<id>" (another network's) is not ours
    if f"table ip {TABLE}" not in nft().run("list tables ip").splitlines():
        nft().run(_ruleset(net))
        return
    nft().run(f"add chain ip {TABLE} input {{ {rules.INPUT_HOOK} }}\n"
              f"flush chain ip {TABLE} input\n"
              f"add rule ip {TABLE} input {rules.loopback_guard(BRIDGE)}\n"
              + rules.guard(TABLE))


def _ensure_host(rt: Rtnl) -> ipaddress.IPv4Network:
    """The bridge, its address, forwarding and the nft table (under the lock)."""
    cfg = _read("config.json")
    net = ipaddress.IPv4Network(cfg["subnet"]) if "subnet" in cfg else None
    try:
        socket.if_nametoindex(BRIDGE)
        have = True
    except OSError:
        have = False
    if have and net is None:
        net = _bridge_subnet()  # made under another state root: adopt it
        if net is not None:
            _ensure_rules(net)
            _sysctl(f"net/ipv4/conf/{BRIDGE}/route_localnet", "1")
            _write("config.json", {"subnet": str(net)})
    if have and net is not None:
        return net  # set up by an earlier container (and removed with the last)
    if not have:
        if net is None or _read("leases.json").get("leases") == {}:
            net = choose_subnet(os.environ.get("NSPRIM_SUBNET"))
        rt.add_bridge(BRIDGE)
        idx = socket.if_nametoindex(BRIDGE)
        rt.add_addr(idx, str(net.network_address + 1), net.prefixlen)
        rt.set_link(idx, up=True)
        _write("config.json", {"subnet": str(net)})
    assert net is not None
    _ensure_rules(net)  # the loopback guard before route_localnet
    _sysctl("net/ipv4/ip_forward", "1")
    _sysctl(f"net/ipv4/conf/{BRIDGE}/route_localnet", "1")
    return net


def _bridge_subnet() -> ipaddress.IPv4Network | None:
    """The subnet of the existing bridge, from its route."""
    for line in open("/proc/net/route").read().splitlines()[1:]:
        p = line.split()
        if p[0] == BRIDGE and int(p[7], 16) != 0:
            dest = ipaddress.IPv4Address(socket.ntohl(int(p[1], 16)))
            mask = ipaddress.IPv4Address(socket.ntohl(int(p[7], 16)))
            return ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
    return None


def _teardown_host() -> None:
    try:
        nft().run(rules.drop(TABLE, ("ip", "bridge")))
    except OSError:
        pass
    # deleted here, waiting for the kernel (not buried as a user network's
    # bridge is, nsprim.network.graveyard): with a reaper the default
    # bridge's published-port tests failed intermittently after test_lifecycle
    # (a port still taken after its container ended; not understood yet)
    try:
        with Rtnl() as rt:
            rt.del_link(BRIDGE)
    except OSError:
        pass
    try:
        os.unlink(os.path.join(network_dir(), "config.json"))
    except FileNotFoundError:
        pass


# ------------------------------------------------------------------ ports

def _elements(ip: str, ports: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in ports:
        if is_ipv6(p["host_ip"]):
            continue  # served by the proxy (nsprim.network.proxy), not NAT
        if p["host_ip"]:
            key = f"{p['proto']}_ip"
            out.setdefault(key, []).append(f"{p['host_ip']} . {p['host_port']} : "
                                           f"{ip} . {p['container_port']}")
        else:
            key = f"{p['proto']}_any"
            out.setdefault(key, []).append(f"{p['host_port']} : {ip} . {p['container_port']}")
    return out


def _nft_elements(verb: str, ip: str, ports: Iterable[dict[str, Any]], prefix: str = "") -> None:
    cmds = prefix + "".join(f"{verb} element ip {TABLE} {m} {{ {', '.join(els)} }}\n"
                            for m, els in _elements(ip, ports).items())
    if prefix:
        rules.run_endpoint(nft(), TABLE, cmds)
    elif cmds:
        nft().run(cmds)


class PortInUse(OSError):
    """A published port's host address is taken (by a host process or another
    container); reads as docker's one line, e.g. ``Bind for 0.0.0.0:80 failed:
    port is already allocated``."""

    def __str__(self) -> str:
        return str(self.strerror)


def _bind_error(proto: str, ip: str, port: int, err: int = errno.EADDRINUSE,
                why: str = "") -> PortInUse:
    where = join_host_port(ip, port) + ("/udp" if proto == "udp" else "")
    return PortInUse(err, f"Bind for {where} failed: {why or os.strerror(err).lower()}")


def _hold(proto: str, ip: str, port: int) -> socket.socket:
    """A socket bound on the host's `ip`:`port` (any address when `ip` is
    empty), as docker-proxy holds a published port: the bind fails if anything
    is bound there, and while it is open nothing else can bind there.  DNAT
    rewrites the destination before the socket lookup, so traffic to the port
    still reaches the container.  TCP: SO_REUSEADDR (a host connection's
    TIME_WAIT does not block the port) and listening (with SO_REUSEADDR only a
    listening socket keeps others from binding); it never accepts.  UDP: no
    SO_REUSEADDR (with it, another SO_REUSEADDR socket could share the port).
    An IPv6 `ip` (``::``, ``::1``): IPV6_V6ONLY, and the socket is the
    proxy's (nsprim.network.proxy): it listens for real, non-blocking."""
    v6 = is_ipv6(ip)
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                      socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip or "0.0.0.0", port))
        if v6:
            s.setblocking(False)
            if proto == "tcp":
                s.listen(128)
        elif proto == "tcp":
            s.listen(0)
        else:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # nothing lands here
    except BaseException:
        s.close()
        raise
    return s


def _host_ips(spec: PortSpec) -> list[tuple[str, bool]]:
    """The host addresses a spec publishes on, as lease entries write them
    ("" is every IPv4 address), each with whether it may be left out when
    the host has no IPv6: no address given is 0.0.0.0 and :: (docker's)."""
    if spec.host_ip == "":
        return [("", False), ("::", True)]
    if spec.host_ip == "0.0.0.0":
        return [("", False)]
    return [(spec.host_ip, False)]


def _clashes(used: set[tuple[str, int, str]], proto: str, port: int, ip: str) -> bool:
    """Whether (proto, port, ip) overlaps a published one: the same family and
    port, and either is that family's wildcard or they are the same address."""
    v6 = is_ipv6(ip)
    for pr, hp, uip in used:
        if pr != proto or hp != port or is_ipv6(uip) != v6:
            continue
        if uip in ("", "::") or ip in ("", "::") or uip == ip:
            return True
    return False


def _hold_all(proto: str, ips: list[tuple[str, bool]], port: int
              ) -> list[tuple[str, socket.socket]]:
    """Sockets holding `port` on each address (an optional IPv6 one that the
    host cannot bind is left out); closed again if one fails."""
    out: list[tuple[str, socket.socket]] = []
    try:
        for ip, optional in ips:
            try:
                out.append((ip, _hold(proto, ip, port)))
            except OSError as e:
                if optional and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    continue  # no IPv6 on this host
                raise _bind_error(proto, ip, port, e.errno or 0) from None
    except BaseException:
        for _, sk in out:
            sk.close()
        raise
    return out


def _assign_ports(specs: list[PortSpec], leases: dict[str, Any],
                  holders: list[socket.socket],
                  proxied: list[tuple[socket.socket, dict[str, Any]]] | None = None
                  ) -> list[dict[str, Any]]:
    """Host ports for `specs`, clear of `leases` and of what the host has
    bound; each one held by a socket appended to `holders` (the caller closes
    them on failure).  A spec without an address is published on 0.0.0.0 and
    on :: (the same port); the IPv6 sockets, with their entries, are
    appended to `proxied` too (the proxy serves them)."""
    used = {(p["proto"], p["host_port"], p["host_ip"]) for lease in leases.values()
            for p in lease.get("ports", [])}
    out: list[dict[str, Any]] = []
    for s in specs:
        ips = _host_ips(s)
        port = s.host_port
        held: list[tuple[str, socket.socket]] = []
        if port == 0:
            for cand in range(_EPHEMERAL[0], _EPHEMERAL[1]):
                if any(_clashes(used, s.proto, cand, ip) for ip, _ in ips):
                    continue
                try:
                    held = _hold_all(s.proto, ips, cand)
                except PortInUse as e:
                    if e.errno == errno.EADDRINUSE:
                        continue
                    raise
                port = cand
                break
            else:
                raise OSError(errno.EADDRINUSE, "no free host port to publish on")
        else:
            for ip, _ in ips:
                if _clashes(used, s.proto, port, ip):
                    raise _bind_error(s.proto, ip, port, why="port is already allocated")
            held = _hold_all(s.proto, ips, port)
        for ip, sock in held:
            holders.append(sock)
            used.add((s.proto, port, ip))
            entry = {"proto": s.proto, "host_ip": ip, "host_port": port,
                     "container_port": s.container_port}
            out.append(entry)
            if is_ipv6(ip) and proxied is not None:
                proxied.append((sock, entry))
    return out


# ----------------------------------------------------------------- attach

class HeldPorts:
    """What the default bridge's and a user network's attachments share: the
    sockets holding the published host ports, the lease's lock, the IPv6
    proxy."""

    _lock: FileLock | None
    _holders: list[socket.socket]
    _proxy: Proxy | None

    def serve_detached(self, pidfd: int) -> None:
        """For a supervisor about to exec its shim: the IPv6 ports are served
        from now on by a process of their own that ends with the container
        (`pidfd`), not by this process's thread."""
        if self._proxy is None:
            return
        from nsprim.network.proxy import serve_in_process

        proxy, self._proxy = self._proxy, None
        proxy.stop()
        serve_in_process(proxy.listeners, pidfd)

    def holder_fds(self) -> list[int]:
        """The fds of the sockets holding the published host ports."""
        return [s.fileno() for s in self._holders]

    def held_fds(self) -> list[int]:
        """What keeps this attachment owned: its lease's lock and the port
        holders.  A process that takes the container over keeps them open."""
        lock = [self._lock.fd] if self._lock is not None and self._lock.fd >= 0 else []
        return lock + self.holder_fds()


@record
class Attachment(HeldPorts):
    """A container's place on the bridge; detach() undoes all of it."""

    id: str
    address: str
    gateway: str
    prefixlen: int
    veth: str
    ports: list[dict[str, Any]] = field(default_factory=list)
    _lock: FileLock | None = None
    # sockets bound on the published host ports, held while the container
    # lives (a detached container's supervisor passes them on: holder_fds())
    _holders: list[socket.socket] = field(default_factory=list)
    # the userland proxy of the IPv6 ports (nsprim.network.proxy)
    _proxy: Proxy | None = None

    def detach(self, *, netns_gone: bool = False) -> None:
        """Remove the ports and the lease.  With `netns_gone` (the container's
        namespace is being destroyed) the kernel removes the veth pair by
        itself, in the background: deleting it here would wait for an RCU grace
        period (tens of milliseconds)."""
        if self._lock is None:
            return
        if self._proxy is not None:
            proxy, self._proxy = self._proxy, None
            proxy.stop()
        with _locked():
            state = _read("leases.json")
            leases = state.get("leases", {})
            lease = leases.pop(self.address, None)
            if lease is not None:
                _release(self.address, lease, delete_veth=not netns_gone)
            _write("leases.json", {"leases": leases, "last": state.get("last")})
            if not leases:
                _leave_host()
        _close(self._holders)
        self._lock.release(unlink=True)
        self._lock = None
        from nsprim import events

        events.network("disconnect", "bridge", container=self.id)


def _close(holders: list[socket.socket]) -> None:
    for s in holders:
        s.close()
    holders.clear()


def _release(address: str, lease: dict[str, Any], *, delete_veth: bool = True) -> None:
    try:
        _nft_elements("delete", address, lease.get("ports", []))
    except OSError:
        pass
    try:  # its own transaction: a missing element fails the whole of one
        nft().run(rules.endpoint("delete", TABLE, str(lease["veth"]), address))
    except (OSError, KeyError):
        pass
    if delete_veth:
        try:
            with Rtnl() as rt:
                rt.del_link(lease["veth"])
        except OSError:
            pass  # gone with its network namespace


def attach(container_id: str, netns: Namespace, *, inner: Rtnl | None = None,
           publish: Iterable[PortSpec] = (), bandwidth: int | None = None) -> Attachment:
    """Put the network namespace `netns` on the bridge: veth, address,
    default route, lo up, published ports.  Undone by Attachment.detach().
    `inner`, a socket already in `netns` (see Rtnl.new_netns), is used and
    closed."""
    os.makedirs(os.path.join(network_dir(), "owners"), mode=0o700, exist_ok=True)
    owner = FileLock(os.path.join(network_dir(), "owners", container_id + ".lock"))
    veth = "nsp" + container_id[:12]
    holders: list[socket.socket] = []
    proxied: list[tuple[socket.socket, dict[str, Any]]] = []
    try:
        with _locked(), Rtnl() as rt:
            with _host_locked():
                # once the lease is written (its owner lock held), no other
                # root removes the bridge or the table under this container
                state = _read("leases.json")
                leases = state.get("leases", {})
                taken = {**_foreign_leases(), **leases}
                # ports first: a port that is taken leaves no bridge behind
                ports = _assign_ports(list(publish), taken, holders, proxied)
                net = _ensure_host(rt)
                _register()
                gateway = net.network_address + 1
                address = _next_free(net, taken, state.get("last"))
                leases[address] = {"id": container_id, "veth": veth, "ports": ports,
                                   "owner": owner.path}
                _write("leases.json", {"leases": leases, "last": address})
            try:
                # the veth's own address is its only source (anti-spoofing),
                # from before it exists; the published ports in the same call
                _nft_elements("add", address, ports,
                              prefix=rules.endpoint("add", TABLE, veth, address))
                # eth0 gets index 2 in the new namespace (lo is 1): no lookups
                rt.add_veth(veth, "eth0", netns.fd, master=socket.if_nametoindex(BRIDGE),
                            peer_index=_ETH0, peer_mac=mac_for_ip(address))
                with inner or Rtnl(netns) as rin:
                    rin.add_addr(_ETH0, address, net.prefixlen)
                    rin.set_link(_ETH0, up=True)
                    rin.set_link(_LO, up=True)
                    rin.add_default_route(str(gateway))
                if bandwidth:
                    _shape(veth, netns, bandwidth)
            except BaseException:
                lease = leases.pop(address)
                _release(address, lease)
                _write("leases.json", {"leases": leases, "last": address})
                if not leases:
                    _leave_host()
                raise
    except BaseException:
        _close(holders)
        owner.release(unlink=True)
        raise
    from nsprim import events

    events.network("connect", "bridge", container=container_id)
    proxy = None
    if proxied:
        from nsprim.network.proxy import Listener, Proxy

        proxy = Proxy([Listener(sk, e["proto"], (address, e["container_port"]))
                       for sk, e in proxied]).start()
    return Attachment(container_id, address, str(gateway), net.prefixlen, veth, ports, owner,
                      holders, proxy)


def _next_free(net: ipaddress.IPv4Network, leases: dict[str, Any], last: str | None) -> str:
    """The next free address after the last one handed out (round robin), so
    that an address is not reused while the kernel may still be tearing down
    the namespace that had it."""
    first = int(net.network_address) + 2          # .1 is the gateway
    end = int(net.broadcast_address)              # exclusive
    size = end - first
    if size <= 0:
        raise OSError(errno.ENOSPC, f"no free address left in {net}")
    start = first
    if last is not None:
        try:
            n = int(ipaddress.IPv4Address(last)) + 1
            if first <= n < end:
                start = n
        except ValueError:
            pass
    for i in range(size):
        cand = str(ipaddress.IPv4Address(first + (start - first + i) % size))
        if cand not in leases:
            return cand
    raise OSError(errno.ENOSPC, f"no free address left in {net}")


def _shape(veth: str, netns: Namespace, bps: int) -> None:
    """Token-bucket both ends of the veth: the host side shapes what enters the
    container, eth0 (in its namespace, out of its reach without NET_ADMIN)
    what leaves it."""
    from pyroute2 import IPRoute

    burst = max(bps // 8 // 100, 16 * 1024)  # 10 ms of traffic, at least 16 KiB
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=veth)[0]
        ipr.tc("add", "tbf", index=idx, handle="1:", rate=f"{bps}bit", burst=burst,
               latency="50ms")
    sock = netns.run_in(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))
    with IPRoute(fileno=sock.detach()) as ip2:
        i2 = ip2.link_lookup(ifname="eth0")[0]
        ip2.tc("add", "tbf", index=i2, handle="1:", rate=f"{bps}bit", burst=burst,
               latency="50ms")


def release_container(container_id: str) -> bool:
    """Release the lease of `container_id` (its supervisor cleaning up after
    it; its namespace is gone, and the veth with it)."""
    if not os.path.isdir(network_dir()):
        return False
    with _locked():
        state = _read("leases.json")
        leases = state.get("leases", {})
        hit = [a for a, lease in leases.items() if lease.get("id") == container_id]
        for address in hit:
            lease = leases.pop(address)
            _release(address, lease, delete_veth=False)
            try:
                os.unlink(lease.get("owner", ""))
            except OSError:
                pass
        if hit:
            _write("leases.json", {"leases": leases, "last": state.get("last")})
            if not leases:
                _leave_host()
    if hit:
        from nsprim import events

        events.network("disconnect", "bridge", container=container_id)
    return bool(hit)


def collect() -> list[str]:
    """Release the leases of containers whose owner is gone."""
    if not os.path.isdir(network_dir()):
        return []
    out: list[str] = []
    with _locked():
        state = _read("leases.json")
        leases = state.get("leases", {})
        if not leases:
            return out
        for address, lease in list(leases.items()):
            lock = FileLock.try_acquire(lease.get("owner", "/nonexistent/x"))
            if lock is None:
                continue
            _release(address, lease)
            del leases[address]
            out.append(lease.get("id", address))
            lock.release(unlink=True)
        _write("leases.json", {"leases": leases, "last": state.get("last")})
        if not leases:
            _leave_host()
    return out


def write_etc_files(directory: str, hostname: str, address: str | None, *,
                    domainname: str | None = None, options: EtcOptions | None = None,
                    gateway: str | None = None, prefix: str = "",
                    nameservers: list[str] | None = None) -> dict[str, str]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf for a container on the
    bridge, as docker writes them (nsprim.network.etc), each as `directory`/
    `prefix` + its basename; returns target -> file.  `nameservers` replace
    the host's (a user-defined network's DNS: 127.0.0.11)."""
    from nsprim.network.etc import EtcOptions, etc_files, write_files

    return write_files(directory, etc_files(hostname, address, domainname=domainname,
                                            options=options or EtcOptions(),
                                            gateway=gateway, nameservers=nameservers),
                       prefix)


def host_gateway() -> str:
    """The bridge's gateway address (docker's ``host-gateway``): the running
    bridge's, else the one the next container would get."""
    net = _bridge_subnet() if os.path.exists(f"/sys/class/net/{BRIDGE}") else None
    if net is None:
        cfg = _read("config.json")
        try:
            net = ipaddress.IPv4Network(cfg["subnet"]) if "subnet" in cfg else \
                choose_subnet(os.environ.get("NSPRIM_SUBNET"))
        except (ValueError, ConfigError):
            net = ipaddress.IPv4Network(DEFAULT_SUBNETS[0])
    return str(net.network_address + 1)
