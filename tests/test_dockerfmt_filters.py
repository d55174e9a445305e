"""nsprim.dockerfmt.filters: docker's --filter and the API's filters, on
records made in memory (pure logic)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.dockerfmt.filters import (
    CONTAINER_FILTERS,
    FilterError,
    api_filters,
    parse_filters,
    select_containers,
)
from nsprim.spec import ContainerSpec


def box(i: int, status: str, **kw: Any) -> Any:
    spec = ContainerSpec(id=f"{i:02d}" + "a" * 62, name=f"c{i}", created=1000.0 - i,
                         image=kw.pop("image", "busybox"), **kw)
    state = {"status": status, "exit_code": i % 3,
             "ports": [{"proto": "tcp", "host_ip": "", "host_port": 8000 + i,
                        "container_port": 80}] if spec.publish else []}
    return SimpleNamespace(spec=spec, state=state, status=status, id=spec.id, name=spec.name)


ITEMS = [box(0, "running", publish=("8000:80",), labels={"tier": "web"}),
         box(1, "exited", network="none", volumes=("v:/data",)),
         box(2, "exited", image="nginx:1", labels={"tier": "db"}),
         box(3, "created")]


def names(f: dict[str, list[str]], **kw: Any) -> list[str]:
    return [c.name for c in select_containers(ITEMS, f, **kw)]


def test_docker_selection_rules() -> None:
    assert names({}) == ["c0"]
    assert names({}, show_all=True) == ["c0", "c1", "c2", "c3"]
    assert names({}, last=2) == ["c0", "c1"]
    assert names({"status": ["exited"]}) == ["c1", "c2"]
    assert names({"status": ["exited", "created"]}) == ["c1", "c2", "c3"]
    assert names({"exited": ["2"]}) == ["c2"]
    assert names({"label": ["tier"]}, show_all=True) == ["c0", "c2"]
    assert names({"label": ["tier=db"]}, show_all=True) == ["c2"]
    assert names({"label": ["tier"], "status": ["running"]}) == ["c0"]
    assert names({"ancestor": ["nginx:1"]}, show_all=True) == ["c2"]
    assert names({"ancestor": ["docker.io/library/busybox:latest"]}, show_all=True) == \
        ["c0", "c1", "c3"]
    assert names({"before": ["c1"]}, show_all=True) == ["c2", "c3"]
    assert names({"since": ["c2"]}, show_all=True) == ["c0", "c1"]
    assert names({"network": ["none"]}, show_all=True) == ["c1"]
    assert names({"volume": ["v"]}, show_all=True) == ["c1"]
    assert names({"volume": ["/data"]}, show_all=True) == ["c1"]
    assert names({"publish": ["80"]}, show_all=True) == ["c0"]
    assert names({"publish": ["80/udp"]}, show_all=True) == []
    assert names({"name": ["^c[12]$"]}, show_all=True) == ["c1", "c2"]
    assert names({"id": ["02"]}, show_all=True) == ["c2"]


@pytest.mark.parametrize("f,message", [
    ({"colour": ["red"]}, "Error response from daemon: invalid filter 'colour'"),
    ({"status": ["sleepy"]}, "Error response from daemon: invalid filter 'status=sleepy'"),
    ({"exited": ["x"]}, "Error response from daemon: invalid filter 'exited=x'"),
    ({"publish": ["http"]}, "Error response from daemon: invalid filter value 'http'"),
    ({"before": ["nosuch"]}, "Error response from daemon: No such container: nosuch"),
])
def test_bad_filters_in_dockers_words(f: dict[str, list[str]], message: str) -> None:
    with pytest.raises(FilterError) as e:
        select_containers(ITEMS, f)
    assert str(e.value) == message


def test_api_filters_both_forms() -> None:
    assert api_filters('{"status": ["running", "exited"]}') == {"status": ["running",
                                                                           "exited"]}
    assert api_filters('{"label": {"a=b": true, "c": false}}') == {"label": ["a=b"]}
    assert api_filters(None) == {}
    for bad in ("[1]", "{", '{"a": 3}'):
        with pytest.raises(FilterError):
            api_filters(bad)


@given(st.lists(st.tuples(st.sampled_from(CONTAINER_FILTERS), st.text(max_size=5)),
                max_size=5))
def test_cli_and_api_forms_agree(pairs: list[tuple[str, str]]) -> None:
    cli = parse_filters([f"{k}={v}" for k, v in pairs], CONTAINER_FILTERS)
    api = api_filters(json.dumps({k: [v.strip() for kk, v in pairs if kk == k]
                                  for k, _ in pairs}))
    assert cli == api
    try:
        a = select_containers(ITEMS, cli, show_all=True)
    except FilterError:
        return
    assert all(c in ITEMS for c in a)
