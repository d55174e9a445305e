"""nsprim._record against the dataclasses behaviour it stands in for."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim._record import FrozenInstanceError, field, fields, record, replace


@record(frozen=True)
class Frozen:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()
    d: frozenset[int] = field(default_factory=frozenset)
    kind: ClassVar[str] = "not a field"


@dataclasses.dataclass(frozen=True)
class FrozenDC:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()
    d: frozenset[int] = dataclasses.field(default_factory=frozenset)
    kind: ClassVar[str] = "not a field"


@record
class Plain:
    a: int
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen.append("post")


ints = st.integers(-5, 5)
strs = st.text(max_size=3)


@given(ints, strs, st.lists(ints, max_size=3).map(tuple), ints, strs)
def test_frozen_record_matches_dataclass(a: int, b: str, c: tuple[int, ...], a2: int,
                                         b2: str) -> None:
    r, r2 = Frozen(a, b, c), Frozen(a=a2, b=b2, c=c)
    d, d2 = FrozenDC(a, b, c), FrozenDC(a=a2, b=b2, c=c)
    assert (r == r2) == (d == d2)
    assert repr(r).replace("Frozen(", "FrozenDC(") == repr(d)
    if r == r2:
        assert hash(r) == hash(r2)
    assert replace(r, b=b2) == Frozen(a, b2, c)
    assert dataclasses.replace(d, b=b2) == FrozenDC(a, b2, c)


def test_fields_defaults_and_factories() -> None:
    assert [f.name for f in fields(Frozen)] == ["a", "b", "c", "d"]
    x = Frozen(1)
    assert x.d == frozenset()
    p, q = Plain(1), Plain(1)
    assert p.seen == ["post"] and p.seen is not q.seen  # a fresh list each
    assert Frozen.kind == "not a field"
    with pytest.raises(FrozenInstanceError):
        x.a = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del x.b  # type: ignore[misc]
    assert x != (1, "x", (), frozenset())  # another type: never equal


def test_argument_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match="missing required argument 'a'"):
        Frozen()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'zz'"):
        Frozen(1, zz=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        Frozen(1, a=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        Frozen(1, "b", (), [], 5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field 'zz'"):
        replace(Frozen(1), zz=3)


def test_post_init_runs_on_init_and_replace_and_plain_is_unhashable() -> None:
    p = Plain(1)
    assert p.seen == ["post"]
    q = replace(p, a=2)
    assert q.a == 2 and q.seen == ["post", "post"]  # same list, post_init again
    p.a = 5  # not frozen
    assert p.a == 5
    with pytest.raises(TypeError):
        hash(p)


def test_non_default_after_default_is_refused() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b'"):
        @record
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]


def test_records_are_dataclasses_to_dataclasses() -> None:
    """dataclasses.replace/fields/asdict/is_dataclass, as on a dataclass."""
    x = Frozen(1, "y", (2,))
    assert dataclasses.is_dataclass(x) and dataclasses.is_dataclass(Frozen)
    assert [f.name for f in dataclasses.fields(x)] == ["a", "b", "c", "d"]
    assert dataclasses.replace(x, b="z") == Frozen(1, "z", (2,))
    assert dataclasses.asdict(x) == {"a": 1, "b": "y", "c": (2,), "d": frozenset()}
    p = dataclasses.replace(Plain(3), a=4)
    assert p.a == 4 and p.seen == ["post", "post"]
    with pytest.raises(TypeError):
        dataclasses.replace(x, zz=1)  # type: ignore[call-arg]
