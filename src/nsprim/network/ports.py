"""Published-port specs (docker's ``-p``), parsed and validated: pure logic."""

from __future__ import annotations

import re

from nsprim._record import record
from nsprim.errors import ConfigError

__all__ = ["PortSpec", "parse_publish", "MAX_RANGE", "is_ipv6", "host_ip_text",
           "join_host_port"]

MAX_RANGE = 1024  # ports one spec may publish
# ASCII digits only: str.isdigit(), int() and \d also take other scripts' digits
_PORTS = re.compile(r"[0-9]{1,5}(?:-[0-9]{1,5})?", re.ASCII)
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}", re.ASCII)


def is_ipv6(ip: str) -> bool:
    """Whether a published port's host address is IPv6 (``::``, ``::1``...)."""
    return ":" in ip


def host_ip_text(ip: str) -> str:
    """A published port's host address as docker shows it ("" is 0.0.0.0)."""
    return ip or "0.0.0.0"


def join_host_port(ip: str, port: object) -> str:
    """``0.0.0.0:8080``, ``[::]:8080`` (Go's net.JoinHostPort, as docker)."""
    ip = host_ip_text(ip)
    return f"[{ip}]:{port}" if is_ipv6(ip) else f"{ip}:{port}"


@record(frozen=True)
class PortSpec:
    """Host ``host_ip:host_port`` (0: any free port) -> container ``port``.

    ``host_ip`` "" (none given): every address, IPv4 and IPv6, as docker
    publishes; "0.0.0.0": every IPv4 address only; "::": every IPv6 address
    only; else that address."""

    container_port: int
    host_port: int = 0
    proto: str = "tcp"
    host_ip: str = ""

    def __str__(self) -> str:
        # the -p spec it parses from: "80/tcp", "8080:80/tcp", "[::1]::80/tcp"
        ip = (f"[{self.host_ip}]:" if is_ipv6(self.host_ip) else f"{self.host_ip}:") \
            if self.host_ip else ""
        host = f"{self.host_port}:" if self.host_port else (":" if ip else "")
        return f"{ip}{host}{self.container_port}/{self.proto}"


def _range(text: str, spec: str, what: str) -> tuple[int, int]:
    lo_s, _, hi_s = text.partition("-")
    lo, hi = int(lo_s), int(hi_s or lo_s)
    for p in (lo, hi):
        if not 1 <= p <= 65535:
            raise ConfigError(f"invalid port specification {spec!r}: {what} port {p} is not "
                              "between 1 and 65535")
    if hi < lo:
        raise ConfigError(f"invalid port specification {spec!r}: {what} range runs backwards")
    if hi - lo + 1 > MAX_RANGE:
        raise ConfigError(f"invalid port specification {spec!r}: more than {MAX_RANGE} ports")
    return lo, hi


def _address(ip: str, spec: str, version: int) -> str:
    """The canonical text of a host address (0.0.0.0 and :: kept: they say
    which family)."""
    import ipaddress

    try:
        addr = ipaddress.IPv4Address(ip) if version == 4 else ipaddress.IPv6Address(ip)
    except ValueError:
        raise ConfigError(f"invalid port specification {spec!r}: bad address {ip!r}") \
            from None
    if version == 6 and addr.ipv4_mapped is not None:  # type: ignore[union-attr]
        raise ConfigError(f"invalid port specification {spec!r}: bad address {ip!r} "
                          "(an IPv4-mapped address: give the IPv4 address)")
    return str(addr)


def parse_publish(spec: str) -> list[PortSpec]:
    """``[IP:][HOSTPORT[-END]:]CTRPORT[-END][/tcp|/udp]`` -> one PortSpec per
    port; an IPv6 address in brackets: ``[::1]:8080:80``, ``[2001:db8::1]::80``."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"invalid port specification {spec!r}")
    body, slash, proto = spec.partition("/")
    if not slash:
        proto = "tcp"
    if proto not in ("tcp", "udp"):
        raise ConfigError(f"invalid port specification {spec!r}: protocol {proto!r} is not "
                          "tcp or udp")
    if body.startswith("["):  # [IPv6]:HOSTPORT:PORT, [IPv6]::PORT
        ip, bracket, rest = body[1:].partition("]")
        parts = rest[1:].split(":") if rest.startswith(":") else []
        if not bracket or len(parts) != 2 or not _IPV6.fullmatch(ip) or ":" not in ip:
            raise ConfigError(f"invalid port specification {spec!r}: expected "
                              "[IPv6]:[HOSTPORT]:CONTAINERPORT[/tcp|/udp]")
        host, ctr = parts
        ip = _address(ip, spec, 6)
    else:
        parts = body.split(":")
        if len(parts) > 3:
            raise ConfigError(f"invalid port specification {spec!r}: expected "
                              "[IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp] (an IPv6 address "
                              "in brackets)")
        ip, host, ctr = ([""] * (3 - len(parts)) + parts)
        if ip:
            if not _IPV4.fullmatch(ip):
                raise ConfigError(f"invalid port specification {spec!r}: bad address {ip!r} "
                                  "(an IPv4 address such as 127.0.0.1, or IPv6 in brackets)")
            ip = _address(ip, spec, 4)
    if not _PORTS.fullmatch(ctr) or (host and not _PORTS.fullmatch(host)):
        raise ConfigError(f"invalid port specification {spec!r}: ports are numbers or "
                          "ranges like 8000-8010")
    clo, chi = _range(ctr, spec, "container")
    if not host:
        return [PortSpec(p, 0, proto, ip) for p in range(clo, chi + 1)]
    hlo, hhi = _range(host, spec, "host")
    if hhi - hlo != chi - clo:
        if clo == chi:  # docker: any free port of the host range; take the first
            return [PortSpec(clo, hlo, proto, ip)]
        raise ConfigError(f"invalid port specification {spec!r}: host and container ranges "
                          "differ in size")
    return [PortSpec(c, h, proto, ip) for c, h in zip(range(clo, chi + 1),
                                                      range(hlo, hhi + 1), strict=True)]
