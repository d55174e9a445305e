"""Container networking: none, host, bridge (veth + NAT + ports), container:."""

from __future__ import annotations

import re
from collections.abc import Iterable

from nsprim._record import record
from nsprim.errors import ConfigError
from nsprim.network.ports import PortSpec, parse_publish

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = ["NetworkMode", "PortSpec", "parse_publish", "parse_bandwidth", "mac_for_ip",
           "create", "Network"]


def __getattr__(name: str) -> Any:
    # nsprim.network.create(...), nsprim.network.Network: the user-defined
    # networks (nsprim.network.user), imported when first used
    if name in ("create", "Network", "get", "networks", "remove", "prune", "connect",
                "disconnect"):
        from nsprim.network import user

        return getattr(user, name)
    raise AttributeError(name)


def mac_for_ip(ip: str) -> str:
    """A bridge endpoint's MAC address as docker makes it: 02:42 and the four
    bytes of its IPv4 address (locally administered, unique on the bridge)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?$",
                   re.IGNORECASE)
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
               "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9}


def parse_bandwidth(value: str | int) -> int:
    """Bits per second from tc's rate syntax: ``100mbit``, ``8mbit``, ``512kbit``,
    ``10mbps`` (bytes), or a number of bits."""
    if isinstance(value, int) and not isinstance(value, bool):
        bits = value
    else:
        m = _RATE.match(str(value).strip())
        if not m:
            raise ConfigError(f"invalid bandwidth {value!r}: expected a rate such as 100mbit")
        bits = int(float(m.group(1)) * _RATE_UNITS[(m.group(2) or "bit").lower()])
    if bits < 8000:
        raise ConfigError(f"invalid bandwidth {value!r}: at least 8kbit")
    return bits


@record(frozen=True)
class NetworkMode:
    """How a container is networked (docker's ``--network``).

    ``NetworkMode.NONE``: a new network namespace with only ``lo`` (up).
    ``NetworkMode.HOST``: the host's namespace.
    ``NetworkMode.bridge(publish=["8080:80"], bandwidth="100mbit")``: on the
    host bridge nsprim0 with an address, NAT, and published ports.
    ``NetworkMode.container(other)``: the network namespace of another
    container (a Container, a pid, or a Namespace).
    """

    kind: str
    publish: tuple[PortSpec, ...] = ()
    publish_all: bool = False
    bandwidth: int | None = None
    target: Any = None
    aliases: tuple[str, ...] = ()
    ip: str | None = None
    ip6: str | None = None
    #: more user-defined networks, attached as eth1, eth2...: (name,
    #: aliases, ip, ip6) each (``network connect`` to a created container)
    extra: tuple[tuple[str, tuple[str, ...], str | None, str | None], ...] = ()

    NONE: ClassVar[NetworkMode]
    HOST: ClassVar[NetworkMode]

    @classmethod
    def bridge(cls, publish: Iterable[str | PortSpec] = (), *, publish_all: bool = False,
               bandwidth: str | int | None = None) -> NetworkMode:
        specs: list[PortSpec] = []
        for p in publish:
            specs.extend([p] if isinstance(p, PortSpec) else parse_publish(p))
        bw = None if bandwidth is None else parse_bandwidth(bandwidth)
        return cls("bridge", tuple(specs), publish_all, bw)

    @classmethod
    def network(cls, name: str, *, aliases: Iterable[str] = (), ip: str | None = None,
                ip6: str | None = None, publish: Iterable[str | PortSpec] = (),
                publish_all: bool = False) -> NetworkMode:
        """A user-defined network (``nsprim.network.create``) by name or id,
        with DNS by name: the container's name (see Container's
        ``dns_name``), `aliases` and short id resolve on it."""
        specs: list[PortSpec] = []
        for p in publish:
            specs.extend([p] if isinstance(p, PortSpec) else parse_publish(p))
        return cls("network", tuple(specs), publish_all, None, name, tuple(aliases), ip, ip6)

    @classmethod
    def container(cls, target: Any) -> NetworkMode:
        return cls("container", target=target)

    @classmethod
    def parse(cls, text: str, *, publish: Iterable[str] = (), publish_all: bool = False,
              bandwidth: str | None = None) -> NetworkMode:
        """docker's ``--network`` value: none, host, bridge, container:NAME."""
        if text in ("none", "host"):
            if publish or publish_all:
                raise ConfigError(f"published ports need the bridge network, not {text!r}")
            if bandwidth is not None:
                raise ConfigError(f"--network-bandwidth needs the bridge network, not {text!r}")
            return cls.NONE if text == "none" else cls.HOST
        if text in ("bridge", "default"):
            return cls.bridge(publish, publish_all=publish_all, bandwidth=bandwidth)
        if text.startswith("container:") and len(text) > len("container:"):
            if publish or publish_all or bandwidth is not None:
                raise ConfigError("a container: network takes no ports or bandwidth of its own")
            return cls.container(text[len("container:"):])
        if bandwidth is not None:
            raise ConfigError("--network-bandwidth needs the bridge network")
        from nsprim.network.user import check_name

        check_name(text)
        return cls.network(text, publish=publish, publish_all=publish_all)


NetworkMode.NONE = NetworkMode("none")
NetworkMode.HOST = NetworkMode("host")
