"""The image store: layers stored once by content, images by config digest,
names pointing at images.

Layout under ``<state root>/images``::

    blobs/sha256/<hex>        manifests and configs, by digest
    layers/<hex>/             an extracted layer, by its diff_id (uncompressed digest)
    images/<hex>.json         an image: config digest (its id), layers, manifest,
                              each layer's unpacked size (docker's SIZE)
    repositories.json         name -> image id
    tmp/<pull>.lock           held (flock) by a pull or load while it runs; lists
                              the layers it relies on, which rmi then keeps
    tmp/<pull>.<n>/           a layer being extracted by that pull
    tmp/lease-<id>.lock       held by a rootless container while it runs (its
                              overlay is in its own mount namespace): its
                              layers, which rmi then keeps (lease_layers)
    lock                      held while names, images or layers change

Anything under tmp/ whose pull is no longer running (killed, crashed) is
removed by the next ImageStore of any command.

Untrusted blobs are bounded while they stream: a layer stops as soon as it
is longer than its descriptor says, or expands to more than
``NSPRIM_LAYER_MAX_RATIO`` (default 100) times its compressed size (counted
as at least 1 MiB), or the image to more than ``NSPRIM_IMAGE_MAX_SIZE``
(default 64g) uncompressed; ImageStore(max_ratio=, max_size=) overrides both.

A layer shared by two images is downloaded and extracted once; ``remove``
(rmi) frees only layers no image uses and no mounted overlay reads, and
never removes an image a container (a record under ``<state root>/containers``)
was created from: docker's conflicts, see ``remove``.
Everything is verified: blob digests against the manifest, diff_ids against
the config.  A failed pull leaves nothing of itself behind.
"""

from __future__ import annotations

import _thread
import fcntl
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from nsprim._record import field, record
from nsprim.errors import ConfigError
from nsprim.images.layer import Bounded, HashingReader, LayerError, extract_layer, open_layer_stream
from nsprim.images.reference import parse_reference
from nsprim.images.schema import (
    config_diff_ids,
    docker_manifest_entries,
    index_entries,
    manifest_parts,
    parse_object,
)
from nsprim.state import FileLock, atomic_write, remove_tree, state_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from typing import IO, Any

__all__ = ["Image", "ImageStore", "ImageNotFound", "ImageInUse", "default_store"]

Progress = Callable[[str, str], None]  # (layer short id, status)

DEFAULT_MAX_RATIO = 100
DEFAULT_MAX_SIZE = 64 << 30
_MIN_COMPRESSED = 1 << 20   # the ratio applies to at least this many compressed bytes
_MAX_JSON = 32 << 20        # manifests, configs, index.json, manifest.json


def _sha256_hex(data: bytes) -> str:
    import hashlib  # OpenSSL's (fast for layers): loaded only by what hashes

    return hashlib.sha256(data).hexdigest()


def _setting(value: int | str | None, env: str, default: int, what: str) -> int:
    from nsprim.units import parse_size

    if value is None:
        value = os.environ.get(env) or default
    n = parse_size(value, f"{what} ({env})")
    if n <= 0:
        raise ConfigError(f"invalid {what} ({env}) {value!r}: must be positive")
    return n


# (image id, config, diff_ids, layer descriptors, names, manifest): a checked
# image of a load, not stored yet
if TYPE_CHECKING:
    _Plan = tuple[str, bytes, list[str], list[dict[str, Any]], list[str], "bytes | None"]


