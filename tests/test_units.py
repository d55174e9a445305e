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
from nsprim.units import MAX_SIZE, format_cpuset, parse_cpus, parse_cpuset, parse_size

#: a digit of some other script: str.isdigit(), int() and \\d take these
other_digit = st.characters(whitelist_categories=("Nd",)).filter(lambda c: not c.isascii())
# text that looks like the parsers' input, with room for sloppiness
spec_text = st.text(alphabet=st.sampled_from("0123456789:-./ tcpudkmgbiKMG[]\n_+e") |
                    other_digit, max_size=24)

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
    assert {p.host_ip for p in ports} == {ip}  # 0.0.0.0 given: IPv4 only


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


@given(st.one_of(st.text(max_size=30), spec_text))
def test_parse_size_value_or_config_error(text: str) -> None:
    try:
        n = parse_size(text)
    except ConfigError as e:
        assert repr(text) in str(e)
        return
    assert 0 <= n <= MAX_SIZE
    assert all(c.isascii() for c in text if c.isdigit())


@given(st.one_of(st.text(max_size=30), spec_text))
def test_parse_publish_value_or_config_error(text: str) -> None:
    try:
        specs = parse_publish(text)
    except ConfigError as e:
        assert repr(text) in str(e)
        return
    assert text.isascii() and text == text.strip() and not text.endswith("/")
    assert 1 <= len(specs) <= MAX_RANGE
    for p in specs:
        assert 1 <= p.container_port <= 65535 and 0 <= p.host_port <= 65535
        assert p.proto in ("tcp", "udp")


@given(st.one_of(st.text(max_size=30), spec_text))
def test_parse_cpus_and_cpuset_value_or_config_error(text: str) -> None:
    for parse in (lambda t: parse_cpus(t, 4), parse_cpuset):
        try:
            parse(text)
        except ConfigError as e:
            assert repr(text) in str(e)
            continue
        assert all(c.isascii() for c in text if c.isdigit())


@given(spec_text, other_digit, spec_text)
def test_no_other_script_digit_is_ever_accepted(before: str, digit: str, after: str) -> None:
    text = before + digit + after
    for parse in (parse_size, parse_publish, lambda t: parse_cpus(t, 1 << 20), parse_cpuset):
        with pytest.raises(ConfigError):
            parse(text)


@pytest.mark.parametrize("text", ["\u0661\u0669\u0660\u0660\u0661:80", "19001:80/", "19001:80/ ",
                                  "[127.0.0.1]:1:80", "80\n", " 80", "1.2.3.4.5:1:80"])
def test_sloppy_port_specs_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid port specification"):
        parse_publish(text)


@pytest.mark.parametrize("text", ["\u0661\u0660m", "1\n", "9" * 25, "1e3", "inf", "1_0"])
def test_sloppy_sizes_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


@pytest.mark.parametrize("text", ["\u0661", "inf", "nan", "1e0", "1_0", "\u0660.5"])
def test_sloppy_cpus_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_cpus(text, 4)
