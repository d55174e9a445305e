"""Images: references, a registry client, the layer store.

    from nsprim import images
    img = images.pull("localhost:5000/busybox")
    img.layers        # extracted layer directories, lowest first
"""

from __future__ import annotations

from nsprim.images.layer import LayerError
from nsprim.images.reference import Reference, parse_reference
from nsprim.images.registry import RegistryError
from nsprim.images.store import Image, ImageNotFound, ImageStore, default_store

__all__ = ["Image", "ImageStore", "ImageNotFound", "LayerError", "RegistryError", "Reference",
           "parse_reference", "pull", "load", "get", "list_images", "remove"]


def pull(name: str, **kwargs: object) -> Image:
    """Pull `name` into the default store (see ImageStore.pull)."""
    return default_store().pull(name, **kwargs)  # type: ignore[arg-type]


def load(path: str) -> list[Image]:
    return default_store().load(path)


def get(name: str) -> Image:
    return default_store().get(name)


def list_images() -> list[Image]:
    return default_store().images()


def remove(name: str, *, force: bool = False) -> list[str]:
    return default_store().remove(name, force=force)
