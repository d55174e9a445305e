"""Frozen or plain records: the part of `dataclasses` nsprim uses, without its
import cost.

Why not `dataclasses`: importing it pulls in `inspect` (and with it `ast`,
`dis`, `tokenize`, `enum`...), and every decorated class compiles its own
`__init__`, `__eq__` and `__repr__` from source. On the CLI's common path
(``nsprim run --rm IMAGE true``, 25 record classes) that was about 10 ms of a
30 ms budget. Here a class gets shared, generic methods that read a per-class
field table: no compile, no `inspect`, no `typing` at run time.

What it does (the dataclasses subset in use): `@record` / `@record(frozen=True)`
on an annotated class; defaults and `field(default_factory=...)`;
`__post_init__`; `__init__` (positional or keyword), `__eq__`, `__repr__`,
and `__hash__` for frozen records (eq without frozen makes instances
unhashable, as dataclasses does); `replace()` and `fields()`. ClassVar
annotations are not fields. Type checkers see a dataclass (PEP 681).

Records are also dataclasses to `dataclasses` itself: `is_dataclass`,
`dataclasses.replace`, `fields` and `asdict` work on them (code of a user's,
or of nsprim's, that treats them as the dataclasses they type-check as).
The first such call imports `dataclasses` and builds the class's
`__dataclass_fields__` from a twin made with `make_dataclass`; nothing of
that is paid by code that does not ask.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform  # typing's own from 3.11

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw: object) -> object:
        return lambda f: f

__all__ = ["record", "field", "replace", "fields", "Field", "FrozenInstanceError"]


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field of a record: its name and default (value or factory)."""

    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A field with a default value or a factory of defaults (a fresh list)."""
    return Field(default, default_factory)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    assert isinstance(text, str)
    return text.startswith(("ClassVar", "typing.ClassVar", "Final[", "typing.Final["))


def _collect(cls: type) -> tuple[Field, ...]:
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            found[f.name] = f
    for name, ann in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(ann):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        found[name] = f
    seen_default = False
    for f in found.values():
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has_default
    return tuple(found.values())


def _init(self: Any, *args: Any, **kw: Any) -> None:
    cls = type(self)
    table: tuple[Field, ...] = cls.__record_fields__
    if args:
        if len(args) > len(table):
            raise TypeError(f"{cls.__name__}() takes {len(table)} positional arguments "
                            f"but {len(args)} were given")
        for f, v in zip(table, args, strict=False):
            if f.name in kw:
                raise TypeError(f"{cls.__name__}() got multiple values for argument "
                                f"{f.name!r}")
            kw[f.name] = v
    values: dict[str, Any] = dict(cls.__record_defaults__)
    values.update(kw)
    if len(values) != len(table) or cls.__record_factories__:
        for f in table:
            if f.name not in values:
                if f.default_factory is MISSING:
                    raise TypeError(f"{cls.__name__}() missing required argument {f.name!r}")
                values[f.name] = f.default_factory()
        if len(values) != len(table):
            extra = sorted(set(values) - {f.name for f in table})
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument "
                            f"{extra[0]!r}")
    self.__dict__.update(values)
    if cls.__record_post_init__:
        self.__post_init__()


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    table: tuple[Field, ...] = self.__record_fields__
    return self.__dict__ == other.__dict__ or all(
        getattr(self, f.name) == getattr(other, f.name) for f in table)


def _repr(self: Any) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__record_fields__)
    return f"{type(self).__qualname__}({inner})"


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, f.name) for f in self.__record_fields__))


def _frozen_setattr(self: Any, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


class _DataclassFields:
    """The class attribute ``__dataclass_fields__``, made on first access
    (dataclasses' functions look for it): real `dataclasses.Field`s, taken
    from a twin dataclass with the same fields and defaults."""

    def __get__(self, obj: object, owner: type) -> dict[str, Any]:
        import dataclasses

        spec: list[Any] = []
        for f in owner.__dict__["__record_fields__"]:
            if f.default is not MISSING:
                spec.append((f.name, object, dataclasses.field(default=f.default)))
            elif f.default_factory is not MISSING:
                spec.append((f.name, object,
                             dataclasses.field(default_factory=f.default_factory)))
            else:
                spec.append((f.name, object))
        twin = dataclasses.make_dataclass(owner.__name__, spec)
        table: dict[str, Any] = dict(twin.__dataclass_fields__)  # type: ignore[attr-defined]
        setattr(owner, "__dataclass_fields__", table)  # noqa: B010 - replaces this descriptor
        return table


def _process(cls: type, frozen: bool) -> type:
    table = _collect(cls)
    c: Any = cls
    c.__record_fields__ = table
    c.__record_defaults__ = {f.name: f.default for f in table if f.default is not MISSING}
    c.__record_factories__ = any(f.default_factory is not MISSING for f in table)
    c.__record_post_init__ = hasattr(cls, "__post_init__")
    c.__match_args__ = tuple(f.name for f in table)  # type: ignore[misc]
    c.__dataclass_fields__ = _DataclassFields()
    if "__init__" not in cls.__dict__:
        c.__init__ = _init
    if "__repr__" not in cls.__dict__:
        c.__repr__ = _repr
    if "__eq__" not in cls.__dict__:
        c.__eq__ = _eq
        if frozen:
            c.__hash__ = _hash
        elif "__hash__" not in cls.__dict__:
            c.__hash__ = None
    if frozen:
        c.__setattr__ = _frozen_setattr
        c.__delattr__ = _frozen_delattr
    return cls


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Decorate a class as a record (see the module's docstring)."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    table: tuple[Field, ...] = obj.__record_fields__
    return table


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of a record with some fields changed (`__post_init__` runs again)."""
    cls: Callable[..., T] = type(obj)
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    for name in changes:
        if name not in values:
            raise TypeError(f"{type(obj).__name__} has no field {name!r}")
    values.update(changes)
    return cls(**values)
