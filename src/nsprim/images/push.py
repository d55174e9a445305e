"""``nsprim push`` (OCI distribution), ``login`` and ``logout``.

For each blob: HEAD it and skip it when the registry has it; else try a
cross-repository mount from a repository of the same registry that nsprim
pushed it to before (when the registry does not mount, it answers with an
upload session); else a monolithic upload (POST, then PUT with the digest).
Then the manifest: Docker schema 2 by default, OCI on request.  Auth is the
pull client's (basic, or a bearer token from the challenge, credentials from
``~/.docker/config.json``, which ``login`` writes).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from nsprim.images.archive import LayerBlob, export_config, layer_blob
from nsprim.images.reference import parse_reference
from nsprim.images.registry import RegistryClient, RegistryError
from nsprim.images.store import ImageStore, _hex, default_store

__all__ = ["push", "login", "logout"]

_TIMEOUT = 60
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class _PushClient(RegistryClient):
    def request(self, method: str, url: str, data: Any = None,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)
                ) -> tuple[int, Any]:
        """One request with the pull client's auth; (status, headers)."""
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        here = urllib.parse.urlsplit(self.base)
        there = urllib.parse.urlsplit(url)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            raise RegistryError(f"registry {self.host}: an upload location on another host "
                                f"({there.netloc}) is refused")
        for attempt in range(2):
            req = urllib.request.Request(url, data=data, method=method)
            for k, v in (headers or {}).items():
                req.add_header(k, v)
            self._authorize(req)
            try:
                with self._opener.open(req, timeout=_TIMEOUT) as r:
                    r.read(1 << 16)
                    return r.status, r.headers
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0:
                    self._authenticate(e.headers.get("WWW-Authenticate", ""))
                    e.close()
                    if hasattr(data, "seek"):
                        data.seek(0)
                    continue
                if e.code in ok:
                    e.close()
                    return e.code, e.headers
                body = e.read(2048).decode("utf-8", "replace")
                e.close()
                raise RegistryError(self._describe(e.code, body, there.path)) from None
            except urllib.error.URLError as e:
                raise RegistryError(f"cannot reach registry {self.host}: {e.reason}") from None
            except OSError as e:
                raise RegistryError(f"cannot reach registry {self.host}: {e}") from None
        raise RegistryError(f"registry {self.host}: unauthorized (401)")

    def has_blob(self, digest: str) -> bool:
        code, _ = self.request("HEAD", f"{self.ref.path}/blobs/{digest}", ok=(200, 404))
        return code == 200

    def upload(self, digest: str, size: int, open_data: Callable[[], Any],
               mount_from: list[str]) -> str:
        """Send one blob; 'mounted' or 'pushed'."""
        for repo in mount_from:
            q = urllib.parse.urlencode({"mount": digest, "from": repo})
            code, h = self.request("POST", f"{self.ref.path}/blobs/uploads/?{q}",
                                   data=b"", ok=(201, 202))
            if code == 201:
                return "mounted"
            location = h.get("Location")
            if location:  # not mounted: this session takes the upload
                self._put(location, digest, size, open_data)
                return "pushed"
        code, h = self.request("POST", f"{self.ref.path}/blobs/uploads/", data=b"",
                               ok=(202,))
        location = h.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host}: no upload location for {digest}")
        self._put(location, digest, size, open_data)
        return "pushed"

    def _put(self, location: str, digest: str, size: int, open_data: Callable[[], Any]
             ) -> None:
        url = urllib.parse.urljoin(self.base, location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        with open_data() as f:
            self.request("PUT", url, data=f, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(size)},
                ok=(201,))


def _opener(path: str) -> Callable[[], Any]:
    return lambda: open(path, "rb")


def _pushed_path(store: ImageStore) -> str:
    return os.path.join(store.root, "blobcache", "pushed.json")


