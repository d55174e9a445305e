"""nsprim: container primitives for Python.

clone3, namespaces, mounts and pidfds through a compiled C core, and a
Pythonic layer on top: Namespace, Cgroup, Container, run().
"""

from __future__ import annotations

from nsprim.cgroup import Cgroup, CgroupStats, Limits
from nsprim.config import Bind, IdMap, Tmpfs
from nsprim.container import DEVNULL, PIPE, STDOUT, CompletedContainer, Container, run
from nsprim.errors import ConfigError, SpawnError
from nsprim.namespace import Namespace, NamespaceKind
from nsprim.rootfs import OverlayRootfs
from nsprim.volumes import Volume

__version__ = "0.1.0"

__all__ = [
    "Container", "run", "CompletedContainer", "Namespace", "NamespaceKind", "IdMap",
    "Bind", "Tmpfs", "ConfigError", "SpawnError", "PIPE", "DEVNULL", "STDOUT",
    "Cgroup", "CgroupStats", "Limits", "OverlayRootfs", "Volume", "NetworkMode",
    "__version__",
]


def __getattr__(name: str) -> object:
    # names reserved for the next layers (cgroups, images, networking)
    if name in ("NetworkMode",):
        raise NotImplementedError(f"nsprim.{name} is not implemented yet")
    raise AttributeError(f"module 'nsprim' has no attribute {name!r}")
