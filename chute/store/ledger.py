"""The ledger: append-only events, written in the caller's transaction.

Every state change in chute records its event through :func:`record` with the
same session that makes the change, so the ledger and the state can never
disagree: both commit, or neither does. Rows are only ever inserted (and
deleted by retention); nothing updates them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from . import derived
from .models import Change, Event, Run, utcnow

if TYPE_CHECKING:
    from .db import Database

RETENTION_ENV = "CHUTE_LEDGER_RETENTION_DAYS"
_INSERT = insert(Event.__table__).returning(Event.__table__.c.id)

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


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as ``record`` inserted it: the ``Event`` columns, by the same names, and its id.

    A plain value, not an ORM object: building an instrumented ``Event`` for every insert
    cost more than the insert itself. ``to_json`` accepts it like an ``Event``.
    """

    id: int
    at: datetime
    actor: str
    kind: str
    project: str
    change: str
    patchset: int
    commit: str
    run_id: int | None
    stage: str
    image_digest: str
    environment: str
    revision: int | None
    command: str
    outcome: str
    data: dict[str, Any]


def _values(
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
) -> dict[str, Any]:
    """The column values of one event; identifying fields come from ``run``/``change``."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger event kind {kind!r}")
    if run is not None and run.id is None:
        session.flush()  # the event must carry the new run's id
    if run is not None and change is None:
        change = run.change
    return dict(
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
) -> Recorded:
    """Insert one event in ``session``'s transaction; identifying fields come from ``run``/``change``.

    The row (and its read-model rows, see ``derived``) is inserted at once with a plain INSERT
    rather than through the ORM unit of work, which made ``record`` several times slower. It
    returns the values and the new id (``Recorded``); pass every field as an argument.
    """
    values = _values(session, kind, actor=actor, run=run, change=change, project=project, stage=stage,
                     image_digest=image_digest, environment=environment, revision=revision, command=command,
                     outcome=outcome, commit=commit, at=at, data=data)
    ev = Recorded(id=session.connection().execute(_INSERT, values).scalar_one(), **values)
    derived.derive_many(session, [ev])  # the read model (run/deploy results, patch deliveries), same transaction
    return ev


def record_many(session: Session, events: list[dict[str, Any]]) -> list[Recorded]:
    """Insert several events at once (each a dict of ``record``'s arguments, ``kind`` included),
    in order, with one multi-row INSERT: for code that writes a handful of events together (a
    finished run's stages, images and result), several times faster than one ``record`` each."""
    rows = [_values(session, **e) for e in events]
    if not rows:
        return []
    conn = session.connection()
    table = Event.__table__
    if conn.dialect.name == "postgresql":
        ids = list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    else:
        # SQLite gives the rows of one INSERT consecutive rowids in VALUES order (under the write
        # lock of this transaction); RETURNING's order is not promised, the ids' order is.
        ids = sorted(conn.execute(insert(table).returning(table.c.id), rows).scalars())
    evs = [Recorded(id=i, **r) for i, r in zip(ids, rows, strict=True)]
    derived.derive_many(session, evs)
    return evs


def to_json(ev: Event | Recorded) -> dict[str, Any]:
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


# ------------------------------------------------------------------ retention
def retention_days(environ: Mapping[str, str] = os.environ) -> float | None:
    """Days of ledger to keep, from ``CHUTE_LEDGER_RETENTION_DAYS``; None (unset or empty) keeps
    every event forever. Anything but a positive number is a ValueError that says what to write."""
    raw = environ.get(RETENTION_ENV, "").strip()
    if not raw:
        return None
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days > 0 or days == float("inf"):
        raise ValueError(f"{RETENTION_ENV}={raw!r} is not a positive number of days; set it to e.g. 400, "
                         "or unset it to keep the ledger forever")
    return days


def prune_events(db: Database, older_than: datetime, *, batch_size: int = 5000) -> int:
    """Delete events recorded before ``older_than``, oldest first, ``batch_size`` per transaction
    (so writers never wait long behind a big delete); returns how many were deleted."""
    total = 0
    while True:
        with db.session() as s:
            ids = s.scalars(select(Event.id).where(Event.at < older_than)
                            .order_by(Event.id).limit(batch_size)).all()
            if ids:
                derived.delete_for_events(s, ids)
                s.execute(delete(Event).where(Event.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch_size:
            return total


def apply_retention(db: Database, *, now: datetime | None = None,
                    environ: Mapping[str, str] = os.environ) -> int:
    """Apply ``CHUTE_LEDGER_RETENTION_DAYS`` (nothing when unset); returns the events deleted."""
    days = retention_days(environ)
    if days is None:
        return 0
    return prune_events(db, (now or utcnow()) - timedelta(days=days))

