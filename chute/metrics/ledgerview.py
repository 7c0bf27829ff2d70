"""Reading the ledger as deployments, patches and deliveries (docs/ledger.md, "How the pieces link").

Everything here is a query on the ``events`` table plus a little Python; there
is no other source. The rules, used by both the metrics and the traces:

- A **patch** is a change number (Gerrit change, MR, PR) in a project, or a
  plainly pushed commit. Its *first upload* is its earliest ``change.uploaded``;
  its *merge* is its first ``change.merged`` (whose ``commit`` is the commit that
  landed). A pushed commit is uploaded and merged at its ``change.pushed``.
- A **deployment** is a ``deploy.finished``; the commits it shipped are its
  ``data.commits``.
- A patch is **delivered** to an environment by the first *healthy*
  ``deploy.finished`` there whose commits contain the patch's merged commit (or,
  when no merge was recorded, one of its patchset commits). Later deploys that
  ship it again do not count again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from chute.store import Database, Event

ROLLBACK_KINDS = frozenset({"rollback", "auto-rollback"})
FINISHED_OUTCOMES = frozenset({"healthy", "failed", "rolled-back"})
FAILED_OUTCOMES = frozenset({"failed", "rolled-back"})
PATCH_KINDS = ("change.merged", "change.pushed")
_CHUNK = 500  # values per IN (...) list


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


# ------------------------------------------------------------------ deployments
@dataclass
class Deploy:
    """One ``deploy.finished`` event."""

    id: int
    project: str
    environment: str
    revision: int | None
    at: datetime
    outcome: str
    kind: str  # deploy | rollback | auto-rollback
    commits: list[str]
    image_digest: str = ""
    commit: str = ""
    previous_revision: int | None = None
    reason: str = ""

    @property
    def healthy(self) -> bool:
        return self.outcome == "healthy"

    @property
    def is_deployment(self) -> bool:
        """Counts as a deployment: a forward rollout (not a rollback) that finished."""
        return self.kind not in ROLLBACK_KINDS and self.outcome in FINISHED_OUTCOMES


def _deploy(row: Any) -> Deploy:
    data = row.data or {}
    commits = data.get("commits") or []
    return Deploy(id=row.id, project=row.project, environment=row.environment, revision=row.revision,
                  at=row.at, outcome=row.outcome, kind=str(data.get("kind") or "deploy"),
                  commits=[str(c) for c in commits if c] if isinstance(commits, list) else [],
                  image_digest=row.image_digest, commit=row.commit,
                  previous_revision=data.get("previous_revision"), reason=str(data.get("reason") or ""))


_DEPLOY_COLS = (Event.id, Event.project, Event.environment, Event.revision, Event.at, Event.outcome,
                Event.data, Event.image_digest, Event.commit)


def load_deploys(s: Session, *, project: str | None, environment: str | None,
                 until: datetime | None = None, containing: str | None = None) -> list[Deploy]:
    """``deploy.finished`` events (every kind and outcome), oldest first.

    ``containing`` keeps only deploys whose commits include that commit, or a commit
    starting with it when it is shorter than a full sha (a text pre-filter in SQL, then
    an exact check).
    """
    q = select(*_DEPLOY_COLS).where(Event.kind == "deploy.finished")
    if project is not None:
        q = q.where(Event.project == project)
    if environment is not None:
        q = q.where(Event.environment == environment)
    if until is not None:
        q = q.where(Event.at < until)
    if containing is not None:
        q = q.where(cast(Event.data, String).contains(containing, autoescape=True))
    out = [_deploy(r) for r in s.execute(q.order_by(Event.at, Event.id))]
    if containing is not None:
        out = [d for d in out if any(c.startswith(containing) for c in d.commits)]
    return out


# ------------------------------------------------------------------ patches
@dataclass
class Patch:
    project: str
    change: str  # "" for a plainly pushed commit
    commit: str  # the merged (or pushed) commit; a patchset commit when no merge was recorded
    title: str = ""
    uploaded_at: datetime | None = None
    merged_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Identity: the change number, or the commit for a plain push."""
        return (self.project, self.change) if self.change else (self.project, "@" + self.commit)

    @property
    def is_revert(self) -> bool:
        return self.title.startswith('Revert "') or self.title.startswith("Revert '")


@dataclass
class Patches:
    """Patches by (project, commit), with the first upload time of every change."""

    by_commit: dict[tuple[str, str], Patch] = field(default_factory=dict)

    def get(self, project: str, commit: str) -> Patch | None:
        return self.by_commit.get((project, commit))

    def unique(self) -> list[Patch]:
        seen: dict[tuple[str, str], Patch] = {}
        for p in self.by_commit.values():
            seen.setdefault(p.key, p)
        return list(seen.values())


def first_uploads(s: Session, *, project: str | None, until: datetime | None = None,
                  changes: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], datetime]:
    """(project, change) -> time of the change's first ``change.uploaded``."""
    base = select(Event.project, Event.change, func.min(Event.at)).where(
        Event.kind == "change.uploaded", Event.change != "")
    if until is not None:
        base = base.where(Event.at < until)
    out: dict[tuple[str, str], datetime] = {}
    if changes is None:
        q = base.where(Event.project == project) if project is not None else base
        for p, c, at in s.execute(q.group_by(Event.project, Event.change)):
            out[(p, c)] = at
        return out
    by_project: dict[str, set[str]] = {}
    for p, c in changes:
        if c:
            by_project.setdefault(p, set()).add(c)
    for p, numbers in by_project.items():
        for batch in chunks(sorted(numbers)):
            q = base.where(Event.project == p, Event.change.in_(batch)).group_by(Event.project, Event.change)
            for pp, c, at in s.execute(q):
                out[(pp, c)] = at
    return out


