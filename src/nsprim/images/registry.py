"""A client of the OCI distribution API (registry v2): manifests, indexes,
blobs; bearer-token and basic auth; redirects.

Plain HTTP is used only for registries on loopback (docker's default
insecure-registry rule) or ones listed in ``NSPRIM_INSECURE_REGISTRIES``
(comma-separated host[:port]).  Credentials come from the docker client's
config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import platform
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from nsprim.images.reference import Reference

__all__ = ["RegistryClient", "RegistryError", "Manifest", "MEDIA_TYPES", "host_platform"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
_TIMEOUT = 60


class RegistryError(OSError):
    """The registry refused, failed, or sent something that does not verify."""


@dataclass
class Manifest:
    digest: str
    media_type: str
    body: bytes
    data: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST) or "manifests" in self.data


def host_platform() -> tuple[str, str, str | None]:
    """(os, architecture, variant) in OCI's words for this machine."""
    m = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    variant = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8", "arm64": "v8"}.get(m)
    return "linux", arch, variant


def _is_loopback(host: str) -> bool:
    h = host
    if h.startswith("["):
        h = h[1:h.index("]")] if "]" in h else h
    else:
        h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _docker_auth(host: str) -> tuple[str, str] | None:
    cfg_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        with open(os.path.join(cfg_dir, "config.json")) as f:
            auths = json.load(f).get("auths", {})
    except (OSError, ValueError):
        return None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == "registry-1.docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
    for k in keys:
        entry = auths.get(k)
        if isinstance(entry, dict) and entry.get("auth"):
            user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, pw
    return None


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping Authorization when the host changes (blob
    storage behind a registry must not see our token)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != \
                urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


class RegistryClient:
    """One registry host, one repository at a time; keeps the token it got."""

    def __init__(self, ref: Reference, *, insecure: bool | None = None) -> None:
        self.ref = ref
        self.host = ref.registry_host
        allowed = {h.strip() for h in os.environ.get("NSPRIM_INSECURE_REGISTRIES", "").split(",")
                   if h.strip()}
        if insecure is None:
            insecure = _is_loopback(self.host) or self.host in allowed
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{self.host}/v2/"
        self._token: str | None = None
        self._basic = _docker_auth(self.host)
        self._use_basic = False
        self._opener = urllib.request.build_opener(_NoRedirectAuth())

    # -------------------------------------------------------------- http
    def _open(self, path: str, accept: str | None = None, method: str = "GET") -> Any:
        url = self.base + path
        for attempt in range(2):
            req = urllib.request.Request(url, method=method)
            if accept:
                req.add_header("Accept", accept)
            if self._token:
                req.add_header("Authorization", f"Bearer {self._token}")
            elif self._use_basic and self._basic is not None:
                u, p = self._basic
                req.add_header("Authorization",
                               "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode())
            try:
                return self._opener.open(req, timeout=_TIMEOUT)
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0:
                    self._authenticate(e.headers.get("WWW-Authenticate", ""))
                    e.close()
                    continue
                body = e.read(2048).decode("utf-8", "replace")
                e.close()
                raise RegistryError(self._describe(e.code, body, path)) from None
            except urllib.error.URLError as e:
                raise RegistryError(f"cannot reach registry {self.host}: {e.reason}") from None
            except OSError as e:
                raise RegistryError(f"cannot reach registry {self.host}: {e}") from None
        raise RegistryError(f"registry {self.host}: unauthorized (401) for {path}")

    def _describe(self, code: int, body: str, path: str) -> str:
        try:
            errs = json.loads(body).get("errors", [])
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs)
        except ValueError:
            detail = body.strip()[:200]
        what = {401: "unauthorized", 403: "denied", 404: "not found"}.get(code, f"HTTP {code}")
        return f"registry {self.host}: {what} ({self.ref.path}: {detail or path})"

    def _authenticate(self, challenge: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if self._basic is None:
                raise RegistryError(f"registry {self.host} wants a login (no credentials for "
                                    "it in the docker config)")
            self._token = None
            self._use_basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"registry {self.host}: unsupported auth challenge "
                                f"{challenge!r}")
        q = {"service": params.get("service", ""),
             "scope": params.get("scope") or f"repository:{self.ref.path}:pull"}
        url = params["realm"] + "?" + urllib.parse.urlencode({k: v for k, v in q.items() if v})
        req = urllib.request.Request(url)
        if self._basic is not None:
            u, p = self._basic
            req.add_header("Authorization",
                           "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode())
        try:
            with self._opener.open(req, timeout=_TIMEOUT) as r:
                data = json.load(r)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RegistryError(f"registry {self.host}: token request failed: {e}") from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryError(f"registry {self.host}: token service returned no token")
        self._token = token

    # --------------------------------------------------------- manifests
    def manifest(self, reference: str | None = None) -> Manifest:
        """The manifest (or index) for a tag or digest, digest-verified."""
        refname = reference or self.ref.reference
        with self._open(f"{self.ref.path}/manifests/{refname}", accept=", ".join(MEDIA_TYPES)) as r:
            body = r.read(8 << 20)
            ctype = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = r.headers.get("Docker-Content-Digest")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if refname.startswith("sha256:") and refname != digest:
            raise RegistryError(f"manifest digest mismatch for {self.ref}: asked {refname}, "
                                f"got {digest}")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise RegistryError(f"manifest digest mismatch for {self.ref}: the registry says "
                                f"{header_digest}, the content is {digest}")
        try:
            data = json.loads(body)
        except ValueError:
            raise RegistryError(f"registry {self.host}: manifest of {self.ref} is not JSON") \
                from None
        media = data.get("mediaType") or ctype
        if data.get("schemaVersion") == 1:
            raise RegistryError(f"{self.ref}: schema 1 manifests are not supported")
        return Manifest(digest, media, body, data)

    def resolve(self, want: tuple[str, str, str | None] | None = None) -> tuple[Manifest, str]:
        """The image manifest for this reference on platform `want` (default:
        this host), going through an index if there is one.  Returns
        (manifest, digest of what the reference named)."""
        top = self.manifest()
        if not top.is_index:
            return top, top.digest
        os_, arch, variant = want or host_platform()
        candidates = []
        for d in top.data.get("manifests", []):
            p = d.get("platform", {})
            if p.get("os") == os_ and p.get("architecture") == arch:
                candidates.append(d)
        if variant and len(candidates) > 1:
            exact = [d for d in candidates if d.get("platform", {}).get("variant") == variant]
            candidates = exact or candidates
        if not candidates:
            have = ", ".join(f"{d.get('platform', {}).get('os')}/"
                             f"{d.get('platform', {}).get('architecture')}"
                             for d in top.data.get("manifests", []))
            raise RegistryError(f"{self.ref}: no image for {os_}/{arch} (has: {have})")
        m = self.manifest(candidates[0]["digest"])
        return m, top.digest

    # ------------------------------------------------------------- blobs
    def blob(self, digest: str) -> IO[bytes]:
        """A stream of the blob; the caller verifies its digest."""
        return self._open(f"{self.ref.path}/blobs/{digest}")  # type: ignore[no-any-return]

    def blob_bytes(self, digest: str, limit: int = 32 << 20) -> bytes:
        with self.blob(digest) as r:
            data = r.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"blob digest mismatch: {digest}")
        return data


def iter_chunks(f: IO[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    while True:
        b = f.read(size)
        if not b:
            return
        yield b
