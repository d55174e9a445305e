"""Image references, parsed and normalized as docker does.

``busybox`` -> ``docker.io/library/busybox:latest``;
``localhost:5000/app@sha256:...``; ``ghcr.io/o/r:v1``.
"""

from __future__ import annotations

import re

from nsprim._record import record
from nsprim.errors import ConfigError

__all__ = ["Reference", "parse_reference", "DEFAULT_DOMAIN"]

DEFAULT_DOMAIN = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# fullmatch, ASCII only: names end up in URLs, paths and HTTP headers
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)


@record(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def registry_host(self) -> str:
        """Where the registry answers (Docker Hub's API is not at docker.io)."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar(self) -> str:
        """docker's short form: ``busybox:latest``, ``localhost:5000/app:1``."""
        path = self.path
        first = path.split("/", 1)[0]
        if self.domain == DEFAULT_DOMAIN and not ("." in first or ":" in first
                                                  or first == "localhost"):
            if path.startswith("library/") and path.count("/") == 1:
                path = path[len("library/"):]
            s = path
        else:
            s = f"{self.domain}/{path}"
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def parse_reference(text: str) -> Reference:
    """Parse and normalize `text`; ConfigError names the bad reference."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"invalid reference format {text!r}: empty")
    if len(text) > 512 or any(c.isspace() for c in text):
        raise ConfigError(f"invalid reference format {text[:520]!r}")
    if not text.isascii() or not text.isprintable():
        raise ConfigError(f"invalid reference format {text!r}: only printable ASCII "
                          "characters are allowed")
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST_RE.fullmatch(digest):
            raise ConfigError(f"invalid reference format {text!r}: bad digest {digest!r}")
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and len(hexpart) != 64:
            raise ConfigError(f"invalid reference format {text!r}: sha256 digests have "
                              "64 hex digits")
        digest = digest.lower()
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise ConfigError(f"invalid reference format {text!r}: bad tag {tag!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, remainder
        if not _DOMAIN_RE.fullmatch(domain):
            raise ConfigError(f"invalid reference format {text!r}: bad registry {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if path != path.lower() and _PATH_RE.fullmatch(path.lower()):
        raise ConfigError(f"invalid reference format {text!r}: repository name must be "
                          "lowercase")
    if not path or not _PATH_RE.fullmatch(path):
        raise ConfigError(f"invalid reference format {text!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if len(f"{domain}/{path}") > 255:
        raise ConfigError(f"invalid reference format {text!r}: name longer than 255")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)
