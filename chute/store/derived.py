"""The ledger's read model: narrow rows derived from events, written in the same transaction.

``ledger.record`` calls :func:`derive_many` for the events it adds:

- ``run.finished``    -> a ``run_results`` row (pipeline, trigger, outcome, rerun_of);
- ``deploy.finished`` -> a ``deploy_results`` row, and for a healthy deploy one
  ``patch_deliveries`` row per patch it ships to that environment for the first time.

The events stay the source of truth: :func:`rebuild` recomputes all three tables
from them (after an import, or when events were written by other means), and
ledger retention deletes derived rows with their events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .models import DeployResult, Event, PatchDelivery, RunResult

if TYPE_CHECKING:
    from .db import Database

PATCH_EVENT_KINDS = ("change.merged", "change.pushed", "change.uploaded")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch(t: datetime | None) -> float | None:
    """Seconds since 1970-01-01 UTC (the read model's time unit)."""
    if t is None:
        return None
    return ((t if t.tzinfo else t.replace(tzinfo=UTC)) - _EPOCH).total_seconds()


def shipped_commits(data: dict[str, Any] | None) -> list[str]:
    """The distinct commits a ``deploy.finished`` lists in ``data.commits``, in order."""
    commits = (data or {}).get("commits") or []
    if not isinstance(commits, list):
        return []
    return list(dict.fromkeys(str(c) for c in commits if c))


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def derive_many(session: Session, events: Iterable[Any]) -> None:
    """Insert the read-model rows of new events (``Recorded`` values, ids set; nothing for most
    kinds), a statement per table."""
    runs: list[dict[str, Any]] = []
    deploys: list[dict[str, Any]] = []
    delivered: list[dict[str, Any]] = []
    for ev in events:
        if ev.kind == "run.finished":
            data = ev.data or {}
            runs.append({"event_id": ev.id, "run_id": ev.run_id, "project": ev.project,
                         "pipeline": str(data.get("pipeline") or "")[:200],
                         "trigger": str(data.get("trigger") or "")[:40], "outcome": ev.outcome, "commit": ev.commit,
                         "rerun_of": _int(data.get("rerun_of")), "at": epoch(ev.at)})
        elif ev.kind == "deploy.finished":
            data = ev.data or {}
            commits = shipped_commits(data)
            deploys.append({"event_id": ev.id, "project": ev.project, "environment": ev.environment,
                            "revision": ev.revision, "kind": str(data.get("kind") or "deploy")[:20],
                            "outcome": ev.outcome, "commits": len(commits), "at": epoch(ev.at)})
            if ev.outcome == "healthy" and commits:
                if delivered:  # an earlier deploy in this batch may have shipped the same patch
                    session.connection().execute(PatchDelivery.__table__.insert(), delivered)
                    delivered = []
                delivered = [{**r, "event_id": ev.id} for r in deliveries(
                    session, project=ev.project, environment=ev.environment, revision=ev.revision, at=ev.at,
                    commits=commits)]
    conn = session.connection() if runs or deploys or delivered else None
    for table, rows in ((RunResult, runs), (DeployResult, deploys), (PatchDelivery, delivered)):
        if rows and conn is not None:
            conn.execute(table.__table__.insert(), rows)


# ------------------------------------------------------------------ patches
@dataclass
class PatchInfo:
    """The patch a commit belongs to (docs/ledger.md, "How the pieces link")."""

    change: str  # "" for a plainly pushed commit
    commit: str
    title: str
    uploaded_at: datetime | None
    merged_at: datetime | None

    @property
    def key(self) -> str:
        return self.change or "@" + self.commit

    @property
    def is_revert(self) -> bool:
        return self.title.startswith('Revert "') or self.title.startswith("Revert '")


def first_upload(session: Session, project: str, change: str) -> datetime | None:
    if not change:
        return None
    return session.scalar(select(func.min(Event.at)).where(
        Event.kind == "change.uploaded", Event.project == project, Event.change == change))


def patch_for_commit(session: Session, project: str, commit: str) -> PatchInfo | None:
    """Its merge (the change), else its push, else the change that uploaded it as a patchset."""
    rows = session.execute(select(Event.kind, Event.change, Event.at, Event.data).where(
        Event.commit == commit, Event.project == project, Event.kind.in_(PATCH_EVENT_KINDS))
        .order_by(Event.id)).all()
    for kind, change, at, data in rows:
        if kind == "change.merged" and change:
            return PatchInfo(change, commit, str((data or {}).get("title") or ""),
                             first_upload(session, project, change), at)
    for kind, change, at, data in rows:
        if kind == "change.pushed" or (kind == "change.merged" and not change):
            return PatchInfo("", commit, str((data or {}).get("title") or ""), at, at)
    for kind, change, _at, data in rows:
        if kind == "change.uploaded" and change:
            return PatchInfo(change, commit, str((data or {}).get("title") or ""),
                             first_upload(session, project, change), None)
    return None


def deliveries(session: Session, *, project: str, environment: str, revision: int | None, at: datetime,
               commits: list[str]) -> list[dict[str, Any]]:
    """The ``patch_deliveries`` rows a healthy deploy of ``commits`` adds: one per patch that no
    earlier healthy deploy of the environment shipped (commits unknown to the ledger are skipped)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for c in commits:
        p = patch_for_commit(session, project, c)
        if p is None or p.key in seen:
            continue
        seen.add(p.key)
        already = session.scalar(select(PatchDelivery.id).where(
            PatchDelivery.project == project, PatchDelivery.environment == environment,
            PatchDelivery.patch == p.key).limit(1))
        if already is None:
            out.append({"project": project, "environment": environment, "patch": p.key, "change": p.change,
                        "commit": c, "title": p.title[:2000], "revert": p.is_revert, "revision": revision,
                        "uploaded_at": epoch(p.uploaded_at), "merged_at": epoch(p.merged_at),
                        "delivered_at": epoch(at)})
    return out


# ------------------------------------------------------------------ rebuild
def rebuild(db: Database, *, batch_size: int = 2000) -> dict[str, int]:
    """Recompute the read model from the events; returns the rows written per table."""
    with db.session() as s:
        for table in (PatchDelivery, RunResult, DeployResult):
            s.execute(delete(table))
    counts = {"run_results": 0, "deploy_results": 0, "patch_deliveries": 0}
    e = Event.__table__.c
    last = 0
    while True:
        with db.session() as s:
            rows = s.execute(select(e.id, e.kind, e.project, e.run_id, e.commit, e.environment, e.revision,
                                    e.outcome, e.at, e.data)
                             .where(e.kind.in_(("run.finished", "deploy.finished")), e.id > last)
                             .order_by(e.id).limit(batch_size)).all()
            runs, deploys = [], []
            for r in rows:
                data = r.data or {}
                if r.kind == "run.finished":
                    runs.append({"event_id": r.id, "run_id": r.run_id, "project": r.project,
                                 "pipeline": str(data.get("pipeline") or "")[:200],
                                 "trigger": str(data.get("trigger") or "")[:40], "outcome": r.outcome,
                                 "commit": r.commit, "rerun_of": _int(data.get("rerun_of")), "at": epoch(r.at)})
                    continue
                commits = shipped_commits(data)
                deploys.append({"event_id": r.id, "project": r.project, "environment": r.environment,
                                "revision": r.revision, "kind": str(data.get("kind") or "deploy")[:20],
                                "outcome": r.outcome, "commits": len(commits), "at": epoch(r.at)})
                if r.outcome == "healthy" and commits:
                    found = deliveries(s, project=r.project, environment=r.environment, revision=r.revision,
                                       at=r.at, commits=commits)
                    if found:  # inserted at once: the next deploy must see them
                        s.execute(PatchDelivery.__table__.insert(), [{**d, "event_id": r.id} for d in found])
                        counts["patch_deliveries"] += len(found)
            if runs:
                s.execute(RunResult.__table__.insert(), runs)
            if deploys:
                s.execute(DeployResult.__table__.insert(), deploys)
            counts["run_results"] += len(runs)
            counts["deploy_results"] += len(deploys)
        if len(rows) < batch_size:
            return counts
        last = rows[-1].id


def delete_for_events(session: Session, event_ids: list[int]) -> None:
    """Remove the read-model rows of events about to be deleted (retention)."""
    for table in (PatchDelivery, RunResult, DeployResult):
        session.execute(delete(table).where(table.event_id.in_(event_ids)))
