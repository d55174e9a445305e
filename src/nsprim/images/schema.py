"""Type checks for the JSON that registries and archives send: manifests,
indexes, image configs, token answers, ``manifest.json``/``index.json``.

Everything from outside is checked here, at the boundary, so the rest of the
code can index it without guarding each access: a wrong type is one error
naming what is wrong, never an AttributeError or KeyError from deep inside.
The error class is the caller's (RegistryError for a registry's answers,
LayerError for archives).
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
__all__ = ["parse_object", "descriptor", "manifest_parts", "index_entries", "config_diff_ids",
           "check_config", "docker_manifest_entries", "DIGEST_RE"]

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
MAX_LAYERS = 1000  # docker's own limit is 127; this only bounds what we hold


def _show(value: Any) -> str:
    """A short, one-line description of a JSON value for an error message."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "?")
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (ValueError, RecursionError):
        text = "..."
    return f"{kind} ({text[:60]}{'...' if len(text) > 60 else ''})"


def parse_object(data: bytes, what: str, err: type[Exception]) -> dict[str, Any]:
    """`data` as a JSON object; `err` names `what` when it is not one."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise err(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise err(f"{what} is {_show(value)}, not a JSON object")
    return value


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str,
         err: type[Exception], *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise err(f"{what}: {key!r} is {_show(value)}, expected {names}")
    return value


def _digest(value: Any, what: str, err: type[Exception]) -> str:
    if not isinstance(value, str) or not DIGEST_RE.fullmatch(value):
        raise err(f"{what}: invalid digest {_show(value)}")
    return value


def descriptor(d: Any, what: str, err: type[Exception]) -> dict[str, Any]:
    """An OCI descriptor: an object with a sha256 digest, a size >= 0 and,
    if present, a string mediaType."""
    if not isinstance(d, dict):
        raise err(f"{what} is {_show(d)}, not a descriptor object")
    _digest(d.get("digest"), what, err)
    size = _get(d, "size", int, what, err)
    if size < 0:
        raise err(f"{what}: negative size {size}")
    _get(d, "mediaType", str, what, err, optional=True)
    _get(d, "annotations", dict, what, err, optional=True)
    return d


def manifest_parts(data: dict[str, Any], what: str, err: type[Exception]
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config descriptor, layer descriptors) of an image manifest."""
    config = descriptor(data.get("config"), f"{what}: config", err)
    layers = _get(data, "layers", list, what, err)
    if len(layers) > MAX_LAYERS:
        raise err(f"{what}: {len(layers)} layers (at most {MAX_LAYERS})")
    return config, [descriptor(d, f"{what}: layer {i}", err) for i, d in enumerate(layers)]


def index_entries(data: dict[str, Any], what: str, err: type[Exception]
                  ) -> list[dict[str, Any]]:
    """The descriptors of an image index; each `platform`, if any, an object
    of strings."""
    entries = _get(data, "manifests", list, what, err)
    out = []
    for i, d in enumerate(entries):
        d = descriptor(d, f"{what}: manifest {i}", err)
        platform = _get(d, "platform", dict, f"{what}: manifest {i}", err, optional=True)
        for k in ("os", "architecture", "variant"):
            if platform is not None:
                _get(platform, k, str, f"{what}: manifest {i} platform", err, optional=True)
        out.append(d)
    return out


_CONFIG_FIELDS: dict[str, type] = {
    "Entrypoint": list, "Cmd": list, "Env": list, "WorkingDir": str, "User": str,
    "ExposedPorts": dict, "Labels": dict, "StopSignal": str, "Volumes": dict,
}


def check_config(config: dict[str, Any], what: str, err: type[Exception]) -> None:
    """The fields nsprim uses in an image config have docker's types."""
    c = _get(config, "config", dict, what, err, optional=True)
    if c is None:
        return
    where = f"{what}: config"
    for key, kind in _CONFIG_FIELDS.items():
        value = _get(c, key, kind, where, err, optional=True)
        if isinstance(value, list) and not all(isinstance(x, str) for x in value):
            raise err(f"{where}: {key!r} is {_show(value)}, expected a list of strings")
        if key == "Labels" and value is not None and \
                not all(isinstance(x, str) for x in value.values()):
            raise err(f"{where}: 'Labels' is {_show(value)}, expected strings")


def config_diff_ids(config: dict[str, Any], what: str, err: type[Exception]) -> list[str]:
    """The checked image config's layer diff_ids."""
    check_config(config, what, err)
    rootfs = _get(config, "rootfs", dict, what, err)
    ids = _get(rootfs, "diff_ids", list, f"{what}: rootfs", err)
    if len(ids) > MAX_LAYERS:
        raise err(f"{what}: {len(ids)} layers (at most {MAX_LAYERS})")
    return [_digest(d, f"{what}: rootfs.diff_ids[{i}]", err) for i, d in enumerate(ids)]


def docker_manifest_entries(data: bytes, what: str, err: type[Exception]
                            ) -> list[dict[str, Any]]:
    """The entries of a ``docker save`` manifest.json: a list of objects with
    a string Config, a list of string Layers and, if any, string RepoTags."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise err(f"{what} is not JSON") from None
    if not isinstance(value, list):
        raise err(f"{what} is {_show(value)}, not a list of images")
    for i, e in enumerate(value):
        where = f"{what}: image {i}"
        if not isinstance(e, dict):
            raise err(f"{where} is {_show(e)}, not an object")
        _get(e, "Config", str, where, err)
        layers = _get(e, "Layers", list, where, err)
        tags = _get(e, "RepoTags", list, where, err, optional=True)
        for name, items in (("Layers", layers), ("RepoTags", tags or [])):
            for x in items:
                if not isinstance(x, str):
                    raise err(f"{where}: {name!r} holds {_show(x)}, expected strings")
        if len(layers) > MAX_LAYERS:
            raise err(f"{where}: {len(layers)} layers (at most {MAX_LAYERS})")
    return value