def load_patches(s: Session, *, project: str | None, until: datetime | None = None) -> Patches:
    """Every merged or pushed patch recorded before ``until``."""
    title = Event.data["title"].as_string()
    q = select(Event.project, Event.change, Event.commit, Event.at, title).where(Event.kind.in_(PATCH_KINDS))
    if project is not None:
        q = q.where(Event.project == project)
    if until is not None:
        q = q.where(Event.at < until)
    uploads = first_uploads(s, project=project, until=until)
    patches = Patches()
    seen_changes: set[tuple[str, str]] = set()
    for proj, change, commit, at, ttl in s.execute(q.order_by(Event.id)):
        if not commit or (proj, commit) in patches.by_commit:
            continue
        if change:
            if (proj, change) in seen_changes:
                continue  # merged twice (e.g. re-recorded): the first merge counts
            seen_changes.add((proj, change))
            up = uploads.get((proj, change))
        else:
            up = at
        patches.by_commit[(proj, commit)] = Patch(proj, change, commit, ttl or "", up, at)
    return patches


def add_patchset_commits(s: Session, patches: Patches, wanted: set[tuple[str, str]],
                         until: datetime | None = None) -> None:
    """For shipped commits no merge or push explains, look for a patchset with that commit."""
    missing = {pc for pc in wanted if pc not in patches.by_commit}
    if not missing:
        return
    by_project: dict[str, set[str]] = {}
    for p, c in missing:
        by_project.setdefault(p, set()).add(c)
    title = Event.data["title"].as_string()
    found: list[tuple[str, str, str, str]] = []
    for p, commits in by_project.items():
        for batch in chunks(sorted(commits)):
            q = select(Event.project, Event.change, Event.commit, title).where(
                Event.kind == "change.uploaded", Event.project == p, Event.commit.in_(batch), Event.change != "")
            if until is not None:
                q = q.where(Event.at < until)
            found.extend(tuple(r) for r in s.execute(q.order_by(Event.id)))
    if not found:
        return
    # A change already known by its merge keeps that identity; mapping the patchset commit to it
    # as well makes sure the patch still counts once.
    known = {p.key: p for p in patches.by_commit.values()}
    uploads = first_uploads(s, project=None, until=until, changes={(p, c) for p, c, _, _ in found})
    for proj, change, commit, ttl in found:
        if (proj, commit) in patches.by_commit:
            continue
        patch = known.get((proj, change)) or Patch(proj, change, commit, ttl or "", uploads.get((proj, change)), None)
        known[patch.key] = patch
        patches.by_commit[(proj, commit)] = patch


@dataclass
class Delivery:
    patch: Patch
    deploy: Deploy


def deliveries(deploys: list[Deploy], patches: Patches) -> dict[tuple[str, str], Delivery]:
    """Patch key -> its first healthy deploy (``deploys`` oldest first, one environment)."""
    out: dict[tuple[str, str], Delivery] = {}
    for d in deploys:
        if not d.healthy:
            continue
        for c in d.commits:
            p = patches.get(d.project, c)
            if p is not None and p.key not in out:
                out[p.key] = Delivery(p, d)
    return out


# ------------------------------------------------------------------ rollbacks
@dataclass
class Rollback:
    kind: str  # rollback.started | rollback.finished
    project: str
    environment: str
    at: datetime
    outcome: str
    from_revision: int | None
    to_revision: int | None
    automatic: bool
    time_to_restore: float | None


def load_rollbacks(s: Session, *, project: str | None, environment: str | None,
                   until: datetime | None = None) -> list[Rollback]:
    q = select(Event.kind, Event.project, Event.environment, Event.at, Event.outcome, Event.data).where(
        Event.kind.in_(("rollback.started", "rollback.finished")))
    if project is not None:
        q = q.where(Event.project == project)
    if environment is not None:
        q = q.where(Event.environment == environment)
    if until is not None:
        q = q.where(Event.at < until)
    out = []
    for kind, proj, env, at, outcome, data in s.execute(q.order_by(Event.at, Event.id)):
        data = data or {}
        ttr = data.get("time_to_restore")
        out.append(Rollback(kind, proj, env, at, outcome, _int(data.get("from_revision")),
                            _int(data.get("to_revision")), bool(data.get("automatic")),
                            float(ttr) if isinstance(ttr, int | float) else None))
    return out


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def deploy_started_times(s: Session, *, project: str | None, environment: str,
                         keys: set[tuple[str, int | None]]) -> dict[tuple[str, int | None], datetime]:
    """(project, revision) -> time of the matching ``deploy.started`` (the first one)."""
    out: dict[tuple[str, int | None], datetime] = {}
    if not keys:
        return out
    revisions = sorted({r for _, r in keys if r is not None})
    for batch in chunks(revisions):
        q = select(Event.project, Event.revision, Event.at).where(
            Event.kind == "deploy.started", Event.environment == environment, Event.revision.in_(batch))
        if project is not None:
            q = q.where(Event.project == project)
        for proj, rev, at in s.execute(q.order_by(Event.id)):
            if (proj, rev) in keys:
                out.setdefault((proj, rev), at)
    return out

