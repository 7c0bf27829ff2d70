"""The ledger: append-only events, written in the caller's transaction.

Every state change in chute records its event through :func:`record` with the
same session that makes the change, so the ledger and the state can never
disagree: both commit, or neither does. Rows are only ever inserted (and
deleted by retention); nothing updates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .models import Change, Event, Run, utcnow

# The event kinds chute writes (docs/ledger.md documents each one's fields).
KINDS = frozenset({
    "project.added", "project.updated",
    "change.uploaded", "change.merged", "change.pushed", "change.tagged", "change.comment",
    "run.queued", "run.started", "run.requeued", "run.finished", "run.cancel-requested", "run.cancelled",
    "run.rerun", "run.recheck",
    "stage.finished", "image.published",
    "deploy.queued", "deploy.started", "deploy.finished", "deploy.held", "deploy.freeze-override",
    "health.verdict", "rollback.started", "rollback.finished",
    "token.created", "token.revoked", "user.login", "user.logout", "user.created", "user.updated",
    "secret.set", "secret.deleted", "role.granted", "role.revoked",
    "agent.registered", "report.sent",
})


def record(
    session: Session,
    kind: str,
    *,
    actor: str = "",
    run: Run | None = None,
    change: Change | None = None,
    project: str | None = None,
    stage: str = "",
    image_digest: str = "",
    environment: str = "",
    revision: int | None = None,
    command: str = "",
    outcome: str = "",
    commit: str | None = None,
    at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Add one event to ``session``; identifying fields are filled from ``run``/``change``."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger event kind {kind!r}")
    if run is not None and run.id is None:
        session.flush()  # the event must carry the new run's id
    if run is not None and change is None:
        change = run.change
    ev = Event(
        at=at or utcnow(),
        actor=actor,
        kind=kind,
        project=project or (run.project.name if run is not None and run.project is not None
                            else change.project.name if change is not None and change.project is not None
                            else ""),
        change=change.number if change is not None else "",
        patchset=change.patchset if change is not None else 0,
        commit=commit if commit is not None else (change.commit if change is not None else ""),
        run_id=run.id if run is not None else None,
        stage=stage,
        image_digest=image_digest,
        environment=environment,
        revision=revision,
        command=command,
        outcome=outcome,
        data=data or {},
    )
    session.add(ev)
    return ev


def to_json(ev: Event) -> dict[str, Any]:
    """The stable export schema (one JSON object per line in ``chute events export``)."""
    return {
        "id": ev.id,
        "at": ev.at.isoformat().replace("+00:00", "Z"),
        "kind": ev.kind,
        "actor": ev.actor,
        "project": ev.project,
        "change": ev.change or None,
        "patchset": ev.patchset or None,
        "commit": ev.commit or None,
        "run": ev.run_id,
        "stage": ev.stage or None,
        "image_digest": ev.image_digest or None,
        "environment": ev.environment or None,
        "revision": ev.revision,
        "command": ev.command or None,
        "outcome": ev.outcome or None,
        "data": ev.data or {},
    }
