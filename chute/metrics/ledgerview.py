"""Reading the ledger as deployments, patches and deliveries (docs/ledger.md, "How the pieces link").

The rules, used by the metrics, the traces and the Prometheus collector alike:

- A **patch** is a change number (Gerrit change, MR, PR) in a project, or a
  plainly pushed commit. Its *first upload* is its earliest ``change.uploaded``;
  its *merge* is its first ``change.merged`` (whose ``commit`` is the commit that
  landed). A pushed commit is uploaded and merged at its ``change.pushed``.
- A **deployment** is a ``deploy.finished``; the commits it shipped are its
  ``data.commits`` (also in the derived ``deploy_commits`` table, one row each).
- A patch is **delivered** to an environment by the first *healthy*
  ``deploy.finished`` there whose commits contain the patch's merged commit (or,
  when no merge was recorded, one of its patchset commits). Later deploys that
  ship it again do not count again.

The hot queries return times as epoch seconds (floats, see ``sql.epoch``): at a
million events, building a datetime per row would cost more than the query.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from chute.store import Database, DeployResult, Event, PatchDelivery
from chute.store.derived import shipped_commits

from .sql import epoch, to_epoch

ROLLBACK_KINDS = frozenset({"rollback", "auto-rollback"})
FINISHED_OUTCOMES = frozenset({"healthy", "failed", "rolled-back"})
FAILED_OUTCOMES = frozenset({"failed", "rolled-back"})
PATCH_KINDS = ("change.merged", "change.pushed")
_CHUNK = 500  # values per IN (...) list

E = Event.__table__.c
DR = DeployResult.__table__.c
PD = PatchDelivery.__table__.c


@contextmanager
def reading(db: Database | Session) -> Iterator[Session]:
    """A read-only session from a Database, or the caller's own session."""
    if isinstance(db, Session):
        yield db
        return
    with db.read_session() as s:
        yield s


