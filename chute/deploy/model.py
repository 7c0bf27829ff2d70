"""Deployments as data: one rollout of one image to one environment, with a revision number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

PENDING = "pending"
DEPLOYING = "deploying"
HEALTHY = "healthy"  # serving, and passed its health gates
FAILED = "failed"  # never became (or did not stay) healthy; see restored_revision
ROLLED_BACK = "rolled-back"  # was healthy, then someone rolled back away from it
SUPERSEDED = "superseded"  # was healthy, then a newer revision replaced it
STATUSES = (PENDING, DEPLOYING, HEALTHY, FAILED, ROLLED_BACK, SUPERSEDED)
FINAL_STATUSES = (HEALTHY, FAILED, ROLLED_BACK, SUPERSEDED)

KIND_DEPLOY = "deploy"
KIND_ROLLBACK = "rollback"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deployment:
    """One rollout. Times are UTC; durations are seconds."""

    project: str
    environment: str
    revision: int
    image_ref: str  # as asked for, e.g. localhost/web:1 or registry/web:2026-...-production
    image_digest: str | None  # sha256:..., resolved before anything runs
    status: str = PENDING
    kind: str = KIND_DEPLOY
    actor: str = ""
    reason: str = ""
    source_run: str | None = None
    order_key: str | None = None  # caller's ordering (e.g. build time): older never overwrites newer
    target: str = ""
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    serving_at: datetime | None = None  # when it began to take traffic
    finished_at: datetime | None = None
    error: str | None = None
    rollback_of: int | None = None  # for KIND_ROLLBACK: the revision rolled back away from
    restored_revision: int | None = None  # for a failed one: what serves again
    time_to_restore: float | None = None  # seconds it served badly before the previous one served again
    freeze_override: dict[str, Any] | None = None  # {window, actor, reason} when a freeze was overridden
    manifests: str = ""  # the exact YAML applied, so a rollback re-applies the same thing
    target_state: dict[str, Any] = field(default_factory=dict)  # target bookkeeping (pod, side port, ...)
    health: list[dict[str, Any]] = field(default_factory=list)  # verdicts of the health gate phases

    @property
    def image(self) -> str:
        """The reference deployed: by digest whenever the digest is known."""
        if self.image_digest:
            repo = _repository(self.image_ref)
            return f"{repo}@{self.image_digest}"
        return self.image_ref

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("created_at", "started_at", "serving_at", "finished_at"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


def _repository(ref: str) -> str:
    """``registry:5000/a/b:tag@sha256:..`` -> ``registry:5000/a/b``."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)
    if ":" in last[-1]:
        ref = ref[: ref.rfind(":")]
    return ref
