"""``nsprim save``: images -> a ``docker save`` archive (or an OCI layout tar),
and the layer blobs that ``save`` and ``push`` send.

The store keeps layers extracted; a layer's tar is written again from its
directory by layertar.write_layer_tar, deterministically.  For a layer that
nsprim built, those are the very bytes it was built from (same diff_id).  A
layer pulled from a registry was written by another tool: its re-written tar
has another diff_id, so the exported config lists the new diff_ids (the image
gets another id in the archive; its content is the same).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from nsprim.images.layertar import HashingWriter, write_layer_tar
from nsprim.images.store import Image, ImageStore, _hex, default_store

__all__ = ["save", "LayerBlob", "layer_blob", "export_config"]

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class LayerBlob:
    diff_id: str      # sha256 of the tar
    digest: str       # sha256 of the gzip blob
    size: int         # of the gzip blob
    path: str         # the gzip blob, cached under <store>/blobcache/


def _cache_dir(store: ImageStore) -> str:
    d = os.path.join(store.root, "blobcache")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def layer_tar(store: ImageStore, layer_dir: str, out: IO[bytes]) -> str:
    """Write the layer's tar to `out`; its diff_id."""
    hw = HashingWriter(out)
    write_layer_tar(layer_dir, hw)
    return hw.digest()


def layer_blob(store: ImageStore, diff_id: str) -> LayerBlob:
    """The compressed blob of a layer (made once, then cached by diff_id)."""
    cache = _cache_dir(store)
    meta = os.path.join(cache, _hex(diff_id) + ".json")
    try:
        with open(meta) as f:
            m = json.load(f)
        blob = LayerBlob(**m)
        if os.path.getsize(blob.path) == blob.size:
            return blob
    except (OSError, ValueError, TypeError):
        pass
    with tempfile.TemporaryFile(dir=cache) as plain:
        real = layer_tar(store, store.layer_dir(diff_id), plain)
        plain.seek(0)
        blob = compress_layer(store, plain, real)
    if real != diff_id:
        from nsprim.state import atomic_write

        atomic_write(meta, json.dumps(blob.__dict__).encode(), 0o600)
    return blob


def compress_layer(store: ImageStore, plain: IO[bytes], diff_id: str) -> LayerBlob:
    """Compress the layer tar `plain` (whose sha256 is `diff_id`) into the
    blob cache; build does it once per layer, so push and save need not."""
    from nsprim.state import atomic_write

    cache = _cache_dir(store)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            outer = HashingWriter(raw)
            gzip_parallel(plain, outer)
        digest = outer.digest()
        path = os.path.join(cache, _hex(digest) + ".gz")
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    blob = LayerBlob(diff_id, digest, outer.count, path)
    atomic_write(os.path.join(cache, _hex(diff_id) + ".json"),
                 json.dumps(blob.__dict__).encode(), 0o600)
    return blob


_CHUNK = 1 << 20
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, unix


def _member(data: bytes, level: int = 6) -> bytes:
    """One gzip member of `data` (zlib releases the GIL while it works)."""
    import struct
    import zlib

    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF,
                                             len(data) & 0xFFFFFFFF)


