"""The daemon's ContainerUpdate body -> nsprim.manage.update_spec changes
(daemon/manage.py), and the stats JSON: docker's fields land on the spec's,
zero means unchanged, and any JSON at all is either changes that
spec.validate accepts or rejects with a ConfigError, or a clean 400."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.daemon.manage import parse_update
from nsprim.daemon.server import ApiError
from nsprim.errors import ConfigError
from nsprim.manage import UPDATABLE, update_spec
from nsprim.spec import ContainerSpec


def test_update_fields_map_onto_the_spec() -> None:
    ch = parse_update({"Memory": 96 << 20, "MemorySwap": -1, "NanoCpus": 1_500_000_000,
                       "CpuShares": 512, "PidsLimit": 50, "CpusetCpus": "0",
                       "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                       "KernelMemory": 0, "BlkioWeight": 0})
    assert ch == {"memory": str(96 << 20), "memory_swap": "-1", "cpus": "1.5",
                  "cpu_shares": 512, "pids_limit": 50, "cpuset_cpus": "0",
                  "restart": "on-failure:3"}
    spec = update_spec(ContainerSpec(id="a" * 64, rootfs="/", cmd=("sh",)), ch)
    assert (spec.memory, spec.cpus, spec.restart) == (str(96 << 20), "1.5", "on-failure:3")
    assert parse_update({}) == {}
    assert parse_update({"Memory": 0, "RestartPolicy": {"Name": ""}}) == {}


@pytest.mark.parametrize("body", [{"Memory": "1g"}, {"Memory": True}, {"Memory": -1},
                                  {"NanoCpus": 1.5}, {"RestartPolicy": "always"},
                                  {"CpusetCpus": 0}, {"PidsLimit": []}])
def test_update_bad_types_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as ei:
        parse_update(body)
    assert ei.value.status == 400


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                         c, max_size=3),
                     max_leaves=8)
_keys = st.sampled_from(["Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
                         "CpuPeriod", "CpuQuota", "BlkioWeight", "PidsLimit", "CpusetCpus",
                         "CpusetMems", "RestartPolicy", "Other"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json | st.integers(0, 1 << 40), max_size=6))
def test_any_update_body_is_changes_or_a_400(body: dict[str, Any]) -> None:
    try:
        ch = parse_update(body)
    except ApiError as e:
        assert e.status == 400 and e.message
        return
    assert set(ch) <= set(UPDATABLE)
    assert all(v not in (None, "", 0) for v in ch.values())  # zero: unchanged
    try:
        update_spec(ContainerSpec(id="b" * 64, rootfs="/", cmd=("sh",)), ch)
    except ConfigError as e:
        assert str(e)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40), st.integers(0, 1 << 20),
       st.integers(0, 1 << 30), st.booleans())
def test_stats_json_shape(usec: int, mem: int, pids: int, rx: int, networked: bool) -> None:
    from types import SimpleNamespace

    from nsprim.daemon.manage import Reading, stats_json
    from nsprim.stats import Sample

    smp = Sample("c" * 64, "n", usec, 0.0, mem, 1 << 30, rx, 0, 0, 0, pids)
    prev = Reading(Sample("c" * 64, "n", usec // 2, 0.0, 0, 0, 0, 0, 0, 0, 0), 10**9,
                   1.0, 2, 0, networked)
    cur = Reading(smp, 2 * 10**9, 2.0, 2, 64, networked)
    rec: Any = SimpleNamespace(name="n", id="c" * 64)
    out = stats_json(rec, prev, cur)
    assert out["cpu_stats"]["cpu_usage"]["total_usage"] == usec * 1000
    assert out["precpu_stats"]["cpu_usage"]["total_usage"] == (usec // 2) * 1000
    assert out["memory_stats"]["usage"] == mem and out["pids_stats"] == {"current": pids,
                                                                          "limit": 64}
    assert ("networks" in out) == networked
    assert out["read"] > out["preread"] and out["name"] == "/n"
