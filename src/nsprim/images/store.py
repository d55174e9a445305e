"""The image store: layers stored once by content, images by config digest,
names pointing at images.

Layout under ``<state root>/images``::

    blobs/sha256/<hex>        manifests and configs, by digest
    layers/<hex>/             an extracted layer, by its diff_id (uncompressed digest)
    images/<hex>.json         an image: config digest (its id), layers, manifest
    repositories.json         name -> image id
    tmp/                      work in progress (removed on failure, collected later)
    lock                      held while names, images or layers change

A layer shared by two images is downloaded and extracted once; ``remove``
(rmi) frees only layers no image uses and no mounted overlay reads.
Everything is verified: blob digests against the manifest, diff_ids against
the config.  A failed pull leaves nothing of itself behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from nsprim.errors import ConfigError
from nsprim.images.layer import HashingReader, LayerError, extract_layer, open_layer_stream
from nsprim.images.reference import parse_reference
from nsprim.state import FileLock, atomic_write, state_root

__all__ = ["Image", "ImageStore", "ImageNotFound", "default_store"]

Progress = Callable[[str, str], None]  # (layer short id, status)


class ImageNotFound(LookupError):
    pass


def _hex(digest: str) -> str:
    algo, _, h = digest.partition(":")
    if algo != "sha256" or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise LayerError(f"unsupported or malformed digest {digest!r}")
    return h


@dataclass
class Image:
    """An image in the store."""

    id: str                              # sha256 of its config
    config: dict[str, Any]
    diff_ids: list[str]
    layers: list[str]                    # layer directories, lowest first
    names: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0

    def _c(self) -> dict[str, Any]:
        c = self.config.get("config") or {}
        return c if isinstance(c, dict) else {}

    @property
    def entrypoint(self) -> list[str]:
        return list(self._c().get("Entrypoint") or [])

    @property
    def cmd(self) -> list[str]:
        return list(self._c().get("Cmd") or [])

    @property
    def env(self) -> list[str]:
        return list(self._c().get("Env") or [])

    @property
    def working_dir(self) -> str | None:
        return self._c().get("WorkingDir") or None

    @property
    def user(self) -> str | None:
        return self._c().get("User") or None

    @property
    def exposed_ports(self) -> list[str]:
        return sorted((self._c().get("ExposedPorts") or {}).keys())

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._c().get("Labels") or {})

    @property
    def stop_signal(self) -> str | None:
        return self._c().get("StopSignal") or None

    @property
    def volumes(self) -> list[str]:
        return sorted((self._c().get("Volumes") or {}).keys())

    def argv(self, cmd: list[str] | None = None, entrypoint: list[str] | None = None
             ) -> list[str]:
        """docker's rule: ``--entrypoint`` replaces the image's entrypoint and
        drops its CMD; arguments given replace the CMD."""
        if entrypoint is not None:
            return list(entrypoint) + list(cmd or [])
        return self.entrypoint + (list(cmd) if cmd else self.cmd)


class ImageStore:
    def __init__(self, root: str | None = None) -> None:
        self.root = root or os.path.join(state_root(), "images")
        for d in ("blobs/sha256", "layers", "images", "tmp"):
            os.makedirs(os.path.join(self.root, d), mode=0o700, exist_ok=True)
        os.chmod(os.path.join(self.root, "layers"), 0o755)
        os.chmod(self.root, 0o711)

    # -------------------------------------------------------------- paths
    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.root, "layers", _hex(diff_id))

    def _blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", _hex(digest))

    def _image_path(self, image_id: str) -> str:
        return os.path.join(self.root, "images", _hex(image_id) + ".json")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = FileLock(os.path.join(self.root, "lock"))
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------ records
    def _repos(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.root, "repositories.json")) as f:
                data = json.load(f)
            return dict(data) if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_repos(self, repos: dict[str, str]) -> None:
        atomic_write(os.path.join(self.root, "repositories.json"),
                     json.dumps(repos, indent=1, sort_keys=True).encode(), 0o600)

    def _load_image(self, image_id: str, repos: dict[str, str] | None = None) -> Image:
        try:
            with open(self._image_path(image_id)) as f:
                rec = json.load(f)
        except FileNotFoundError:
            raise ImageNotFound(f"no such image: {image_id}") from None
        with open(self._blob_path(image_id), "rb") as f:
            config = json.load(f)
        repos = self._repos() if repos is None else repos
        names = sorted(n for n, i in repos.items() if i == image_id)
        diff_ids = list(rec["diff_ids"])
        return Image(image_id, config, diff_ids, [self.layer_dir(d) for d in diff_ids],
                     names, list(rec.get("repo_digests", [])), int(rec.get("size", 0)))

    def _write_image(self, image_id: str, config_bytes: bytes, diff_ids: list[str],
                     manifest: bytes | None, repo_digest: str | None, size: int) -> None:
        self._put_blob(image_id, config_bytes)
        if manifest is not None:
            self._put_blob("sha256:" + hashlib.sha256(manifest).hexdigest(), manifest)
        digests: list[str] = []
        try:
            with open(self._image_path(image_id)) as f:
                digests = json.load(f).get("repo_digests", [])
        except (OSError, ValueError):
            pass
        if repo_digest and repo_digest not in digests:
            digests.append(repo_digest)
        rec = {"id": image_id, "diff_ids": diff_ids, "repo_digests": digests, "size": size}
        atomic_write(self._image_path(image_id), json.dumps(rec, indent=1).encode(), 0o600)

    def _put_blob(self, digest: str, data: bytes) -> None:
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise LayerError(f"blob digest mismatch: {digest}")
        p = self._blob_path(digest)
        if not os.path.exists(p):
            atomic_write(p, data, 0o600)

    # ------------------------------------------------------------- lookup
    def get(self, name: str) -> Image:
        """An image by name (``busybox``, ``localhost:5000/x:1``), by
        ``name@digest``, or by id (full, ``sha256:``-less, or a prefix of 12+)."""
        repos = self._repos()
        try:
            ref = parse_reference(name)
            key = str(ref)
            if key in repos:
                return self._load_image(repos[key], repos)
            if ref.digest:
                for iid in self._all_ids():
                    img = self._load_image(iid, repos)
                    if any(d.endswith("@" + ref.digest) and d.startswith(ref.repository + "@")
                           for d in img.repo_digests):
                        return img
        except ConfigError:
            pass
        h = name[7:] if name.startswith("sha256:") else name
        if len(h) >= 12 and all(c in "0123456789abcdef" for c in h):
            matches = [i for i in self._all_ids() if _hex(i).startswith(h)]
            if len(matches) == 1:
                return self._load_image(matches[0], repos)
        raise ImageNotFound(f"no such image: {name}")

    def _all_ids(self) -> list[str]:
        out = []
        for fn in os.listdir(os.path.join(self.root, "images")):
            if fn.endswith(".json"):
                out.append("sha256:" + fn[:-5])
        return sorted(out)

    def images(self) -> list[Image]:
        repos = self._repos()
        return [self._load_image(i, repos) for i in self._all_ids()]

    # --------------------------------------------------------------- pull
    def pull(self, name: str, *, progress: Progress | None = None,
             platform: tuple[str, str, str | None] | None = None,
             insecure: bool | None = None) -> Image:
        """Pull `name` from its registry; a no-op when every layer is here."""
        # imported here: http and ssl cost tens of milliseconds at start-up
        from nsprim.images.registry import RegistryClient

        ref = parse_reference(name)
        client = RegistryClient(ref, insecure=insecure)
        manifest, named = client.resolve(platform)
        cfg_desc = manifest.data.get("config") or {}
        image_id = cfg_desc.get("digest", "")
        _hex(image_id)
        layer_descs = [d for d in manifest.data.get("layers", [])
                       if "nondistributable" not in d.get("mediaType", "")
                       and "foreign" not in d.get("mediaType", "")]
        repo_digest = f"{ref.repository}@{named}"
        existing = self._existing(image_id)
        if existing is not None:
            with self._locked():
                self._write_image(image_id, self._read_blob(image_id), existing.diff_ids,
                                  manifest.body, repo_digest, existing.size)
                self._tag(str(ref) if ref.tag else None, image_id)
            return self.get(image_id)
        config_bytes = client.blob_bytes(image_id)
        config = json.loads(config_bytes)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layer_descs):
            raise LayerError(f"{ref}: the config lists {len(diff_ids)} layers, the manifest "
                             f"{len(layer_descs)}")

        def fetch(desc: dict[str, Any], diff_id: str) -> IO[bytes]:
            return client.blob(desc["digest"])

        size = self._import_layers(layer_descs, diff_ids, fetch, progress)
        with self._locked():
            self._write_image(image_id, config_bytes, diff_ids, manifest.body, repo_digest, size)
            self._tag(str(ref) if ref.tag else None, image_id)
        return self.get(image_id)

    def _existing(self, image_id: str) -> Image | None:
        try:
            img = self._load_image(image_id)
        except (ImageNotFound, OSError, ValueError):
            return None
        if all(os.path.isdir(d) for d in img.layers):
            return img
        return None

    def _read_blob(self, digest: str) -> bytes:
        with open(self._blob_path(digest), "rb") as f:
            return f.read()

    def _tag(self, name: str | None, image_id: str) -> None:
        if name is None:
            return
        repos = self._repos()
        repos[name] = image_id
        self._save_repos(repos)

    def _import_layers(self, descs: list[dict[str, Any]], diff_ids: list[str],
                       opener: Callable[[dict[str, Any], str], IO[bytes]],
                       progress: Progress | None) -> int:
        """Fetch, verify and extract the layers not yet here (concurrently).
        On any failure, the layers this call added are removed again."""
        added: list[str] = []
        added_lock = threading.Lock()
        sizes = [0] * len(descs)

        def one(i: int) -> None:
            desc, diff_id = descs[i], diff_ids[i]
            final = self.layer_dir(diff_id)
            short = _hex(desc.get("digest", diff_id))[:12] if desc.get("digest") else \
                _hex(diff_id)[:12]
            if os.path.isdir(final):
                if progress:
                    progress(short, "Already exists")
                sizes[i] = int(desc.get("size", 0))
                return
            if progress:
                progress(short, "Pulling fs layer")
            tmp = tempfile.mkdtemp(prefix="layer-", dir=os.path.join(self.root, "tmp"))
            try:
                os.chmod(tmp, 0o755)
                with opener(desc, diff_id) as raw:
                    blob = HashingReader(raw)
                    try:
                        inner, _ = open_layer_stream(
                            blob, desc.get("mediaType"))  # type: ignore[arg-type]
                        got_diff, _n = extract_layer(inner, tmp)
                        blob.drain()
                    except (EOFError, tarfile.TarError) as e:
                        raise LayerError(f"corrupt layer {desc.get('digest', '')}: {e}") \
                            from None
                want_blob = desc.get("digest")
                if want_blob and blob.digest() != want_blob:
                    raise LayerError(f"layer digest mismatch: expected {want_blob}, "
                                     f"got {blob.digest()}")
                if got_diff != diff_id:
                    raise LayerError(f"layer diff_id mismatch: expected {diff_id}, "
                                     f"got {got_diff}")
                sizes[i] = blob.count
                try:
                    os.rename(tmp, final)
                    with added_lock:
                        added.append(final)
                except OSError:
                    if not os.path.isdir(final):
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)  # another pull won the race
                if progress:
                    progress(short, "Pull complete")
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

        try:
            with ThreadPoolExecutor(max_workers=min(3, max(1, len(descs)))) as pool:
                for f in [pool.submit(one, i) for i in range(len(descs))]:
                    f.result()
        except BaseException:
            with self._locked():
                used = self._used_layers()
                for d in added:
                    if d not in used:
                        shutil.rmtree(d, ignore_errors=True)
            raise
        return sum(sizes)

    # --------------------------------------------------------------- load
    def load(self, path: str, *, progress: Progress | None = None) -> list[Image]:
        """Load a ``docker save`` archive or an OCI image layout (a directory
        or a tar of one).  Returns the images loaded."""
        src = _Source(path)
        try:
            if src.exists("manifest.json") and not src.exists("index.json"):
                return self._load_docker(src, progress)
            if src.exists("index.json"):
                if src.exists("manifest.json"):
                    try:
                        return self._load_docker(src, progress)
                    except (LayerError, KeyError):
                        pass
                return self._load_oci(src, progress)
            raise LayerError(f"{path}: neither a docker save archive nor an OCI image layout")
        finally:
            src.close()

    def _load_docker(self, src: _Source, progress: Progress | None) -> list[Image]:
        entries = json.loads(src.read("manifest.json"))
        out = []
        for e in entries:
            config_bytes = src.read(e["Config"])
            image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
            config = json.loads(config_bytes)
            diff_ids = list(config["rootfs"]["diff_ids"])
            descs = [{"path": p} for p in e["Layers"]]
            if len(descs) != len(diff_ids):
                raise LayerError("manifest.json and the config disagree on the layers")
            size = self._import_layers(descs, diff_ids, lambda d, _i: src.open(d["path"]),
                                       progress)
            with self._locked():
                self._write_image(image_id, config_bytes, diff_ids, None, None, size)
                for tag in e.get("RepoTags") or []:
                    self._tag(str(parse_reference(tag)), image_id)
            out.append(self.get(image_id))
        return out

    def _load_oci(self, src: _Source, progress: Progress | None) -> list[Image]:
        index = json.loads(src.read("index.json"))
        out = []
        for desc in index.get("manifests", []):
            name = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            manifest = self._oci_manifest(src, desc)
            if manifest is None:
                continue
            body, data = manifest
            cfg_digest = data["config"]["digest"]
            config_bytes = src.blob(cfg_digest)
            config = json.loads(config_bytes)
            diff_ids = list(config["rootfs"]["diff_ids"])
            descs = data.get("layers", [])
            size = self._import_layers(
                descs, diff_ids, lambda d, _i: src.open("blobs/sha256/" + _hex(d["digest"])),
                progress)
            with self._locked():
                self._write_image(cfg_digest, config_bytes, diff_ids, body, None, size)
                if name:
                    tag = name if ":" in name or "/" in name else f"localhost/load:{name}"
                    try:
                        self._tag(str(parse_reference(tag)), cfg_digest)
                    except ConfigError:
                        pass
            out.append(self.get(cfg_digest))
        return out

    def _oci_manifest(self, src: _Source, desc: dict[str, Any]
                      ) -> tuple[bytes, dict[str, Any]] | None:
        body = src.blob(desc["digest"])
        data = json.loads(body)
        if "manifests" in data:  # a nested index: pick this host's platform
            from nsprim.images.registry import host_platform

            os_, arch, _ = host_platform()
            for d in data["manifests"]:
                p = d.get("platform") or {}
                if p.get("os", os_) == os_ and p.get("architecture", arch) == arch:
                    return self._oci_manifest(src, d)
            return None
        return body, data

    # ---------------------------------------------------------------- rmi
    def remove(self, name: str, *, force: bool = False) -> list[str]:
        """Untag `name` (or remove the image by id); delete images nothing
        names any more, then layers no image uses.  Returns what was removed."""
        img = self.get(name)
        removed: list[str] = []
        with self._locked():
            repos = self._repos()
            by_name = None
            try:
                by_name = str(parse_reference(name))
            except ConfigError:
                pass
            if by_name in repos and not force:
                del repos[by_name]
                removed.append(f"Untagged: {parse_reference(name).familiar()}")
            else:
                for n in [n for n, i in repos.items() if i == img.id]:
                    del repos[n]
                    removed.append(f"Untagged: {parse_reference(n).familiar()}")
            self._save_repos(repos)
            if img.id not in repos.values():
                os.unlink(self._image_path(img.id))
                removed.append(f"Deleted: {img.id}")
                removed += self._gc()
        return removed

    def _used_layers(self) -> set[str]:
        used: set[str] = set()
        for iid in self._all_ids():
            try:
                with open(self._image_path(iid)) as f:
                    used.update(self.layer_dir(d) for d in json.load(f)["diff_ids"])
            except (OSError, ValueError, KeyError):
                continue
        return used

    def _gc(self) -> list[str]:
        """Remove layers and blobs no image uses (and no mount reads)."""
        used = self._used_layers()
        mounted = _mount_options()
        out = []
        layers_dir = os.path.join(self.root, "layers")
        for name in os.listdir(layers_dir):
            d = os.path.join(layers_dir, name)
            if d not in used and d not in mounted:
                shutil.rmtree(d, ignore_errors=True)
                out.append(f"Deleted: sha256:{name}")
        ids = {_hex(i) for i in self._all_ids()}
        for name in os.listdir(os.path.join(self.root, "blobs", "sha256")):
            if name not in ids:
                # manifests are kept while their image is; configs are image ids
                p = os.path.join(self.root, "blobs", "sha256", name)
                if not self._blob_in_use(name):
                    os.unlink(p)
        shutil.rmtree(os.path.join(self.root, "tmp"), ignore_errors=True)
        os.makedirs(os.path.join(self.root, "tmp"), mode=0o700, exist_ok=True)
        return out

    def _blob_in_use(self, hexname: str) -> bool:
        for iid in self._all_ids():
            try:
                with open(self._image_path(iid)) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                continue
            if any(d.endswith(hexname) for d in rec.get("repo_digests", [])):
                return True
        return False


def _mount_options() -> str:
    """Every mount's options, as one string (to see which layers overlays read)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return f.read()
    except OSError:
        return ""


