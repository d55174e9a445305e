"""docker's objects read from the current state root: the records of
:mod:`nsprim.lifecycle`, the image store, the volumes and the bridge, passed
through :mod:`nsprim.dockerfmt.shapes`.  Used by the CLI and by the Docker
API daemon, so both return the same JSON.

Listing is kept cheap: a container costs two small JSON reads (its spec and
state) and, for a running one, one read of ``/proc/PID/stat``; an image's
config is read once per listing, straight from the store's blobs (the image
store module is imported only for image commands).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping

from nsprim.dockerfmt import shapes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.spec import ContainerSpec

__all__ = ["Container", "containers", "needs_collect", "container", "ImageCache", "network_info",
           "inspect_container", "summarize", "inspect_network", "network_names",
           "volume_objects", "inspect_volume"]

_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)


class Container:
    """One container's record, read once: spec, state and status."""

    __slots__ = ("record", "spec", "state", "status")

    def __init__(self, record: Any, spec: ContainerSpec, state: dict[str, Any],
                 status: str) -> None:
        self.record = record                # nsprim.lifecycle.Record
        self.spec, self.state, self.status = spec, state, status

    @property
    def id(self) -> str:
        return str(self.record.id)

    @property
    def name(self) -> str:
        return self.spec.name or ""


def _read(rec: Any) -> Container | None:
    from nsprim.lifecycle import alive
    from nsprim.spec import ContainerSpec

    cfg = rec.config
    if not cfg:
        return None
    spec = ContainerSpec.from_json(cfg)
    if not spec.id:
        spec = ContainerSpec.from_json(dict(cfg, id=rec.id))
    st = rec.state
    status = str(st.get("status", "created"))
    if status in ("running", "restarting") and \
            not alive(st.get("supervisor_pid"), st.get("supervisor_start")):
        status = "dead"
    elif status == "running" and st.get("paused"):
        status = "paused"  # the freezer holds it (nsprim pause)
    return Container(rec, spec, st, status)


def needs_collect(c: Container) -> bool:
    """Would :func:`nsprim.lifecycle.collect` change this record (its
    supervisor was killed)?  Listing calls collect only then: it reads every
    record again."""
    from nsprim.lifecycle import alive

    st = c.state
    if st.get("status") not in ("running", "restarting", "starting"):
        return False
    if alive(st.get("supervisor_pid"), st.get("supervisor_start")):
        return False
    return not (st.get("status") == "starting" and
                time.time() - float(st.get("starting_at") or 0) < 30)


def containers() -> list[Container]:
    """Every container of the state root, newest first (docker's order)."""
    from nsprim.lifecycle import records

    out = [c for c in (_read(r) for r in records()) if c is not None]
    out.sort(key=lambda c: -float(c.spec.created or 0))
    return out


def container(ref: str) -> Container:
    """A container by name, id or id prefix (LookupError if none)."""
    from nsprim.lifecycle import find

    c = _read(find(ref))
    if c is None:
        raise LookupError(f"No such container: {ref}")
    return c


class ImageCache:
    """Image configs and layer directories by image id, read from the store's
    files once per listing."""

    def __init__(self, root: str = "") -> None:
        if not root:
            from nsprim.state import state_root

            root = os.path.join(state_root(), "images")
        self.root = root
        self._configs: dict[str, dict[str, Any] | None] = {}

    def _hex(self, image_id: str | None) -> str | None:
        if not image_id:
            return None
        h = image_id[7:] if image_id.startswith("sha256:") else image_id
        return h if _HEX64.fullmatch(h) else None

    def config(self, image_id: str | None) -> dict[str, Any] | None:
        """The image's OCI config (None if it is gone)."""
        h = self._hex(image_id)
        if h is None:
            return None
        if h not in self._configs:
            try:
                with open(os.path.join(self.root, "blobs", "sha256", h), "rb") as f:
                    data = json.load(f)
                self._configs[h] = data if isinstance(data, dict) else None
            except (OSError, ValueError):
                self._configs[h] = None
        return self._configs[h]

    def layers(self, image_id: str | None) -> list[str]:
        """The image's layer directories, lowest first."""
        h = self._hex(image_id)
        if h is None:
            return []
        try:
            with open(os.path.join(self.root, "images", h + ".json")) as f:
                diff_ids = json.load(f).get("diff_ids") or []
        except (OSError, ValueError, AttributeError):
            return []
        return [os.path.join(self.root, "layers", d.partition(":")[2]) for d in diff_ids
                if isinstance(d, str)]