def push(name: str, *, format: str = "docker", progress: Callable[[str], None] | None = None,
         store: ImageStore | None = None, insecure: bool | None = None) -> str:
    """Push the local image `name` to its registry; the manifest's digest."""
    import hashlib
    import io

    from nsprim.state import atomic_write

    if format not in ("docker", "oci"):
        raise ValueError(f"invalid format {format!r}: docker or oci")
    store = store or default_store()
    ref = parse_reference(name)
    if ref.digest:
        raise ValueError(f"invalid reference {name!r}: push a tag, not a digest")
    img = store.get(name)
    say = progress or (lambda _line: None)
    say(f"The push refers to repository [{ref.repository}]")
    client = _PushClient(ref, insecure=insecure)
    try:
        with open(_pushed_path(store)) as f:
            pushed: dict[str, list[str]] = json.load(f)
    except (OSError, ValueError):
        pushed = {}
    from concurrent.futures import ThreadPoolExecutor

    # compressing is the slow part of a first push: zlib releases the GIL
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(img.diff_ids)))) as pool:
        blobs = list(pool.map(lambda d: layer_blob(store, d), img.diff_ids))
    config = export_config(img, [b.diff_id for b in blobs])
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    here = f"{ref.domain}/{ref.path}"
    mounts = {b.digest: [r.split("/", 1)[1] for r in pushed.get(b.digest, [])
                         if r.split("/", 1)[0] == ref.domain and r != here][:3] for b in blobs}

    def send(b: LayerBlob) -> str:
        short = _hex(b.digest)[:12]
        if client.has_blob(b.digest):
            return f"{short}: Layer already exists"
        how = client.upload(b.digest, b.size, _opener(b.path), mounts[b.digest])
        return f"{short}: " + (f"Mounted from {mounts[b.digest][0]}" if how == "mounted"
                               else "Pushed")

    def send_config() -> None:
        if not client.has_blob(config_digest):
            client.upload(config_digest, len(config), lambda: io.BytesIO(config), [])

    # the first request settles the auth (a token for push); then the blobs
    # go several at a time: a registry answers each request in turn
    send_config()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for line in pool.map(send, blobs):
            say(line)
    for b in blobs:
        seen = pushed.setdefault(b.digest, [])
        if here not in seen:
            seen.append(here)
    docker = format == "docker"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                   "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "size": b.size,
                    "digest": b.digest} for b in blobs]}, indent=3).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    client.request("PUT", f"{ref.path}/manifests/{ref.tag or 'latest'}", data=manifest,
                   headers={"Content-Type": DOCKER_MANIFEST if docker else OCI_MANIFEST},
                   ok=(201,))
    try:
        atomic_write(_pushed_path(store), json.dumps(pushed).encode(), 0o600)
    except OSError:
        pass
    store._event("push", ref.familiar(), ref.familiar().rsplit(":", 1)[0])
    return digest


def _config_file() -> str:
    d = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return os.path.join(d, "config.json")


def _server_key(server: str) -> str:
    s = server.strip()
    for p in ("https://", "http://"):
        if s.startswith(p):
            s = s[len(p):]
    s = s.rstrip("/")
    if s.endswith("/v1") or s.endswith("/v2"):
        s = s[:-3]
    if s in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return "https://index.docker.io/v1/"
    if not s or "/" in s or any(c.isspace() for c in s):
        raise ValueError(f"invalid registry {server!r}")
    return s


def _read_config() -> dict[str, Any]:
    try:
        with open(_config_file(), "rb") as f:
            data = json.loads(f.read(1 << 20))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except ValueError:
        raise ValueError(f"{_config_file()}: not valid JSON") from None


def _write_config(cfg: dict[str, Any]) -> None:
    from nsprim.state import atomic_write

    path = _config_file()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    atomic_write(path, json.dumps(cfg, indent="\t").encode(), 0o600)


def login(server: str, username: str, password: str, *, check: bool = True) -> None:
    """Check the login against the registry (GET /v2/), then store it in the
    docker config as ``docker login`` does (base64 of USER:PASSWORD)."""
    key = _server_key(server)
    if ":" in username:
        raise ValueError(f"invalid username {username!r}: no ':' allowed")
    entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    cfg = _read_config()
    old = cfg.get("auths")
    if check:
        from nsprim.images.registry import check_login

        check_login("docker.io" if key.startswith("https://index.docker.io") else key,
                    username, password)
    auths = dict(old) if isinstance(old, dict) else {}
    auths[key] = entry
    cfg["auths"] = auths
    _write_config(cfg)


def logout(server: str) -> bool:
    key = _server_key(server)
    cfg = _read_config()
    auths = cfg.get("auths")
    if not isinstance(auths, dict) or key not in auths:
        return False
    del auths[key]
    _write_config(cfg)
    return True
