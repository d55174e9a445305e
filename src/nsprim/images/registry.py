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

from nsprim._record import record
from nsprim.images.reference import Reference
from nsprim.images.schema import index_entries, manifest_parts, parse_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["RegistryClient", "RegistryError", "Manifest", "MEDIA_TYPES", "host_platform",
           "basic_auth", "check_login"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
_TIMEOUT = 60


class RegistryError(OSError):
    """The registry refused, failed, or sent something that does not verify."""


@record
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
    """The login the docker config holds for registry `host` (exactly that
    host, as docker matches it), or None."""
    cfg_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        with open(os.path.join(cfg_dir, "config.json"), "rb") as f:
            cfg = json.loads(f.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    auths = cfg.get("auths") if isinstance(cfg, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/",
            f"https://{host}/v2/"]
    if host == "registry-1.docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
    for k in keys:
        entry = auths.get(k)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                text = base64.b64decode(entry["auth"], validate=True).decode()
            except ValueError:
                raise RegistryError(f"docker config: the login for {k!r} is not valid "
                                    "base64 of USER:PASSWORD") from None
            user, _, pw = text.partition(":")
            return user, pw
    return None


def _netloc(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()


_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,16384}", re.ASCII)  # no space, no control char


def _oneline(e: BaseException) -> str:
    return " ".join(str(getattr(e, "reason", None) or e).split())[:300]


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only, dropping Authorization when the
    scheme or host changes (blob storage behind a registry must not see our
    token or login)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        to = urllib.parse.urlsplit(newurl)
        if to.scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl!r} refused "
                                         "(not http or https)", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        here = urllib.parse.urlsplit(req.full_url)
        if new is not None and (to.netloc.lower(), to.scheme.lower()) != \
                (here.netloc.lower(), here.scheme.lower()):
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _http_opener() -> urllib.request.OpenerDirector:
    """An opener that speaks http and https only: no file:, ftp: or data:
    handler, whatever URL a registry's answer names."""
    opener = urllib.request.OpenerDirector()
    for h in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
              urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
              _NoRedirectAuth(), urllib.request.HTTPErrorProcessor(),
              urllib.request.UnknownHandler()):
        opener.add_handler(h)
    return opener


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def check_login(host: str, username: str, password: str) -> None:
    """Try a login against the registry `host`'s ``/v2/`` (basic, or a
    bearer token from the realm it names): what ``nsprim login`` and the
    daemon's ``POST /auth`` ask.  RegistryError if it is refused."""
    from nsprim.images.reference import parse_reference

    if host in ("docker.io", "index.docker.io"):
        host = "registry-1.docker.io"
    ref = parse_reference(f"{host}/library/login-check") if "." in host or ":" in host \
        or host == "localhost" else parse_reference("library/login-check")
    client = RegistryClient(ref)
    client._basic = (username, password)  # these credentials, not the config's
    client._open("").close()


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
        self._opener = _http_opener()

    # -------------------------------------------------------------- http
    def _authorize(self, req: urllib.request.Request) -> None:
        """The credentials this client holds, on a request to its registry:
        the token it got, else (once asked for) the docker config's login.
        The pull and the push clients send them the same way."""
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        elif self._use_basic and self._basic is not None:
            req.add_header("Authorization", basic_auth(*self._basic))

    def _open(self, path: str, accept: str | None = None, method: str = "GET") -> Any:
        url = self.base + path
        for attempt in range(2):
            req = urllib.request.Request(url, method=method)
            if accept:
                req.add_header("Accept", accept)
            self._authorize(req)
            try:
                return self._opener.open(req, timeout=_TIMEOUT)
            except urllib.error.HTTPError as e:
                answered = _netloc(e.geturl() or url)
                if e.code == 401 and answered != self.host.lower():
                    # a redirect target (blob storage) wants a login: what we
                    # hold belongs to self.host only, and its challenge (realm)
                    # is not the registry's to follow
                    e.close()
                    raise RegistryError(f"registry {self.host}: {path} redirected to "
                                        f"{answered}, which asks for credentials; nsprim "
                                        f"sends {self.host}'s only to {self.host}") from None
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
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        errs = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errs, list) and all(isinstance(e, dict) for e in errs):
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs)[:300]
        else:
            detail = body.strip()[:200]
        detail = " ".join(detail.split())
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
        realm = params["realm"]
        parts = urllib.parse.urlsplit(realm)
        # a realm is a web service: never file:, ftp: or anything urllib
        # could also open; https unless the registry itself is plain http
        allowed = ("https",) if self.scheme == "https" else ("https", "http")
        if parts.scheme.lower() not in allowed or not parts.hostname:
            raise RegistryError(f"registry {self.host}: refusing token realm {realm!r} "
                                f"(must be an {' or '.join(allowed)} URL)")
        q = {"service": params.get("service", ""),
             "scope": params.get("scope") or f"repository:{self.ref.path}:pull"}
        url = realm + ("&" if parts.query else "?") + \
            urllib.parse.urlencode({k: v for k, v in q.items() if v})
        req = urllib.request.Request(url)
        if self._basic is not None:
            # the realm this registry named gets the registry's login (docker
            # does the same); the opener drops it if the realm redirects away
            req.add_header("Authorization", basic_auth(*self._basic))
        try:
            with self._opener.open(req, timeout=_TIMEOUT) as r:
                if urllib.parse.urlsplit(r.geturl()).scheme.lower() not in allowed:
                    raise RegistryError(f"registry {self.host}: token realm {realm!r} "
                                        "redirected off http(s)")
                body = r.read(1 << 20)
        except urllib.error.HTTPError as e:
            e.close()
            raise RegistryError(f"registry {self.host}: token request to {realm!r} failed: "
                                f"HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RegistryError(f"registry {self.host}: token request to {realm!r} failed: "
                                f"{_oneline(e)}") from None
        data = parse_object(body, f"registry {self.host}: the token answer from {realm!r}",
                            RegistryError)
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryError(f"registry {self.host}: token service returned no token")
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            raise RegistryError(f"registry {self.host}: the token from {realm!r} is not a "
                                "printable ASCII string")
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
        what = f"registry {self.host}: the manifest of {self.ref}"
        data = parse_object(body, what, RegistryError)
        if data.get("schemaVersion") == 1:
            raise RegistryError(f"{self.ref}: schema 1 manifests are not supported")
        media = data.get("mediaType") or ctype
        if not isinstance(media, str):
            raise RegistryError(f"{what}: 'mediaType' is not a string")
        m = Manifest(digest, media, body, data)
        if m.is_index:
            index_entries(data, what, RegistryError)
        else:
            manifest_parts(data, what, RegistryError)
        return m

    def resolve(self, want: tuple[str, str, str | None] | None = None) -> tuple[Manifest, str]:
        """The image manifest for this reference on platform `want` (default:
        this host), going through an index if there is one.  Returns
        (manifest, digest of what the reference named)."""
        top = self.manifest()
        if not top.is_index:
            return top, top.digest
        os_, arch, variant = want or host_platform()
        candidates = []
        entries = index_entries(top.data, f"the index of {self.ref}", RegistryError)
        for d in entries:
            p = d.get("platform") or {}
            if p.get("os") == os_ and p.get("architecture") == arch:
                candidates.append(d)
        if variant and len(candidates) > 1:
            exact = [d for d in candidates if (d.get("platform") or {}).get("variant") == variant]
            candidates = exact or candidates
        if not candidates:
            have = ", ".join(f"{(d.get('platform') or {}).get('os')}/"
                             f"{(d.get('platform') or {}).get('architecture')}"
                             for d in entries)
            raise RegistryError(f"{self.ref}: no image for {os_}/{arch} (has: {have})")
        m = self.manifest(candidates[0]["digest"])
        if m.is_index:
            raise RegistryError(f"{self.ref}: an index inside an index is not supported")
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
