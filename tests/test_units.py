"""Pure logic with hypothesis: sizes, cpusets, port specs, rates, signals."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import ConfigError
from nsprim.lifecycle import parse_signal
from nsprim.network import parse_bandwidth
from nsprim.network.ports import MAX_RANGE, parse_publish
from nsprim.units import format_cpuset, parse_cpuset, parse_size

UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS)),
       st.booleans(), st.booleans())
def test_size_units(n: int, unit: str, upper: bool, suffix_b: bool) -> None:
    text = f"{n}{unit.upper() if upper else unit}"
    if unit not in ("", "b") and suffix_b:
        text += "b"
    assert parse_size(text) == n * UNITS[unit]


@given(st.text(alphabet="xyz!@ -", min_size=1, max_size=6))
def test_bad_sizes_name_the_value(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_size(text)
    assert repr(text) in str(e.value)


@given(st.frozensets(st.integers(min_value=0, max_value=200), min_size=1, max_size=40))
def test_cpuset_roundtrip(cpus: frozenset[int]) -> None:
    text = format_cpuset(cpus)
    assert parse_cpuset(text) == cpus
    assert format_cpuset(parse_cpuset(text)) == text


@given(st.integers(min_value=1, max_value=65535 - 20), st.integers(min_value=0, max_value=20),
       st.integers(min_value=1, max_value=65535 - 20), st.sampled_from(["tcp", "udp"]),
       st.sampled_from(["", "127.0.0.1", "0.0.0.0"]))
def test_publish_ranges(ctr: int, extra: int, host: int, proto: str, ip: str) -> None:
    spec = f"{host}-{host + extra}:{ctr}-{ctr + extra}/{proto}"
    if ip:
        spec = f"{ip}:{spec}"
    ports = parse_publish(spec)
    assert len(ports) == extra + 1 <= MAX_RANGE
    assert [p.container_port for p in ports] == list(range(ctr, ctr + extra + 1))
    assert [p.host_port for p in ports] == list(range(host, host + extra + 1))
    assert {p.proto for p in ports} == {proto}
    assert {p.host_ip for p in ports} == {"" if ip in ("", "0.0.0.0") else ip}


@given(st.integers(min_value=1, max_value=65535))
def test_publish_container_only(port: int) -> None:
    (p,) = parse_publish(str(port))
    assert (p.container_port, p.host_port, p.proto) == (port, 0, "tcp")


@given(st.integers(min_value=8, max_value=10**6), st.sampled_from(["kbit", "mbit", "gbit"]))
def test_bandwidth_units(n: int, unit: str) -> None:
    mult = {"kbit": 10**3, "mbit": 10**6, "gbit": 10**9}[unit]
    assert parse_bandwidth(f"{n}{unit}") == n * mult


@pytest.mark.parametrize("text,want", [("TERM", 15), ("SIGKILL", 9), ("9", 9), ("hup", 1)])
def test_signals(text: str, want: int) -> None:
    assert parse_signal(text) == want


@pytest.mark.parametrize("text", ["NOPE", "0", "999", ""])
def test_bad_signals(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_signal(text)


def test_cli_version_and_ps_skip_the_heavy_imports() -> None:
    code = ("import sys; from nsprim.cli import main; main(['--version']); "
            "print(sorted(m for m in sys.modules if m.startswith(('nsprim._nsprim_c', "
            "'pyroute2', 'urllib.request', 'nsprim.container'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]"