class _Source:
    """Files of a docker-save archive or OCI layout, from a directory or a tar."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        if os.path.isdir(path):
            return
        try:
            self.tar = tarfile.open(path, "r:*")
        except (OSError, tarfile.TarError) as e:
            raise LayerError(f"cannot read {path}: {e}") from None
        self.names = {os.path.normpath(n): n for n in self.tar.getnames()}

    def _member(self, name: str) -> str | None:
        n = os.path.normpath(name)
        if n.startswith("..") or os.path.isabs(n):
            raise LayerError(f"path {name!r} leaves the archive")
        return self.names.get(n)

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return os.path.exists(os.path.join(self.path, name))
        return self._member(name) is not None

    def open(self, name: str) -> IO[bytes]:
        if self.tar is None:
            n = os.path.normpath(name)
            if n.startswith("..") or os.path.isabs(n):
                raise LayerError(f"path {name!r} leaves the layout")
            return open(os.path.join(self.path, n), "rb")
        m = self._member(name)
        if m is None:
            raise LayerError(f"{self.path}: missing {name}")
        f = self.tar.extractfile(m)
        if f is None:
            raise LayerError(f"{self.path}: {name} is not a file")
        return f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def blob(self, digest: str) -> bytes:
        data = self.read("blobs/sha256/" + _hex(digest))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise LayerError(f"blob digest mismatch: {digest}")
        return data

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


_default: ImageStore | None = None


def default_store() -> ImageStore:
    """The store under the current state root."""
    global _default
    root = os.path.join(state_root(), "images")
    if _default is None or _default.root != root:
        _default = ImageStore(root)
    return _default


def print_progress(stream: Any = None) -> Progress | None:
    """Per-layer status lines for a person (stderr is a terminal), else None."""
    out = stream or sys.stderr
    if not out.isatty():
        return None
    lock = threading.Lock()

    def report(layer: str, status: str) -> None:
        with lock:
            out.write(f"{layer}: {status}\n")
            out.flush()
    return report