class _Budget:
    """Uncompressed bytes one pull or load may write, shared by its layers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.lock = _thread.allocate_lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.used += n
            if self.used > self.limit:
                raise LayerError(f"image larger than {self.limit} bytes uncompressed "
                                 "(NSPRIM_IMAGE_MAX_SIZE)")


class _PullLock:
    """tmp/<name>.lock, flocked for as long as the pull runs; its content is
    the layers (hex diff_ids) the pull relies on."""

    def __init__(self, tmpdir: str, prefix: str = "pull-") -> None:
        while True:
            self.name = prefix + os.urandom(8).hex()
            self.path = os.path.join(tmpdir, self.name + ".lock")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False  # a collector took the name before we locked it
            if same:
                self.fd = fd
                break
            os.close(fd)
        self.tmpdir = tmpdir
        self._n = 0
        self._mu = _thread.allocate_lock()

    def new_dir(self) -> str:
        with self._mu:
            self._n += 1
            path = os.path.join(self.tmpdir, f"{self.name}.{self._n}")
        os.mkdir(path, 0o700)
        return path

    def protect(self, diff_id: str) -> None:
        with self._mu:
            os.write(self.fd, (_hex(diff_id) + "\n").encode())

    def release(self) -> None:
        for entry in os.listdir(self.tmpdir):
            if entry.startswith(self.name + "."):
                if entry != self.name + ".lock":
                    remove_tree(os.path.join(self.tmpdir, entry))
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


class _Lease(_PullLock):
    """A container's hold on its layers (see lease_layers).  rmi appends a
    ``gc`` line when it kept a layer for a lease; the lease then frees what
    no image uses as it ends."""

    def release(self) -> None:
        try:
            deferred = b"gc" in os.pread(self.fd, 1 << 20, 0).split()
        except OSError:
            deferred = False
        super().release()
        if deferred:
            store = ImageStore(os.path.dirname(self.tmpdir))
            with store._locked():
                store._gc()


def lease_layers(layers: Sequence[str]) -> _PullLock | None:
    """Hold a store's `layers` (directories under its layers/) against rmi
    while a container reads them through an overlay that rmi cannot see in
    the mount table (rootless: mounted in the container's own mount
    namespace): ``tmp/lease-<id>.lock``, flocked and listing them, as a
    running pull's.  None if the layers are not a store's.  release() ends it
    (a killed holder's lock is free, and the next ImageStore removes it)."""
    if not layers:
        return None
    parent = os.path.dirname(os.path.normpath(layers[0]))
    tmp = os.path.join(os.path.dirname(parent), "tmp")
    if os.path.basename(parent) != "layers" or not os.path.isdir(tmp):
        return None
    lease = _Lease(tmp, prefix="lease-")
    try:
        for d in layers:
            if os.path.dirname(os.path.normpath(d)) == parent:
                lease.protect("sha256:" + os.path.basename(os.path.normpath(d)))
    except BaseException:
        lease.release()
        raise
    return lease


class ImageNotFound(LookupError):
    pass


class ImageInUse(RuntimeError):
    """rmi refused: a container uses the image (docker's "conflict: ...")."""


def unpacked_size(path: str) -> int:
    """docker's size of a layer directory: the bytes of everything in it but
    directories, a file with several links counted once."""
    total = 0
    seen: set[int] = set()
    stack = [path]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                        continue
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_size == 0 or stat.S_ISDIR(st.st_mode):
                    continue
                if st.st_nlink > 1:
                    if st.st_ino in seen:
                        continue
                    seen.add(st.st_ino)
                total += st.st_size
    return total


def _hex(digest: str) -> str:
    if not isinstance(digest, str):
        raise LayerError(f"malformed digest {digest!r}")
    algo, _, h = digest.partition(":")
    if algo != "sha256" or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise LayerError(f"unsupported or malformed digest {digest!r}")
    return h


@record
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

    @property
    def history(self) -> list[dict[str, Any]]:
        h = self.config.get("history") or []
        return [e for e in h if isinstance(e, dict)] if isinstance(h, list) else []

    def tag(self, target: str) -> Image:
        """Name this image `target` too (docker tag)."""
        return default_store().tag(self.id, target)

    def save(self, path: str, *, format: str = "docker") -> None:
        """Write this image to `path` as a docker save archive (or OCI layout)."""
        from nsprim.images.archive import save

        with open(path, "wb") as f:
            save([self.names[0] if self.names else self.id], f, format=format)

    def push(self, name: str | None = None, **kwargs: Any) -> str:
        """Push to a registry (see nsprim.images.push); the manifest digest."""
        from nsprim.images.push import push

        target = name or (self.names[0] if self.names else None)
        if target is None:
            raise ConfigError(f"image {self.id[:19]} has no name to push to")
        return push(target, **kwargs)

    def argv(self, cmd: list[str] | None = None, entrypoint: list[str] | None = None
             ) -> list[str]:
        """docker's rule: ``--entrypoint`` replaces the image's entrypoint and
        drops its CMD; arguments given replace the CMD."""
        if entrypoint is not None:
            return list(entrypoint) + list(cmd or [])
        return self.entrypoint + (list(cmd) if cmd else self.cmd)


class ImageStore:
    def __init__(self, root: str | None = None, *, max_ratio: int | str | None = None,
                 max_size: int | str | None = None) -> None:
        self.root = root or os.path.join(state_root(), "images")
        self._holding = False  # this thread holds the store lock (_locked)
        self.max_ratio = _setting(max_ratio, "NSPRIM_LAYER_MAX_RATIO", DEFAULT_MAX_RATIO,
                                  "layer expansion ratio")
        self.max_size = _setting(max_size, "NSPRIM_IMAGE_MAX_SIZE", DEFAULT_MAX_SIZE,
                                 "image size")
        for d in ("blobs/sha256", "layers", "images", "tmp"):
            os.makedirs(os.path.join(self.root, d), mode=0o700, exist_ok=True)
        os.chmod(os.path.join(self.root, "layers"), 0o755)
        os.chmod(self.root, 0o711)
        self.collect_tmp()

    # ---------------------------------------------------------- tmp/
    def _tmp(self) -> str:
        return os.path.join(self.root, "tmp")

    def collect_tmp(self) -> list[str]:
        """Remove what pulls and loads that no longer run left in tmp/ (a
        pull killed with -9); those still running keep theirs.  Returns the
        names removed."""
        tmp = self._tmp()
        removed = []
        try:
            entries = os.listdir(tmp)
        except FileNotFoundError:
            return []
        live_or_dead = {e[:-len(".lock")] for e in entries if e.endswith(".lock")}
        for owner in sorted(live_or_dead):
            path = os.path.join(tmp, owner + ".lock")
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its pull runs
                try:
                    if os.stat(path).st_ino != os.fstat(fd).st_ino:
                        continue  # another collector had it
                except FileNotFoundError:
                    continue
                for e in entries:
                    if e.startswith(owner + ".") and e != owner + ".lock":
                        remove_tree(os.path.join(tmp, e))
                        removed.append(e)
                os.unlink(path)
                removed.append(owner + ".lock")
            finally:
                os.close(fd)
        for e in entries:
            if e.endswith(".lock") or e.split(".", 1)[0] in live_or_dead:
                continue
            # a directory whose lock is gone: its pull is gone too (the lock
            # is made before its directories and removed after them)
            if not os.path.exists(os.path.join(tmp, e.split(".", 1)[0] + ".lock")):
                p = os.path.join(tmp, e)
                if os.path.isdir(p) and not os.path.islink(p):
                    remove_tree(p)
                else:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
                removed.append(e)
        return removed

    def _pulling(self, exclude: str | None = None) -> set[str]:
        """Layer directories that running pulls rely on (their lock files)."""
        tmp = self._tmp()
        out: set[str] = set()
        for e in os.listdir(tmp):
            if not e.endswith(".lock") or e == exclude:
                continue
            path = os.path.join(tmp, e)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    continue  # nobody holds it: not a running pull
                except BlockingIOError:
                    pass
                data = os.read(fd, 1 << 20).decode("ascii", "replace")
            finally:
                os.close(fd)
            for line in data.split():
                if len(line) == 64:
                    out.add(os.path.join(self.root, "layers", line))
        return out

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
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
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
        sizes = rec.get("layer_sizes")
        if not (isinstance(sizes, list) and len(sizes) == len(diff_ids)
                and all(type(n) is int for n in sizes)):
            sizes = self._cache_sizes(image_id, diff_ids)  # a record of an older version
        return Image(image_id, config, diff_ids, [self.layer_dir(d) for d in diff_ids],
                     names, list(rec.get("repo_digests", [])), sum(sizes))

    def _known_sizes(self) -> dict[str, int]:
        """diff_id -> unpacked size, from the image records that have them."""
        out: dict[str, int] = {}
        for iid in self._all_ids():
            try:
                with open(self._image_path(iid)) as f:
                    rec = json.load(f)
                pairs = zip(rec["diff_ids"], rec["layer_sizes"], strict=True)
                out.update((d, n) for d, n in pairs if type(n) is int)
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def _layer_sizes(self, diff_ids: list[str], sizes: list[int | None] | None = None
                     ) -> list[int]:
        """Each layer's unpacked size: `sizes` where given, else an image
        record's, else measured."""
        known: dict[str, int] | None = None
        out = []
        for i, d in enumerate(diff_ids):
            n = sizes[i] if sizes is not None else None
            if n is None:
                if known is None:
                    known = self._known_sizes()
                n = known.get(d)
            if n is None:
                n = unpacked_size(self.layer_dir(d))
            out.append(n)
        return out

    def _cache_sizes(self, image_id: str, diff_ids: list[str]) -> list[int]:
        """Measure the layers of a record without sizes, and keep them in it."""
        sizes = [unpacked_size(self.layer_dir(d)) for d in diff_ids]
        if not all(os.path.isdir(self.layer_dir(d)) for d in diff_ids):
            return sizes
        lock = None if self._holding else FileLock(os.path.join(self.root, "lock"))
        try:
            with open(self._image_path(image_id)) as f:
                rec = json.load(f)
            if rec.get("diff_ids") == diff_ids:
                rec.update(layer_sizes=sizes, size=sum(sizes))
                atomic_write(self._image_path(image_id), json.dumps(rec, indent=1).encode(),
                             0o600)
        except (OSError, ValueError, AttributeError):
            pass
        finally:
            if lock is not None:
                lock.release()
        return sizes

    def _write_image(self, image_id: str, config_bytes: bytes, diff_ids: list[str],
                     manifest: bytes | None, repo_digest: str | None,
                     layer_sizes: list[int]) -> None:
        self._put_blob(image_id, config_bytes)
        if manifest is not None:
            self._put_blob("sha256:" + _sha256_hex(manifest), manifest)
        digests: list[str] = []
        try:
            with open(self._image_path(image_id)) as f:
                digests = json.load(f).get("repo_digests", [])
        except (OSError, ValueError):
            pass
        if repo_digest and repo_digest not in digests:
            digests.append(repo_digest)
        rec = {"id": image_id, "diff_ids": diff_ids, "repo_digests": digests,
               "layer_sizes": layer_sizes, "size": sum(layer_sizes)}
        atomic_write(self._image_path(image_id), json.dumps(rec, indent=1).encode(), 0o600)

    def _put_blob(self, digest: str, data: bytes) -> None:
        if "sha256:" + _sha256_hex(data) != digest:
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
        from nsprim.images.registry import RegistryClient, RegistryError

        ref = parse_reference(name)
        client = RegistryClient(ref, insecure=insecure)
        manifest, named = client.resolve(platform)
        cfg_desc, all_layers = manifest_parts(manifest.data, f"the manifest of {ref}",
                                              RegistryError)
        image_id = cfg_desc["digest"]
        layer_descs = [d for d in all_layers
                       if "nondistributable" not in (d.get("mediaType") or "")
                       and "foreign" not in (d.get("mediaType") or "")]
        repo_digest = f"{ref.repository}@{named}"
        existing = self._existing(image_id)
        if existing is not None:
            with self._locked():
                self._write_image(image_id, self._read_blob(image_id), existing.diff_ids,
                                  manifest.body, repo_digest,
                                  self._layer_sizes(existing.diff_ids))
                self._tag(str(ref) if ref.tag else None, image_id)
            return self._pulled(ref, image_id)
        config_bytes = client.blob_bytes(image_id)
        config = parse_object(config_bytes, f"the image config of {ref}", LayerError)
        diff_ids = config_diff_ids(config, f"the image config of {ref}", LayerError)
        if len(diff_ids) != len(layer_descs):
            raise LayerError(f"{ref}: the config lists {len(diff_ids)} layers, the manifest "
                             f"{len(layer_descs)}")

        def fetch(desc: dict[str, Any], diff_id: str) -> IO[bytes]:
            return client.blob(desc["digest"])

        with self._pull_lock() as pl:
            sizes = self._import_layers(pl, layer_descs, diff_ids, fetch, progress)
            with self._locked():
                self._check_layers(diff_ids)
                self._write_image(image_id, config_bytes, diff_ids, manifest.body,
                                  repo_digest, sizes)
                self._tag(str(ref) if ref.tag else None, image_id)
        return self._pulled(ref, image_id)

    def _event(self, action: str, ident: str, name: str = "") -> None:
        """An image event in the events of this store's state root."""
        from nsprim import events

        events.image(action, ident, name, root=os.path.dirname(os.path.abspath(self.root)))

    def _pulled(self, ref: Any, image_id: str) -> Image:
        name = ref.familiar()
        self._event("pull", name, name.rsplit(":", 1)[0] if ref.tag else name)
        return self.get(image_id)

    @contextmanager
    def _pull_lock(self) -> Iterator[_PullLock]:
        pl = _PullLock(self._tmp())
        try:
            yield pl
        finally:
            pl.release()

    def _check_layers(self, diff_ids: list[str]) -> None:
        """Under the store lock, before an image record is written: its layers
        are all here (nothing removed them meanwhile)."""
        for d in diff_ids:
            if not os.path.isdir(self.layer_dir(d)):
                raise LayerError(f"layer {d} was removed while the image was being stored; "
                                 "try again")

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

    def tag(self, source: str, target: str) -> Image:
        """docker tag: `target` (normalised, docker's short names) names the
        image `source` names.  ConfigError names a bad target."""
        ref = parse_reference(target)
        if ref.digest:
            raise ConfigError(f"invalid reference format {target!r}: a tag cannot have a "
                              "digest")
        img = self.get(source)
        with self._locked():
            if not os.path.exists(self._image_path(img.id)):
                raise ImageNotFound(f"no such image: {source}")
            self._tag(str(ref), img.id)
        self._event("tag", img.id, ref.familiar())
        return self.get(img.id)

    def _check_sizes(self, descs: list[dict[str, Any]]) -> None:
        for d in descs:
            size = d["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise LayerError(f"layer {d.get('digest', '')}: invalid size {size!r}")
            if size > self.max_size:
                raise LayerError(f"layer {d.get('digest') or d.get('path')}: its size {size} "
                                 f"is more than an image may have ({self.max_size} bytes, "
                                 "NSPRIM_IMAGE_MAX_SIZE)")

    def _import_layers(self, pl: _PullLock, descs: list[dict[str, Any]], diff_ids: list[str],
                       opener: Callable[[dict[str, Any], str], IO[bytes]],
                       progress: Progress | None) -> list[int]:
        """Fetch, verify and extract the layers not yet here (concurrently).
        Each desc has a "size": the compressed bytes it may have.  On any
        failure, the layers this call added are removed again.  Returns each
        layer's unpacked size (docker's)."""
        import tarfile
        from concurrent.futures import ThreadPoolExecutor

        self._check_sizes(descs)
        added: list[str] = []
        added_lock = _thread.allocate_lock()
        sizes: list[int | None] = [None] * len(descs)  # unpacked; None: already here
        budget = _Budget(self.max_size)
        for d in diff_ids:
            pl.protect(d)  # before looking: rmi keeps what a running pull uses

        def one(i: int) -> None:
            desc, diff_id = descs[i], diff_ids[i]
            final = self.layer_dir(diff_id)
            digest = desc.get("digest")
            short = _hex(digest)[:12] if digest else _hex(diff_id)[:12]
            if os.path.isdir(final):
                if progress:
                    progress(short, "Already exists")
                return
            if progress:
                progress(short, "Pulling fs layer")
            name = digest or desc.get("path") or diff_id
            declared = int(desc["size"])
            expand = self.max_ratio * max(declared, _MIN_COMPRESSED)
            tmp = pl.new_dir()
            try:
                os.chmod(tmp, 0o755)
                with opener(desc, diff_id) as raw:
                    # the blob may not be longer than its descriptor says
                    limited = Bounded(raw, declared, lambda n: f"layer {name}: longer than the "
                                      f"{n} bytes its descriptor gives")
                    blob = HashingReader(limited)
                    try:
                        inner, kind = open_layer_stream(
                            blob, desc.get("mediaType"))  # type: ignore[arg-type]
                        # nor expand beyond the ratio and the image's budget
                        bounded = Bounded(
                            inner, expand if kind != "none" else declared,
                            lambda n: f"layer {name}: expands to more than {n} bytes, "
                            f"{self.max_ratio} times its compressed size "
                            "(NSPRIM_LAYER_MAX_RATIO)", budget.add)
                        got_diff, _n = extract_layer(bounded, tmp)
                        blob.drain()
                    except (EOFError, tarfile.TarError) as e:
                        raise LayerError(f"corrupt layer {name}: {e}") from None
                if digest and blob.digest() != digest:
                    raise LayerError(f"layer digest mismatch: expected {digest}, "
                                     f"got {blob.digest()}")
                if got_diff != diff_id:
                    raise LayerError(f"layer diff_id mismatch: expected {diff_id}, "
                                     f"got {got_diff}")
                if os.geteuid() != 0:  # rootless: the owners, in the user namespace
                    from nsprim.rootless import apply_owners

                    apply_owners(tmp)
                sizes[i] = unpacked_size(tmp)
                try:
                    os.rename(tmp, final)
                    with added_lock:
                        added.append(final)
                except OSError:
                    if not os.path.isdir(final):
                        raise
                    remove_tree(tmp)  # another pull won the race
                if progress:
                    progress(short, "Pull complete")
            except BaseException:
                remove_tree(tmp)
                raise

        try:
            # imported here: concurrent.futures pulls in logging (a cached
            # rebuild never needs it)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(3, max(1, len(descs)))) as pool:
                for f in [pool.submit(one, i) for i in range(len(descs))]:
                    f.result()
        except BaseException:
            with self._locked():
                used = self._used_layers() | self._pulling(exclude=os.path.basename(pl.path))
                for d in added:
                    if d not in used:
                        remove_tree(d)
            raise
        return self._layer_sizes(diff_ids, sizes)

    # --------------------------------------------------------------- load
    def load(self, path: str, *, progress: Progress | None = None) -> list[Image]:
        """Load a ``docker save`` archive or an OCI image layout (a directory
        or a tar of one).  Returns the images loaded.  Every name, manifest
        and config is checked before any layer is stored."""
        loaded = self._load(path, progress=progress)
        for img in loaded:
            self._event("load", img.id, img.names[0] if img.names else img.id)
        return loaded

    def _load(self, path: str, *, progress: Progress | None = None) -> list[Image]:
        src = _Source(path, max_bytes=self.max_size)
        try:
            if src.exists("manifest.json") and not src.exists("index.json"):
                return self._load_docker(src, progress)
            if src.exists("index.json"):
                if src.exists("manifest.json"):
                    try:
                        return self._load_docker(src, progress)
                    except LayerError:
                        pass
                return self._load_oci(src, progress)
            raise LayerError(f"{path}: neither a docker save archive nor an OCI image layout")
        finally:
            src.close()

    def _load_docker(self, src: _Source, progress: Progress | None) -> list[Image]:
        what = f"{src.path}: manifest.json"
        entries = docker_manifest_entries(src.read("manifest.json", _MAX_JSON), what,
                                          LayerError)
        plans: list[_Plan] = []
        for i, e in enumerate(entries):
            where = f"{what}: image {i}"
            config_bytes = src.read(e["Config"], _MAX_JSON)
            image_id = "sha256:" + _sha256_hex(config_bytes)
            config = parse_object(config_bytes, f"{where}: config {e['Config']!r}", LayerError)
            diff_ids = config_diff_ids(config, f"{where}: config", LayerError)
            if len(e["Layers"]) != len(diff_ids):
                raise LayerError(f"{where}: manifest.json and the config disagree on the "
                                 "layers")
            descs = [{"path": p, "size": src.size(p)} for p in e["Layers"]]
            tags = [self._load_name(t, where) for t in e.get("RepoTags") or []]
            plans.append((image_id, config_bytes, diff_ids, descs, tags, None))
        return self._store_loaded(src, plans, progress)

    @staticmethod
    def _load_name(tag: str, where: str) -> str:
        try:
            return str(parse_reference(tag))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    def _store_loaded(self, src: _Source,
                      plans: list[_Plan],
                      progress: Progress | None) -> list[Image]:
        """Store what was checked: layers, then the image records and names."""
        out = []
        for image_id, config_bytes, diff_ids, descs, tags, body in plans:
            with self._pull_lock() as pl:
                sizes = self._import_layers(pl, descs, diff_ids,
                                            lambda d, _i: src.open(d["path"]), progress)
                with self._locked():
                    self._check_layers(diff_ids)
                    self._write_image(image_id, config_bytes, diff_ids, body, None, sizes)
                    for tag in tags:
                        self._tag(tag, image_id)
            out.append(self.get(image_id))
        return out

    def _load_oci(self, src: _Source, progress: Progress | None) -> list[Image]:
        what = f"{src.path}: index.json"
        index = parse_object(src.read("index.json", _MAX_JSON), what, LayerError)
        plans: list[_Plan] = []
        for i, desc in enumerate(index_entries(index, what, LayerError)):
            where = f"{what}: manifest {i}"
            name = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            tags = []
            if name is not None:
                if not isinstance(name, str):
                    raise LayerError(f"{where}: the ref.name annotation is not a string")
                tag = name if ":" in name or "/" in name else f"localhost/load:{name}"
                tags.append(self._load_name(tag, where))
            manifest = self._oci_manifest(src, desc, where)
            if manifest is None:
                continue
            body, data = manifest
            cfg, layers = manifest_parts(data, where, LayerError)
            config_bytes = src.blob(cfg["digest"])
            config = parse_object(config_bytes, f"{where}: config", LayerError)
            diff_ids = config_diff_ids(config, f"{where}: config", LayerError)
            if len(layers) != len(diff_ids):
                raise LayerError(f"{where}: the manifest and the config disagree on the layers")
            descs = [dict(d, path="blobs/sha256/" + _hex(d["digest"])) for d in layers]
            plans.append((cfg["digest"], config_bytes, diff_ids, descs, tags, body))
        return self._store_loaded(src, plans, progress)

    def _oci_manifest(self, src: _Source, desc: dict[str, Any], where: str, depth: int = 0
                      ) -> tuple[bytes, dict[str, Any]] | None:
        if depth > 4:
            raise LayerError(f"{where}: indexes nested too deep")
        body = src.blob(desc["digest"])
        data = parse_object(body, f"{where}: {desc['digest']}", LayerError)
        if "manifests" in data:  # a nested index: pick this host's platform
            from nsprim.images.registry import host_platform

            os_, arch, _ = host_platform()
            for d in index_entries(data, f"{where}: {desc['digest']}", LayerError):
                p = d.get("platform") or {}
                if p.get("os", os_) == os_ and p.get("architecture", arch) == arch:
                    return self._oci_manifest(src, d, where, depth + 1)
            return None
        return body, data

    # ---------------------------------------------------------------- rmi
    def remove(self, name: str, *, force: bool = False) -> list[str]:
        """docker rmi: untag `name`, or, given an id, untag the image
        everywhere; delete images nothing names any more, then layers no
        image uses.  Returns what was removed.

        An image a container was created from is kept, as docker does:
        by name, its last name is not removed unless `force` (and then the
        image stays, nameless, for the container); by id, it is refused while
        a container runs, and unless `force` while one is stopped (`force`
        then only untags).  Refusals raise ImageInUse."""
        img = self.get(name)
        short = _hex(img.id)[:12]
        removed: list[str] = []
        with self._locked():
            repos = self._repos()
            names = [n for n, i in repos.items() if i == img.id]
            by_name = None
            try:
                by_name = str(parse_reference(name))
            except ConfigError:
                pass
            users = self._containers_using(img.id)
            if by_name in repos:
                if not force and len(names) == 1 and users:
                    raise ImageInUse(f'conflict: unable to remove repository reference "{name}" '
                                     f"(must force) - container {users[0][0][:12]} is using its "
                                     f"referenced image {short}")
                untag = [by_name]
            else:
                running = [cid for cid, live in users if live]
                if running:
                    raise ImageInUse(f"conflict: unable to delete {short} (cannot be forced) - "
                                     f"image is being used by running container {running[0][:12]}")
                if users and not force:
                    raise ImageInUse(f"conflict: unable to delete {short} (must be forced) - "
                                     f"image is being used by stopped container "
                                     f"{users[0][0][:12]}")
                untag = names
            for n in untag:
                del repos[n]
                removed.append(f"Untagged: {parse_reference(n).familiar()}")
            self._save_repos(repos)
            deleted = img.id not in repos.values() and not users
            if deleted:
                os.unlink(self._image_path(img.id))
                removed.append(f"Deleted: {img.id}")
                removed += self._gc()
        for n in untag:
            self._event("untag", img.id, parse_reference(n).familiar())
        if deleted:
            self._event("delete", img.id, img.id)
        return removed

    def _containers_using(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of the containers made from the image:
        the records under ``containers/`` beside this store."""
        from nsprim import lifecycle

        base = os.path.join(os.path.dirname(os.path.abspath(self.root)), "containers")

        @record
        class _Rec(lifecycle.Record):
            @property
            def dir(self) -> str:
                return os.path.join(base, self.id)

        try:
            ids = sorted(os.listdir(base))
        except FileNotFoundError:
            return []
        out = []
        for cid in ids:
            rec = _Rec(cid)
            if rec.config.get("image_id") == image_id:
                # a container being started counts as running
                out.append((cid, rec.running or rec.state.get("status") == "starting"))
        return sorted(out, key=lambda u: not u[1])

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
        layers_dir = os.path.join(self.root, "layers")
        names = os.listdir(layers_dir)
        # after listing: a layer a running pull renamed in is in its lock file
        images = self._used_layers()
        used = images | self._pulling()
        mounted = _mount_options()
        out = []
        spared = False
        for name in names:
            d = os.path.join(layers_dir, name)
            if d not in used and d not in mounted:
                remove_tree(d)
                out.append(f"Deleted: sha256:{name}")
            elif d not in images and d not in mounted:
                spared = True  # a pull or a container's lease holds it
        if spared:
            self._mark_leases()
        ids = {_hex(i) for i in self._all_ids()}
        for name in os.listdir(os.path.join(self.root, "blobs", "sha256")):
            if name not in ids:
                # manifests are kept while their image is; configs are image ids
                p = os.path.join(self.root, "blobs", "sha256", name)
                if not self._blob_in_use(name):
                    os.unlink(p)
        self.collect_tmp()  # only what dead pulls left: running ones keep theirs
        self._gc_blobcache()
        return out

    def _mark_leases(self) -> None:
        """Tell the containers' leases that a layer was kept for them: each
        frees what no image uses as it ends (_Lease.release)."""
        tmp = self._tmp()
        for e in os.listdir(tmp):
            if e.startswith("lease-") and e.endswith(".lock"):
                try:
                    fd = os.open(os.path.join(tmp, e),
                                 os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    os.write(fd, b"gc\n")
                finally:
                    os.close(fd)

    def _gc_blobcache(self) -> None:
        """Compressed blobs (build, push, save) of layers no longer here."""
        cache = os.path.join(self.root, "blobcache")
        try:
            names = os.listdir(cache)
        except FileNotFoundError:
            return
        keep: set[str] = set()
        for name in names:
            if not name.endswith(".json") or name == "pushed.json":
                continue
            p = os.path.join(cache, name)
            try:
                with open(p) as f:
                    blob = json.load(f)
            except (OSError, ValueError):
                continue
            if os.path.isdir(os.path.join(self.root, "layers", name[:-5])):
                keep.add(os.path.basename(str(blob.get("path", ""))))
            else:
                os.unlink(p)
        import time

        for name in names:
            p = os.path.join(cache, name)
            try:
                # a .tmp is a blob being written: only an old one is a leftover
                if (name.endswith(".gz") and name not in keep) or (
                        name.endswith(".tmp") and os.stat(p).st_mtime < time.time() - 3600):
                    os.unlink(p)
            except FileNotFoundError:
                pass

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


_MAX_ARCHIVE_MEMBERS = 100_000


class _Source:
    """Files of a docker-save archive or OCI layout, from a directory or a tar.

    A tar's headers are all checked (targuard) before tarfile indexes it:
    bounded extended headers, at most _MAX_ARCHIVE_MEMBERS members, and, if
    it is compressed, at most `max_bytes` once uncompressed."""

    def __init__(self, path: str, max_bytes: int | None = None) -> None:
        import tarfile

        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.file: IO[bytes] | None = None
        self._read_lock = _thread.allocate_lock()
        if os.path.isdir(path):
            return
        from nsprim.images.targuard import check_archive

        try:
            self.file = open(path, "rb")
            head = self.file.read(6)
            self.file.seek(0)
            plain: Any
            if head.startswith(b"\x1f\x8b"):
                import gzip

                plain = gzip.GzipFile(fileobj=self.file, mode="rb")
            elif head.startswith(b"BZh"):
                import bz2

                plain = bz2.BZ2File(self.file)
            elif head.startswith(b"\xfd7zXZ\x00"):
                import lzma

                plain = lzma.LZMAFile(self.file)
            else:
                plain = self.file
            check_archive(plain, path, max_members=_MAX_ARCHIVE_MEMBERS,
                          max_bytes=max_bytes)
            self.file.seek(0)
            self.tar = tarfile.open(fileobj=self.file, mode="r:*")
            self.names = {os.path.normpath(n): n for n in self.tar.getnames()}
        except LayerError:
            self.close()
            raise
        except (OSError, EOFError, tarfile.TarError) as e:
            self.close()
            raise LayerError(f"cannot read {path}: {e}") from None

    def _member(self, name: str) -> str | None:
        n = os.path.normpath(name)
        if n.startswith("..") or os.path.isabs(n):
            raise LayerError(f"path {name!r} leaves the archive")
        return self.names.get(n)

    def _local(self, name: str) -> str:
        n = os.path.normpath(name)
        if n.startswith("..") or os.path.isabs(n):
            raise LayerError(f"path {name!r} leaves the layout")
        return os.path.join(self.path, n)

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return os.path.exists(self._local(name))
        return self._member(name) is not None

    def size(self, name: str) -> int:
        """How many bytes `name` has (a layer may be no longer)."""
        if self.tar is None:
            try:
                return os.stat(self._local(name)).st_size
            except OSError as e:
                raise LayerError(f"{self.path}: cannot read {name}: {e.strerror}") from None
        m = self._member(name)
        if m is None:
            raise LayerError(f"{self.path}: missing {name}")
        return self.tar.getmember(m).size

    def open(self, name: str) -> IO[bytes]:
        import tarfile

        if self.tar is None:
            try:
                return open(self._local(name), "rb")
            except OSError as e:
                raise LayerError(f"{self.path}: cannot read {name}: {e.strerror}") from None
        m = self._member(name)
        if m is None:
            raise LayerError(f"{self.path}: missing {name}")
        try:
            f = self.tar.extractfile(m)
        except (KeyError, tarfile.TarError) as e:
            raise LayerError(f"{self.path}: cannot read {name}: {e}") from None
        if f is None:
            raise LayerError(f"{self.path}: {name} is not a file")
        # every member reads the archive's one file object (seek, then
        # read): layers imported by concurrent threads take turns
        return _LockedMember(f, self._read_lock)  # type: ignore[return-value]

    def read(self, name: str, limit: int = _MAX_JSON) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LayerError(f"{self.path}: {name} is larger than {limit} bytes")
        return data

    def blob(self, digest: str) -> bytes:
        data = self.read("blobs/sha256/" + _hex(digest))
        if "sha256:" + _sha256_hex(data) != digest:
            raise LayerError(f"blob digest mismatch: {digest}")
        return data

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None
        if self.file is not None:
            self.file.close()
            self.file = None


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
    lock = _thread.allocate_lock()

    def report(layer: str, status: str) -> None:
        with lock:
            out.write(f"{layer}: {status}\n")
            out.flush()
    return report



class _LockedMember(io.RawIOBase):
    """A member of an archive whose reads hold the archive's lock."""

    def __init__(self, f: IO[bytes], lock: Any) -> None:
        self._f = f
        self._lock = lock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self._lock:
            return self._f.readinto(b)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self._f.close()
        super().close()