def chunks(values: Iterable[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for v in values:
        batch.append(v)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------ deployments (light rows)
@dataclass(slots=True)
class DeployRow:
    """A ``deploy.finished`` without its commit list; ``at`` in epoch seconds."""

    id: int
    project: str
    revision: int | None
    at: float
    outcome: str
    kind: str

    @property
    def healthy(self) -> bool:
        return self.outcome == "healthy"

    @property
    def is_deployment(self) -> bool:
        """A forward rollout (not a rollback) that finished: what the metrics count."""
        return self.kind not in ROLLBACK_KINDS and self.outcome in FINISHED_OUTCOMES


def deploy_rows(s: Session, *, project: str | None, environment: str, since: datetime | None = None,
                until: datetime | None = None, max_id: int | None = None) -> list[DeployRow]:
    """The ``deploy.finished`` events of ``environment`` (all kinds and outcomes) in [since, until),
    oldest first (read from ``deploy_results``; ``id`` is the event id)."""
    q = select(DR.event_id, DR.project, DR.revision, DR.at, DR.outcome, DR.kind).where(
        DR.environment == environment)
    if project is not None:
        q = q.where(DR.project == project)
    if since is not None:
        q = q.where(DR.at >= to_epoch(since))
    if until is not None:
        q = q.where(DR.at < to_epoch(until))
    if max_id is not None:
        q = q.where(DR.event_id <= max_id)
    return [DeployRow(*r) for r in s.execute(q.order_by(DR.at, DR.event_id))]


def deploying_projects(s: Session, *, project: str | None, environment: str, until: datetime) -> set[str]:
    """Projects with at least one deployment to ``environment`` before ``until``."""
    q = select(DR.project).where(DR.environment == environment, DR.at < to_epoch(until))
    if project is not None:
        q = q.where(DR.project == project)
    return set(s.scalars(q.distinct()))


# ------------------------------------------------------------------ deliveries
@dataclass(slots=True)
class Delivered:
    """A patch's first healthy deploy in one environment; times in epoch seconds."""

    delivered_at: float
    merged_at: float | None
    uploaded_at: float | None
    revert: bool


def delivered_patches(s: Session, *, project: str | None, environment: str, since: datetime | None = None,
                      until: datetime | None = None, max_event_id: int | None = None) -> list[Delivered]:
    """Patches whose first healthy deploy to ``environment`` is in [since, until), each once
    (read from ``patch_deliveries``: one row per patch and environment)."""
    q = select(PD.delivered_at, PD.merged_at, PD.uploaded_at, PD.revert).where(PD.environment == environment)
    if project is not None:
        q = q.where(PD.project == project)
    if since is not None:
        q = q.where(PD.delivered_at >= to_epoch(since))
    if until is not None:
        q = q.where(PD.delivered_at < to_epoch(until))
    if max_event_id is not None:
        q = q.where(PD.event_id <= max_event_id)
    return [Delivered(*r) for r in s.execute(q)]


def in_flight_count(s: Session, *, project: str | None, environment: str, since: datetime | None,
                    until: datetime, deploying: set[str]) -> int:
    """Patches merged (or pushed) in [since, until) that no healthy deploy of ``environment``
    shipped by ``until``, in projects that deploy to that environment at all: the merges of the
    period (an index-only count) minus the deliveries of those merges."""
    projects = [project] if project is not None else sorted(deploying)
    if not deploying or (project is not None and project not in deploying):
        return 0
    merged = select(func.count()).where(E.kind.in_(PATCH_KINDS), E.project.in_(projects), E.at < until)
    delivered = select(func.count()).where(PD.environment == environment, PD.project.in_(projects),
                                           PD.merged_at.is_not(None), PD.merged_at < to_epoch(until),
                                           PD.delivered_at < to_epoch(until))
    if since is not None:
        merged = merged.where(E.at >= since)
        delivered = delivered.where(PD.merged_at >= to_epoch(since))
    return max(0, int(s.execute(merged).scalar_one()) - int(s.execute(delivered).scalar_one()))


# ------------------------------------------------------------------ whole deployments (traces)
@dataclass
class Deploy:
    """One ``deploy.finished`` event with its commits (for traces: few rows)."""

    id: int
    project: str
    environment: str
    revision: int | None
    at: datetime
    outcome: str
    kind: str
    commits: list[str]
    image_digest: str = ""
    commit: str = ""
    previous_revision: int | None = None
    reason: str = ""

    @property
    def healthy(self) -> bool:
        return self.outcome == "healthy"


def load_deploys(s: Session, *, project: str, environment: str | None = None, until: datetime | None = None,
                 shipping: str | None = None) -> list[Deploy]:
    """``deploy.finished`` events of a project, oldest first; ``shipping`` keeps the ones whose
    commits contain that commit, or a commit starting with it (a text pre-filter in SQL, then an
    exact check in Python: a trace reads one project's deploys, not the whole ledger)."""
    q = select(E.id, E.project, E.environment, E.revision, E.at, E.outcome, E.data, E.image_digest, E.commit).where(
        E.kind == "deploy.finished", E.project == project)
    if environment is not None:
        q = q.where(E.environment == environment)
    if until is not None:
        q = q.where(E.at < until)
    if shipping is not None:
        q = q.where(cast(E.data, String).contains(shipping, autoescape=True))
    out = []
    for r in s.execute(q.order_by(E.at, E.id)):
        data = r.data or {}
        out.append(Deploy(r.id, r.project, r.environment, r.revision, r.at, r.outcome,
                          str(data.get("kind") or "deploy"), shipped_commits(data), r.image_digest, r.commit,
                          data.get("previous_revision"), str(data.get("reason") or "")))
    if shipping is not None:
        out = [d for d in out if any(c.startswith(shipping) for c in d.commits)]
    return out


# ------------------------------------------------------------------ rollbacks
@dataclass(slots=True)
class Rollback:
    kind: str  # rollback.started | rollback.finished
    project: str
    at: float
    outcome: str
    from_revision: int | None
    to_revision: int | None
    automatic: bool
    time_to_restore: float | None


def load_rollbacks(s: Session, *, project: str | None, environment: str,
                   until: datetime | None = None) -> list[Rollback]:
    q = select(E.kind, E.project, epoch(E.at), E.outcome, E.data).where(
        E.kind.in_(("rollback.started", "rollback.finished")), E.environment == environment)
    if project is not None:
        q = q.where(E.project == project)
    if until is not None:
        q = q.where(E.at < until)
    out = []
    for kind, proj, at, outcome, data in s.execute(q.order_by(E.at, E.id)):
        data = data or {}
        ttr = data.get("time_to_restore")
        out.append(Rollback(kind, proj, at, outcome, _int(data.get("from_revision")), _int(data.get("to_revision")),
                            bool(data.get("automatic")), float(ttr) if isinstance(ttr, int | float) else None))
    return out


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def deploy_started_times(s: Session, *, project: str | None, environment: str,
                         keys: set[tuple[str, int | None]]) -> dict[tuple[str, int | None], float]:
    """(project, revision) -> epoch time of the matching ``deploy.started`` (the first one)."""
    out: dict[tuple[str, int | None], float] = {}
    revisions = sorted({r for _, r in keys if r is not None})
    for batch in chunks(revisions):
        q = select(E.project, E.revision, epoch(E.at)).where(
            E.kind == "deploy.started", E.environment == environment, E.revision.in_(batch))
        if project is not None:
            q = q.where(E.project == project)
        for proj, rev, at in s.execute(q.order_by(E.id)):
            if (proj, rev) in keys:
                out.setdefault((proj, rev), at)
    return out
