"""The one nft rule generator (nsprim.network.rules) of the default bridge
and the user-defined networks: properties of the text, and the kernel's
check (``nft -c``) of every shape it makes."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.network import rules

from .conftest import need

names = st.text(alphabet="abcdef0123456789", min_size=1, max_size=9)
subnets4 = st.builds(lambda a, b, p: str(ipaddress.IPv4Network((f"10.{a}.{b}.0", p),
                                                               strict=False)),
                     st.integers(0, 255), st.integers(0, 255), st.integers(8, 28))
subnets6 = st.none() | st.builds(lambda n: f"fd00:{n:x}::/64", st.integers(0, 0xffff))


def _chain(text: str, table_head: str, chain: str) -> list[str]:
    body = text.split(table_head, 1)[1]
    part = body.split(f"chain {chain} {{", 1)[1].split("}", 1)[0]
    return [line.strip() for line in part.splitlines() if line.strip()]


@settings(max_examples=200, deadline=None)
@given(names, subnets4, subnets6, st.booleans(), st.booleans())
def test_ruleset_shape(tag: str, subnet: str, subnet6: str | None, isolate: bool,
                       internal: bool) -> None:
    table, bridge = "nsprim-" + tag, "nspbr-" + tag
    text = rules.ruleset(table, bridge, subnet, isolate=isolate, internal=internal,
                         subnet6=subnet6)
    head = f"table ip {table} {{"
    assert text.count(head) == 1
    assert (f"table ip6 {table} {{" in text) == bool(subnet6)
    post = _chain(text, head, "postrouting")
    masq = f'ip saddr {subnet} oifname != "{bridge}" masquerade'
    assert (masq in post) == (not internal)
    # the loopback guard is always there (CVE-2020-8558)
    assert _chain(text, head, "input")[1] == rules.loopback_guard(bridge)
    fwd = _chain(text, head, "forward")[1:]
    if isolate:
        # nothing routed in reaches the bridge but replies (and DNAT)
        assert f'oifname "{bridge}" drop' in fwd
        assert fwd.index(f'oifname "{bridge}" ct state established,related accept') < \
            fwd.index(f'oifname "{bridge}" drop')
        assert (f'iifname "{bridge}" drop' in fwd) == internal
        assert (f'oifname "{bridge}" ct status dnat accept' in fwd) == (not internal)
    else:
        assert not any(r.endswith("drop") for r in fwd)
    # no empty rule lines, balanced braces
    assert text.count("{") == text.count("}")


@given(names, st.ip_addresses(v=4).map(str), st.none() | st.ip_addresses(v=6).map(str))
def test_endpoint_add_and_delete_mirror(tag: str, addr: str, addr6: str | None) -> None:
    add = rules.endpoint("add", "nsprim-" + tag, "nsp" + tag, addr, addr6)
    delete = rules.endpoint("delete", "nsprim-" + tag, "nsp" + tag, addr, addr6)
    assert add.replace("add element", "delete element") == delete
    assert f'"nsp{tag}" . {addr}' in add
    assert (addr6 is not None) == ("allowed6" in add)


def test_guard_rules_scope_to_own_ports() -> None:
    g = rules.guard("nsprim")
    # the first rule lets every other bridge's port through untouched
    assert g.index("iifname != @ports accept") < g.index("@allowed4 drop")
    assert "flush chain bridge nsprim prerouting" in g
    assert "fe80::/10" in g  # neighbour discovery passes


@pytest.mark.parametrize("isolate,internal,v6", [(False, False, False), (True, False, False),
                                                 (True, True, False), (True, False, True),
                                                 (True, True, True)])
def test_the_kernel_takes_every_shape(isolate: bool, internal: bool, v6: bool) -> None:
    need(os.geteuid() == 0, "needs root")
    need(subprocess.run(["nft", "--version"], capture_output=True).returncode == 0,
         "needs nftables (apt-get install nftables)")
    text = rules.ruleset("nsprim-chk", "nspbr-chk", "10.127.0.0/16", isolate=isolate,
                         internal=internal, subnet6="fd00:1::/64" if v6 else None)
    text += rules.guard("nsprim-chk")
    text += rules.endpoint("add", "nsprim-chk", "nspchk0", "10.127.0.2",
                           "fd00:1::2" if v6 else None)
    p = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr  # checked, nothing applied
    assert "nsprim-chk" not in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                              text=True).stdout
