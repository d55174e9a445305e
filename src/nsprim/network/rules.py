"""The nftables rules of a bridge: one generator for the default bridge
(:mod:`nsprim.network.bridge`) and the user-defined networks
(:mod:`nsprim.network.user`).  Pure text, tested without a kernel.

Each bridge has, named after it (``nsprim`` for the default bridge,
``nsprim-<id12>`` for a network):

- ``table ip NAME``: published ports (DNAT maps), masquerade out, the
  forward policy (open on the default bridge as docker's; isolated on a
  user-defined network), and the loopback guard of ``input`` (a container may
  reach 127.0.0.0/8 only through a published port's DNAT: CVE-2020-8558);
- ``table ip6 NAME`` on an IPv6 network: NAT66 and the same isolation;
- ``table bridge NAME``: **anti-spoofing**.  Every frame that a container's
  veth brings into a bridge (the ``prerouting`` hook of the bridge family,
  before switching, routing or the host's input) must carry its own address
  as the source: the pair (port, address) is in ``allowed4`` / ``allowed6``,
  added when the container is attached and before its veth exists.  IPv6
  link-local and unspecified sources (neighbour discovery) pass.  A port that
  is not in ``ports`` (another bridge's) is left alone.  ``meta ibrname``
  would be shorter, but this kernel has no ``nft_meta_bridge``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nsprim.network.nft import Nft

__all__ = ["ruleset", "guard", "drop", "endpoint", "run_endpoint"]

# route_localnet lets the bridge deliver to 127.0.0.0/8: only what a published
# port's DNAT made (a reply to a host client of a 127.0.0.1 port) may arrive
# there from a container; a raw frame a container sends to a host service on
# loopback is dropped (CVE-2020-8558).  `& dnat == 0`: the bit, not the value.
INPUT_HOOK = "type filter hook input priority filter; policy accept;"


def loopback_guard(bridge: str) -> str:
    return f'iifname "{bridge}" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop'


def _forward(bridge: str, *, isolate: bool, internal: bool, dnat: bool) -> list[str]:
    if not isolate:  # the default bridge: docker's, open
        return [f'iifname "{bridge}" accept', f'oifname "{bridge}" accept']
    rules = [f'iifname "{bridge}" oifname "{bridge}" accept',
             f'oifname "{bridge}" ct state established,related accept']
    if dnat:
        rules.append(f'oifname "{bridge}" ct status dnat accept')
    rules += [f'oifname "{bridge}" drop', f'iifname "{bridge}" oifname "nsp*" drop']
    if internal:
        rules.append(f'iifname "{bridge}" drop')
    return rules


def _chain(name: str, hook: str, rules: list[str]) -> str:
    body = "".join(f"    {r}\n" for r in rules if r)
    return f"  chain {name} {{\n    {hook}\n{body}  }}\n"


def ruleset(table: str, bridge: str, subnet: str, *, isolate: bool, internal: bool = False,
            subnet6: str | None = None) -> str:
    """The ``ip`` table (and with `subnet6` the ``ip6`` one) of a bridge, as
    one nft script; the bridge-family guard is :func:`guard`."""
    out = [] if internal else [f'ip saddr {subnet} oifname != "{bridge}" masquerade']
    maps = "".join(f"  map {m} {{ type {k} : ipv4_addr . inet_service; }}\n"
                   for m, k in (("tcp_any", "inet_service"), ("udp_any", "inet_service"),
                                ("tcp_ip", "ipv4_addr . inet_service"),
                                ("udp_ip", "ipv4_addr . inet_service")))
    text = (
        f"table ip {table} {{\n{maps}"
        "  chain ports {\n"
        "    meta l4proto tcp dnat ip to ip daddr . tcp dport map @tcp_ip\n"
        "    meta l4proto udp dnat ip to ip daddr . udp dport map @udp_ip\n"
        "    meta l4proto tcp dnat ip to tcp dport map @tcp_any\n"
        "    meta l4proto udp dnat ip to udp dport map @udp_any\n"
        "  }\n"
        + _chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;",
                 ["fib daddr type local jump ports"])
        + _chain("output", "type nat hook output priority -100; policy accept;",
                 ["fib daddr type local jump ports"])
        + _chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;",
                 out + [f'ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade'])
        + _chain("forward", "type filter hook forward priority filter; policy accept;",
                 _forward(bridge, isolate=isolate, internal=internal, dnat=not internal))
        + _chain("input", INPUT_HOOK, [loopback_guard(bridge)])
        + "}\n")
    if subnet6:
        out6 = [] if internal else [f'ip6 saddr {subnet6} oifname != "{bridge}" masquerade']
        text += (
            f"table ip6 {table} {{\n"
            + _chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;",
                     out6)
            + _chain("forward", "type filter hook forward priority filter; policy accept;",
                     _forward(bridge, isolate=isolate, internal=internal, dnat=False))
            + "}\n")
    return text


_GUARD_HOOK = "type filter hook prerouting priority filter; policy accept;"
GUARD_RULES = (
    "iifname != @ports accept",
    "ether type ip iifname . ip saddr != @allowed4 drop",
    "ether type ip6 ip6 saddr != { fe80::/10, ::/128 } iifname . ip6 saddr != @allowed6 drop",
)


def guard(table: str) -> str:
    """The anti-spoofing table of a bridge as idempotent commands: made if
    missing, its chain's rules replaced, its sets (the endpoints) kept."""
    t = f"bridge {table}"
    return (f"add table {t}\n"
            f"add set {t} ports {{ type ifname; }}\n"
            f"add set {t} allowed4 {{ type ifname . ipv4_addr; }}\n"
            f"add set {t} allowed6 {{ type ifname . ipv6_addr; }}\n"
            f"add chain {t} prerouting {{ {_GUARD_HOOK} }}\n"
            f"flush chain {t} prerouting\n"
            + "".join(f"add rule {t} prerouting {r}\n" for r in GUARD_RULES))


def endpoint(verb: str, table: str, port: str, address: str,
             address6: str | None = None) -> str:
    """Commands that add (`verb` "add") or delete ("delete") the endpoint
    `port` (the host side of a container's veth) with its own addresses."""
    t = f"bridge {table}"
    text = (f"{verb} element {t} ports {{ \"{port}\" }}\n"
            f"{verb} element {t} allowed4 {{ \"{port}\" . {address} }}\n")
    if address6:
        text += f"{verb} element {t} allowed6 {{ \"{port}\" . {address6} }}\n"
    return text


def drop(table: str, families: tuple[str, ...] = ("ip", "ip6", "bridge")) -> str:
    """Delete the tables `table` of `families` whether they exist or not
    (adding a table that exists is no error: add + delete never fails)."""
    return "".join(f"table {fam} {table} {{}}\ndelete table {fam} {table}\n"
                   for fam in families)


def run_endpoint(nft: Nft, table: str, commands: str) -> None:
    """Run `commands` that add an endpoint to `table`'s guard; if the guard
    is missing (a table made by an older nsprim), make it and try again."""
    try:
        nft.run(commands)
    except OSError:
        nft.run(guard(table))
        nft.run(commands)
