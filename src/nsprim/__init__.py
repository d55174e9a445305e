"""nsprim: container primitives for Python.

clone3, namespaces, mounts, cgroups and pidfds through a compiled C core, and
a Pythonic layer on top: Namespace, Cgroup, OverlayRootfs, NetworkMode,
Container, run().

Names are imported on first use, so that ``nsprim --version`` and
``nsprim ps`` do not pay for the C core or the network stack.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "Container": "nsprim.container", "run": "nsprim.container",
    "CompletedContainer": "nsprim.container", "PIPE": "nsprim.container",
    "DEVNULL": "nsprim.container", "STDOUT": "nsprim.container",
    "Namespace": "nsprim.namespace", "NamespaceKind": "nsprim.namespace",
    "IdMap": "nsprim.config", "Bind": "nsprim.config", "Tmpfs": "nsprim.config",
    "ConfigError": "nsprim.errors", "SpawnError": "nsprim.errors",
    "Cgroup": "nsprim.cgroup", "CgroupStats": "nsprim.cgroup", "Limits": "nsprim.cgroup",
    "OverlayRootfs": "nsprim.rootfs", "Volume": "nsprim.volumes",
    "NetworkMode": "nsprim.network",
}

__all__ = [
    "CgroupStats", "Cgroup", "CompletedContainer", "ConfigError", "Container", "DEVNULL",
    "IdMap", "Limits", "Bind", "Namespace", "NamespaceKind", "NetworkMode", "OverlayRootfs",
    "PIPE", "STDOUT", "SpawnError", "Tmpfs", "Volume", "run", "__version__",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.cgroup import Cgroup, CgroupStats, Limits
    from nsprim.config import Bind, IdMap, Tmpfs
    from nsprim.container import DEVNULL, PIPE, STDOUT, CompletedContainer, Container, run
    from nsprim.errors import ConfigError, SpawnError
    from nsprim.namespace import Namespace, NamespaceKind
    from nsprim.network import NetworkMode
    from nsprim.rootfs import OverlayRootfs
    from nsprim.volumes import Volume


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nsprim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
