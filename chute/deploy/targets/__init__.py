"""Where revisions run, behind one interface (one driver per kind of target).

A deploy asks its target to:

1. ``resolve_image`` -- find the image and its digest (nothing runs yet);
2. ``start`` -- run the new revision next to the serving one (podman: on a side
   port; kubernetes: apply, so the rolling update starts);
3. ``check`` / ``probe_url`` -- report the revision's container or rollout
   state, and where to probe it over HTTP;
4. ``switch`` -- send the environment's traffic to it;
5. ``restore`` -- make a previous revision serve again (fast when it still runs);
6. ``retire`` / ``abort`` -- stop a revision that serves no more, or never did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..environments import Environment
from ..health import Check


class TargetError(Exception):
    """The target failed to do what was asked; the message says what and why."""


class ImageNotFound(TargetError):
    """The image does not exist where the target would pull it from."""


@dataclass(frozen=True)
class ResolvedImage:
    ref: str  # as given
    repository: str  # without tag or digest
    digest: str  # sha256:...
    env: dict[str, str] = field(default_factory=dict)  # the image config's Env
    healthcheck: tuple[str, ...] = ()  # the image's HEALTHCHECK test, e.g. ("CMD-SHELL", "wget ...")

    @property
    def by_digest(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Release:
    """One revision to run: the rendered manifests plus what they were made from."""

    project: str
    env: Environment
    revision: int
    image: ResolvedImage
    manifests: list[dict[str, Any]]
    container_port: int
    # The environment's secrets the manifests reference (key -> value), read when the revision
    # is started; never stored, never shown (repr=False). See chute.deploy.manifests.secrets_name.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


class Target(Protocol):
    name: str
    side_by_side: bool  # True: start() leaves the serving revision alone until switch()

    def resolve_image(self, ref: str) -> ResolvedImage: ...

    def start(self, release: Release) -> dict[str, Any]:
        """Run ``release`` without touching the serving revision where possible; return its state."""

    def probe_url(self, release: Release, state: dict[str, Any]) -> str | None:
        """The URL to probe the revision at (None: no HTTP probe on this target)."""

    def check(self, release: Release, state: dict[str, Any]) -> Check:
        """The container (podman) or rollout (kubernetes) state of the revision."""

    def switch(self, release: Release, state: dict[str, Any]) -> None:
        """Send the environment's traffic to this revision."""

    def restore(self, release: Release, state: dict[str, Any]) -> dict[str, Any]:
        """Make an earlier revision serve again; return its (possibly new) state."""

    def retire(self, release: Release, state: dict[str, Any]) -> None:
        """Stop a revision that no longer serves."""

    def abort(self, release: Release, state: dict[str, Any]) -> None:
        """Remove a revision that failed before it served."""


__all__ = ["ImageNotFound", "Release", "ResolvedImage", "Target", "TargetError"]
