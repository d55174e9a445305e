"""Images: references, a registry client, the layer store.

    from nsprim import images
    img = images.pull("localhost:5000/busybox")
    img.layers        # extracted layer directories, lowest first

Names are imported on first use (the registry client pulls in http and ssl).
"""

from __future__ import annotations

import importlib

__all__ = ["Image", "ImageStore", "ImageNotFound", "LayerError", "RegistryError", "Reference",
           "parse_reference", "pull", "load", "get", "list_images", "remove"]

_WHERE = {"Image": "store", "ImageStore": "store", "ImageNotFound": "store",
          "LayerError": "layer", "RegistryError": "registry", "Reference": "reference",
          "parse_reference": "reference"}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.images.layer import LayerError
    from nsprim.images.reference import Reference, parse_reference
    from nsprim.images.registry import RegistryError
    from nsprim.images.store import Image, ImageNotFound, ImageStore


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'nsprim.images' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nsprim.images.{mod}"), name)
    globals()[name] = value
    return value


def _store() -> Any:
    from nsprim.images.store import default_store

    return default_store()


def pull(name: str, **kwargs: Any) -> Image:
    """Pull `name` into the default store (see ImageStore.pull)."""
    return _store().pull(name, **kwargs)  # type: ignore[no-any-return]


def load(path: str) -> list[Image]:
    return _store().load(path)  # type: ignore[no-any-return]


def get(name: str) -> Image:
    return _store().get(name)  # type: ignore[no-any-return]


def list_images() -> list[Image]:
    return _store().images()  # type: ignore[no-any-return]


def remove(name: str, *, force: bool = False) -> list[str]:
    return _store().remove(name, force=force)  # type: ignore[no-any-return]