def gzip_parallel(src: IO[bytes], out: Any, workers: int | None = None) -> None:
    """gzip `src` to `out` as one member per MiB, compressed on several
    threads (as pgzip does for docker and skopeo): a valid gzip stream
    (RFC 1952 allows members one after another), deterministic."""
    from concurrent.futures import Future, ThreadPoolExecutor

    workers = workers or max(1, min(4, os.cpu_count() or 1))
    pending: list[Future[bytes]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            data = src.read(_CHUNK)
            if data:
                pending.append(pool.submit(_member, data))
            while pending and (len(pending) > 2 * workers or not data):
                out.write(pending.pop(0).result())
            if not data:
                break


def export_config(img: Image, diff_ids: list[str]) -> bytes:
    """The image's config with `diff_ids` (the re-written layers')."""
    if diff_ids == img.diff_ids:
        store_cfg = json.dumps(img.config, separators=(",", ":")).encode()
        if "sha256:" + hashlib.sha256(store_cfg).hexdigest() == img.id:
            return store_cfg
    cfg = json.loads(json.dumps(img.config))
    cfg.setdefault("rootfs", {"type": "layers"})["diff_ids"] = list(diff_ids)
    return json.dumps(cfg, separators=(",", ":")).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = 0
    tar.addfile(ti, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = 0
    tar.addfile(ti)


def save(names: Sequence[str], out: IO[bytes], *, format: str = "docker",
         store: ImageStore | None = None) -> None:
    """Write the images `names` to `out`: a ``docker save`` archive
    (manifest.json with RepoTags, <id>.json configs, <layer>/layer.tar), or,
    with format="oci", an OCI image layout (index.json, blobs/sha256)."""
    from nsprim.images.reference import parse_reference

    if format not in ("docker", "oci"):
        raise ValueError(f"invalid format {format!r}: docker or oci")
    store = store or default_store()
    chosen: list[tuple[Image, list[str]]] = []
    for n in names:
        img = store.get(n)
        tags: list[str] = []
        try:
            ref = parse_reference(n)
            if not ref.digest and str(ref) in img.names:
                tags.append(ref.familiar())
        except ValueError:
            tags = [parse_reference(x).familiar() for x in img.names]
        for existing, t in chosen:
            if existing.id == img.id:
                t.extend(x for x in tags if x not in t)
                break
        else:
            chosen.append((img, tags))
    tmpdir = store._tmp()
    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    written: set[str] = set()
    manifest: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    try:
        if format == "oci":
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_dir(tar, "blobs")
            _add_dir(tar, "blobs/sha256")
        for img, tags in chosen:
            diff_ids: list[str] = []
            layer_paths: list[str] = []
            layer_descs: list[dict[str, Any]] = []
            for d in img.diff_ids:
                with tempfile.TemporaryFile(dir=tmpdir) as f:
                    real = layer_tar(store, store.layer_dir(d), f)
                    size = f.tell()
                    f.seek(0)
                    diff_ids.append(real)
                    h = _hex(real)
                    name = f"blobs/sha256/{h}" if format == "oci" else f"{h}/layer.tar"
                    layer_paths.append(name)
                    layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                        "digest": real, "size": size})
                    if name not in written:
                        if format == "docker":
                            _add_dir(tar, h)
                        ti = tarfile.TarInfo(name)
                        ti.size = size
                        ti.mode = 0o644
                        ti.mtime = 0
                        tar.addfile(ti, f)
                        written.add(name)
            config = export_config(img, diff_ids)
            cid = hashlib.sha256(config).hexdigest()
            if format == "docker":
                if f"{cid}.json" not in written:
                    _add_bytes(tar, f"{cid}.json", config)
                    written.add(f"{cid}.json")
                manifest.append({"Config": f"{cid}.json", "RepoTags": tags or None,
                                 "Layers": layer_paths})
                continue
            if f"blobs/sha256/{cid}" not in written:
                _add_bytes(tar, f"blobs/sha256/{cid}", config)
                written.add(f"blobs/sha256/{cid}")
            m = json.dumps({"schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": "sha256:" + cid, "size": len(config)},
                            "layers": layer_descs}, separators=(",", ":")).encode()
            mh = hashlib.sha256(m).hexdigest()
            if f"blobs/sha256/{mh}" not in written:
                _add_bytes(tar, f"blobs/sha256/{mh}", m)
                written.add(f"blobs/sha256/{mh}")
            for tg in tags or [""]:
                desc: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                        "digest": "sha256:" + mh, "size": len(m)}
                if tg:
                    full = str(parse_reference(tg))
                    # the whole name in ref.name (as skopeo and podman write
                    # it), so that a load keeps it
                    desc["annotations"] = {"io.containerd.image.name": full,
                                           "org.opencontainers.image.ref.name": full}
                index.append(desc)
        if format == "docker":
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
            repos: dict[str, dict[str, str]] = {}
            for entry, (_img, tags) in zip(manifest, chosen, strict=True):
                for t2 in tags:
                    repo, _, tag = t2.rpartition(":")
                    if entry["Layers"]:
                        repos.setdefault(repo, {})[tag] = entry["Layers"][-1].split("/")[0]
            _add_bytes(tar, "repositories", json.dumps(repos).encode())
        else:
            _add_bytes(tar, "index.json", json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": index}).encode())
    finally:
        tar.close()
    for img, tags in chosen:
        store._event("save", img.id, tags[0] if tags else img.id)