def network_info() -> dict[str, Any]:
    """The bridge's ``{"subnet", "gateway", "prefixlen"}`` (empty when no
    bridge was made under this state root)."""
    import ipaddress

    try:
        with open(_network_config()) as f:
            net = ipaddress.IPv4Network(json.load(f)["subnet"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {"subnet": str(net), "gateway": str(net.network_address + 1),
            "prefixlen": net.prefixlen}


def _network_config() -> str:
    from nsprim.state import run_dir

    return os.path.join(run_dir(), "network", "config.json")


def _volumes_dir() -> str:
    from nsprim.state import state_root

    return os.path.join(state_root(), "volumes")


def inspect_container(c: Container, images: ImageCache | None = None,
                      network: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``docker inspect`` of a container."""
    from nsprim.state import run_dir

    images = images or ImageCache()
    return shapes.container_inspect(
        c.spec, c.state, status=c.status, image_config=images.config(c.spec.image_id),
        log_path=c.record.log_path, volumes_dir=_volumes_dir(), container_dir=c.record.dir,
        etc_dir=os.path.join(run_dir(), "etc", c.id),  # <id>.hosts... (nsprim.network.etc)
        network=network_info() if network is None else network,
        layers=images.layers(c.spec.image_id))


def container_size(c: Container, images: ImageCache) -> tuple[int, int]:
    """(SizeRw, SizeRootFs): the container layer's bytes, and those plus the
    image's (docker's ``ps -s``)."""
    from nsprim.images.store import unpacked_size

    rw = unpacked_size(os.path.join(c.record.dir, "upper"))
    base = 0
    if c.spec.image_id:
        h = images._hex(c.spec.image_id)
        try:
            with open(os.path.join(images.root, "images", f"{h}.json")) as f:
                base = int(json.load(f).get("size") or 0)
        except (OSError, ValueError, TypeError, AttributeError):
            base = 0
    elif c.spec.rootfs:
        base = unpacked_size(c.spec.rootfs)
    return rw, rw + base


def summarize(items: Iterable[Container], *, size: bool = False,
              now: float | None = None) -> list[dict[str, Any]]:
    """``GET /containers/json``: the summaries of `items`."""
    images = ImageCache()
    network = network_info()
    vdir = _volumes_dir()
    now = time.time() if now is None else now
    out = []
    for c in items:
        rw = root = None
        if size:
            rw, root = container_size(c, images)
        out.append(shapes.container_summary(
            c.spec, c.state, status=c.status, image_config=images.config(c.spec.image_id),
            volumes_dir=vdir, network=network, now=now, size_rw=rw, size_root_fs=root))
    return out


# ----------------------------------------------------------------- networks

def network_names() -> list[str]:
    return list(shapes.BUILTIN_NETWORKS)


def inspect_network(name: str, items: Iterable[Container] | None = None) -> dict[str, Any]:
    """``docker network inspect`` of a built-in network (by name, id or id
    prefix); LookupError for another."""
    for n in shapes.BUILTIN_NETWORKS:
        if name == n or (len(name) >= 3 and shapes.network_id(n).startswith(name)):
            break
    else:
        raise LookupError(f"network {name} not found")
    net = network_info() if n == "bridge" else {}
    members = []
    for c in containers() if items is None else items:
        if (c.spec.network or "bridge") == n and shapes._is_running(c.status):
            members.append({"Id": c.id, "Name": c.name,
                            "IPAddress": c.state.get("ip") or "",
                            "IPPrefixLen": net.get("prefixlen", 0)})
    created = 0.0
    if n == "bridge":
        try:
            created = os.stat(_network_config()).st_mtime
        except OSError:
            created = 0.0
    return shapes.network_inspect(n, subnet=net.get("subnet", ""),
                                  gateway=net.get("gateway", ""), created=created,
                                  containers=members)


# ------------------------------------------------------------------ volumes

def _volume(info: Any) -> dict[str, Any]:
    return shapes.volume_inspect(info.name, info.mountpoint, info.created_at)


def volume_objects() -> list[dict[str, Any]]:
    """``GET /volumes``' Volumes."""
    from nsprim import volumes

    return [_volume(v) for v in volumes.list_volumes()]


def inspect_volume(name: str) -> dict[str, Any]:
    from nsprim import volumes

    return _volume(volumes.get(name))


# ------------------------------------------------------------------- images

def _image_json(img: Any, summary: bool) -> dict[str, Any]:
    if summary:
        return shapes.image_summary(img.id, img.config, names=img.names,
                                    repo_digests=img.repo_digests, size=img.size)
    return shapes.image_inspect(img.id, img.config, names=img.names,
                                repo_digests=img.repo_digests, size=img.size,
                                diff_ids=img.diff_ids, layers=img.layers)


def _image_records(root: str) -> list[Any] | None:
    """The images of the store at `root` read from its files (records,
    configs, names) without the store's module; None when a record is of an
    older version (no layer sizes): the store fixes those."""
    from types import SimpleNamespace

    try:
        with open(os.path.join(root, "repositories.json")) as f:
            repos = json.load(f)
        if not isinstance(repos, dict):
            return None
    except FileNotFoundError:
        repos = {}
    except (OSError, ValueError):
        return None
    try:
        files = sorted(os.listdir(os.path.join(root, "images")))
    except FileNotFoundError:
        return []
    out = []
    for fn in files:
        h = fn[:-5]
        if not fn.endswith(".json") or not _HEX64.fullmatch(h):
            continue
        iid = "sha256:" + h
        try:
            with open(os.path.join(root, "images", fn)) as f:
                rec = json.load(f)
            with open(os.path.join(root, "blobs", "sha256", h), "rb") as f:
                config = json.load(f)
            diff_ids = list(rec["diff_ids"])
            sizes = rec["layer_sizes"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (isinstance(sizes, list) and len(sizes) == len(diff_ids) and
                all(type(n) is int for n in sizes)) or not isinstance(config, dict):
            return None
        out.append(SimpleNamespace(
            id=iid, config=config, diff_ids=diff_ids,
            layers=[os.path.join(root, "layers", str(d).partition(":")[2]) for d in diff_ids],
            names=sorted(n for n, i in repos.items() if i == iid),
            repo_digests=list(rec.get("repo_digests", [])), size=sum(sizes)))
    return out


def image_objects(*, summary: bool = True) -> list[dict[str, Any]]:
    """``GET /images/json`` (or every image's inspect), newest first."""
    images = _image_records(ImageCache().root)
    if images is None:
        from nsprim.images.store import default_store

        images = default_store().images()
    out = [_image_json(img, summary) for img in images]
    out.sort(key=lambda i: -shapes.parse_rfc3339(i["Created"]) if isinstance(i["Created"], str)
             else -i["Created"])
    return out


def inspect_image(name: str) -> dict[str, Any]:
    """``docker image inspect`` (LookupError if there is no such image)."""
    from nsprim.images.store import default_store

    return _image_json(default_store().get(name), False)
