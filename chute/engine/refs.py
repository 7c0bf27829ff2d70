"""Image references as chute users write them, including ``http://`` for plain-HTTP registries.

``http://127.0.0.1:15000/demo/app:1`` means: registry ``127.0.0.1:15000``,
spoken to over plain HTTP; the engine is given ``127.0.0.1:15000/demo/app:1``
(and podman ``--tls-verify=false``). Without a scheme, HTTPS is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import EngineUsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

# The grammar of distribution/reference, simplified to what a push target needs.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class ImageRef:
    """A fully qualified ``registry/repository:tag`` with how to reach the registry."""

    original: str
    registry: str  # host[:port], e.g. "127.0.0.1:15000" or "docker.io"
    repository: str  # e.g. "wikimedia/blubber"
    tag: str
    insecure: bool  # plain HTTP (http:// was written)

    @property
    def engine_ref(self) -> str:
        """What podman/docker are given: no scheme."""
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def api_base(self) -> str:
        """Base URL of the registry's HTTP API."""
        host = DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        return f"{'http' if self.insecure else 'https'}://{host}"

    def manifest_url(self, reference: str | None = None) -> str:
        return f"{self.api_base}/v2/{self.repository}/manifests/{reference or self.tag}"


def _looks_like_registry(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_push_ref(ref: str) -> ImageRef:
    """Parse a push target; raise :class:`EngineUsageError` saying what is wrong with it."""
    original = ref
    text = ref.strip()
    insecure = False
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme == "http":
            insecure = True
        elif scheme != "https":
            raise EngineUsageError(
                f"image reference {original!r} has scheme {scheme!r}",
                "write http://host:port/name:tag for a plain-HTTP registry, or leave the scheme out",
            )
    if not text or text.startswith("-") or any(c.isspace() for c in text):
        raise EngineUsageError(f"image reference {original!r} is not valid")
    if "@" in text:
        raise EngineUsageError(
            f"cannot push to {original!r}: it names a digest",
            "push to a tag (name:tag); the registry assigns the digest",
        )
    first, sep, rest = text.partition("/")
    if sep and _looks_like_registry(first):
        registry, remainder = first, rest
        if not _HOST_RE.match(registry):
            raise EngineUsageError(f"image reference {original!r}: {registry!r} is not a valid registry host")
    else:
        if insecure:
            raise EngineUsageError(
                f"image reference {original!r} has http:// but no registry host",
                "write http://host:port/name:tag",
            )
        registry, remainder = DOCKER_HUB, text
        if "/" not in remainder:
            remainder = f"library/{remainder}"
    # The tag is after the last ":" that follows the last "/".
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        repository, tag = remainder[:colon], remainder[colon + 1 :]
    else:
        repository, tag = remainder, "latest"
    if not _REPOSITORY_RE.match(repository):
        raise EngineUsageError(
            f"image reference {original!r}: repository {repository!r} is not valid",
            "use lower-case letters, digits and . _ - separators, with / between path components",
        )
    if not _TAG_RE.match(tag):
        raise EngineUsageError(
            f"image reference {original!r}: tag {tag!r} is not valid",
            "a tag is up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
        )
    return ImageRef(original, registry, repository, tag, insecure)


def strip_scheme(ref: str) -> str:
    """``http://host/name:tag`` -> ``host/name:tag``; other refs unchanged."""
    for scheme in ("http://", "https://"):
        if ref.startswith(scheme):
            return ref[len(scheme) :]
    return ref


def normalize_id(image_id: str) -> str:
    """Engines print IDs with or without ``sha256:``; chute stores the bare hex."""
    return image_id.strip().removeprefix("sha256:")
