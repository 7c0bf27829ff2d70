"""The deployment store on SQL: :class:`chute.deploy.DeploymentStore` over ``environments`` and ``deployments``.

Each method is one short transaction, and every state change writes its ledger
events (docs/ledger.md) in that same transaction, so the history and the ledger
never disagree:

* ``record`` of a rollback (it starts at once): ``deploy.started`` + ``rollback.started``;
  of a deployment that overrode a freeze: ``deploy.freeze-override``;
* ``update`` to ``deploying``: ``deploy.started``; new health verdicts: one
  ``health.verdict`` each; to ``healthy``/``failed``: ``deploy.finished`` (with
  ``data.commits``), preceded by ``rollback.started``/``rollback.finished`` when an
  automatic rollback put the previous revision back, and followed by
  ``rollback.finished`` when the deployment was a rollback.

The deploy lock is one conditional UPDATE of the environment row (taken when
free, expired, or already ours), which behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chute.deploy import Deployment
from chute.deploy.model import (
    DEPLOYING,
    FAILED,
    HEALTHY,
    KIND_ROLLBACK,
    PENDING,
    ROLLED_BACK,
    STATUSES,
    SUPERSEDED,
)

from . import ledger
from .db import Database
from .models import Change, Image, Project, Run, utcnow
from .models import Deployment as DeploymentRow
from .models import Environment as EnvironmentRow

# Dataclass fields kept in the row's ``detail`` JSON rather than in columns.
_DETAIL_FIELDS = ("target", "rollback_of", "restored_revision", "freeze_override", "manifests", "target_state",
                  "health", "source_run")
_COLUMN_FIELDS = ("image_ref", "image_digest", "status", "kind", "actor", "reason", "order_key", "created_at",
                  "started_at", "serving_at", "finished_at", "error", "time_to_restore")

CommitsBetween = Callable[[str, str | None, str], list[str]]


class UnknownProject(LookupError):
    """The deployment names a project the server does not know."""


class SqlDeploymentStore:
    """A :class:`chute.deploy.DeploymentStore` on the server's database.

    ``commits_between(project, old, new)`` lists the commits reachable from
    ``new`` but not ``old`` (newest first): the server passes its git mirror's
    ``Mirror.commits_between``. Use :meth:`context` to say which command or
    request the events of the current thread belong to.
    """

    def __init__(self, db: Database, *, commits_between: CommitsBetween | None = None, lease: float = 30.0) -> None:
        self.db = db
        self.commits_between = commits_between
        self._local = threading.local()
        # Locks are leases: held ones are renewed every lease/3 by a thread, so the lock of a
        # server that died frees itself within ``lease`` seconds (the Deployer's ttl is an upper bound).
        self.lease = lease
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: dict[int, str] = {}  # environment id -> holder
        self._held_mutex = threading.Lock()
        self._renewer: threading.Thread | None = None

    # ------------------------------------------------------------------ context for events

    @contextlib.contextmanager
    def context(self, *, command: str = "", actor: str = "", data: dict[str, Any] | None = None) -> Iterator[None]:
        """Events written by this thread inside the block carry ``command`` (and ``actor`` when given)."""
        previous = getattr(self._local, "ctx", None)
        self._local.ctx = {"command": command, "actor": actor, "data": dict(data or {})}
        try:
            yield
        finally:
            self._local.ctx = previous

    def _ctx(self) -> dict[str, Any]:
        return getattr(self._local, "ctx", None) or {"command": "", "actor": "", "data": {}}

    # ------------------------------------------------------------------ rows

    def environment_row(self, s: Session, project: str, environment: str, *,
                        create: bool = True) -> EnvironmentRow | None:
        row = s.scalars(
            select(EnvironmentRow).join(Project, Project.id == EnvironmentRow.project_id)
            .where(Project.name == project, EnvironmentRow.name == environment)
        ).first()
        if row is not None or not create:
            return row
        p = s.scalars(select(Project).where(Project.name == project)).first()
        if p is None:
            raise UnknownProject(f"no project named {project!r}")
        # Two threads may create it at once: the unique (project, name) lets one win.
        try:
            with s.begin_nested():
                row = EnvironmentRow(project_id=p.id, name=environment, config={}, revision_counter=0)
                s.add(row)
                s.flush()
        except IntegrityError:
            row = self.environment_row(s, project, environment, create=False)
        assert row is not None
        return row

    def _row(self, s: Session, env: EnvironmentRow, revision: int) -> DeploymentRow | None:
        return s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == env.id,
                                                     DeploymentRow.revision == revision)).first()

    @staticmethod
    def to_deployment(project: str, environment: str, row: DeploymentRow) -> Deployment:
        detail = dict(row.detail or {})
        return Deployment(
            project=project,
            environment=environment,
            revision=row.revision,
            image_ref=row.image_ref,
            image_digest=row.image_digest or None,
            status=row.status,
            kind=row.kind,
            actor=row.actor,
            reason=row.reason,
            source_run=detail.get("source_run"),
            order_key=row.order_key or None,
            target=detail.get("target", ""),
            created_at=row.created_at,
            started_at=row.started_at,
            serving_at=row.serving_at,
            finished_at=row.finished_at,
            error=row.error or None,
            rollback_of=detail.get("rollback_of"),
            restored_revision=detail.get("restored_revision"),
            time_to_restore=row.time_to_restore,
            freeze_override=detail.get("freeze_override"),
            manifests=detail.get("manifests", ""),
            target_state=dict(detail.get("target_state") or {}),
            health=list(detail.get("health") or []),
        )

    @staticmethod
    def _apply(row: DeploymentRow, changes: dict[str, Any]) -> None:
        detail = dict(row.detail or {})
        for key, value in changes.items():
            if key in _DETAIL_FIELDS:
                detail[key] = value
            elif key == "image_digest":
                row.image_digest = value or ""
            elif key in ("order_key", "error"):
                setattr(row, key, value or "")
            elif key in _COLUMN_FIELDS:
                setattr(row, key, value)
            else:
                raise ValueError(f"a deployment has no field {key!r}")
        row.detail = detail  # a new dict: JSON columns only notice reassignment

    # ------------------------------------------------------------------ the protocol

    def next_revision(self, project: str, environment: str) -> int:
        with self.db.session() as s:
            env = self.environment_row(s, project, environment)
            assert env is not None
            # One UPDATE: the row lock (PostgreSQL) or the write lock (SQLite) makes it atomic.
            s.execute(update(EnvironmentRow).where(EnvironmentRow.id == env.id)
                      .values(revision_counter=EnvironmentRow.revision_counter + 1))
            value = s.scalar(select(EnvironmentRow.revision_counter).where(EnvironmentRow.id == env.id))
            return int(value or 0)

    def record(self, deployment: Deployment) -> None:
        dep = deployment
        with self.db.session() as s:
            env = self.environment_row(s, dep.project, dep.environment)
            assert env is not None
            if self._row(s, env, dep.revision) is not None:
                raise ValueError(f"revision {dep.revision} of {dep.environment} already exists")
            run = self._run_of(s, env, dep)
            row = DeploymentRow(environment_id=env.id, revision=dep.revision, detail={},
                                run_id=run.id if run is not None else None, commit="")
            values = {f.name: getattr(dep, f.name) for f in fields(dep)
                      if f.name in _COLUMN_FIELDS or f.name in _DETAIL_FIELDS}
            self._apply(row, values)
            row.commit = self._commit_of(s, env, dep, run)
            if dep.kind == KIND_ROLLBACK or dep.status == DEPLOYING:
                row.detail = {**row.detail, "previous_revision": self._serving_revision(s, env, dep.revision)}
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise ValueError(f"revision {dep.revision} of {dep.environment} already exists") from None
            if dep.freeze_override:
                fo = dep.freeze_override
                self._event(s, env, row, "deploy.freeze-override", actor=fo.get("actor") or dep.actor,
                            data={"reason": fo.get("reason", ""), "what": fo.get("what", ""),
                                  "kind": dep.kind})
            if dep.status == DEPLOYING:
                self._started(s, env, row)

    def update(self, project: str, environment: str, revision: int, **changes: Any) -> Deployment:
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown status {changes['status']!r}")
        commits: list[str] | None = None
        if changes.get("status") in (HEALTHY, FAILED):
            commits = self._commits_for(project, environment, revision)
        with self.db.session() as s:
            env = self.environment_row(s, project, environment, create=False)
            row = self._row(s, env, revision) if env is not None else None
            if env is None or row is None:
                raise KeyError(f"no revision {revision} of {project}/{environment}")
            before_status = row.status
            before_health = len((row.detail or {}).get("health") or [])
            self._apply(row, changes)
            after = row.status
            if after == DEPLOYING and before_status == PENDING:
                row.detail = {**row.detail, "previous_revision": self._serving_revision(s, env, revision)}
                self._started(s, env, row)
            for verdict in ((row.detail or {}).get("health") or [])[before_health:]:
                self._verdict(s, env, row, verdict)
            if after in (HEALTHY, FAILED) and before_status in (PENDING, DEPLOYING):
                self._finished(s, env, row, commits or [])
            s.flush()
            return self.to_deployment(project, environment, row)

    def get(self, project: str, environment: str, revision: int) -> Deployment | None:
        with self.db.session() as s:
            env = self.environment_row(s, project, environment, create=False)
            row = self._row(s, env, revision) if env is not None else None
            return self.to_deployment(project, environment, row) if row is not None else None

    def _query(self, project: str, environment: str, *conditions: Any, limit: int | None = None) -> list[Deployment]:
        with self.db.session() as s:
            env = self.environment_row(s, project, environment, create=False)
            if env is None:
                return []
            q = (select(DeploymentRow).where(DeploymentRow.environment_id == env.id, *conditions)
                 .order_by(DeploymentRow.revision.desc()))
            if limit:
                q = q.limit(limit)
            return [self.to_deployment(project, environment, r) for r in s.scalars(q)]

    def current(self, project: str, environment: str) -> Deployment | None:
        rows = self._query(project, environment, DeploymentRow.status == HEALTHY, limit=1)
        return rows[0] if rows else None

    def last_healthy(self, project: str, environment: str, before: int | None = None) -> Deployment | None:
        cond = [DeploymentRow.status.in_((HEALTHY, SUPERSEDED))]
        if before is not None:
            cond.append(DeploymentRow.revision < before)
        rows = self._query(project, environment, *cond, limit=1)
        return rows[0] if rows else None

    def list(self, project: str, environment: str, limit: int | None = None) -> list[Deployment]:
        return self._query(project, environment, limit=limit)

    def try_lock(self, project: str, environment: str, owner: str, ttl: float) -> bool:
        holder = f"{self.instance}/{owner}"[:200]
        now = utcnow()
        with self.db.session() as s:
            env = self.environment_row(s, project, environment)
            assert env is not None
            result = s.execute(
                update(EnvironmentRow)
                .where(EnvironmentRow.id == env.id,
                       or_(EnvironmentRow.lock_holder.is_(None), EnvironmentRow.lock_holder == holder,
                           EnvironmentRow.lock_until.is_(None), EnvironmentRow.lock_until < now))
                .values(lock_holder=holder, lock_until=now + timedelta(seconds=min(ttl, self.lease)))
                .execution_options(synchronize_session=False)
            )
            taken = bool(result.rowcount == 1)
            env_id = env.id
        if taken:
            with self._held_mutex:
                self._held[env_id] = holder
                if self._renewer is None or not self._renewer.is_alive():
                    self._renewer = threading.Thread(target=self._renew, name="chute-deploy-locks", daemon=True)
                    self._renewer.start()
        return taken

    def unlock(self, project: str, environment: str, owner: str) -> None:
        holder = f"{self.instance}/{owner}"[:200]
        with self.db.session() as s:
            env = self.environment_row(s, project, environment, create=False)
            if env is None:
                return
            s.execute(update(EnvironmentRow)
                      .where(and_(EnvironmentRow.id == env.id, EnvironmentRow.lock_holder == holder))
                      .values(lock_holder=None, lock_until=None)
                      .execution_options(synchronize_session=False))
            with self._held_mutex:
                if self._held.get(env.id) == holder:
                    del self._held[env.id]

    def _renew(self) -> None:
        """Extend the leases this process holds until it holds none."""
        while True:
            time.sleep(self.lease / 3)
            with self._held_mutex:
                held = dict(self._held)
            if not held:
                with self._held_mutex:
                    if not self._held:
                        self._renewer = None
                        return
                continue
            try:
                with self.db.session() as s:
                    until = utcnow() + timedelta(seconds=self.lease)
                    for env_id, holder in held.items():
                        s.execute(update(EnvironmentRow)
                                  .where(EnvironmentRow.id == env_id, EnvironmentRow.lock_holder == holder)
                                  .values(lock_until=until).execution_options(synchronize_session=False))
            except Exception:  # the database is away for a moment: try again at the next round
                continue

    def lock_free(self, s: Session, env: EnvironmentRow) -> bool:
        """Nobody holds the environment's lock (or its lease ran out): no deploy of it runs anywhere."""
        return env.lock_holder is None or env.lock_until is None or env.lock_until < utcnow()

    # ------------------------------------------------------------------ links to runs and commits

    def _run_of(self, s: Session, env: EnvironmentRow, dep: Deployment) -> Run | None:
        if dep.source_run and str(dep.source_run).isdigit():
            run = s.get(Run, int(dep.source_run))
            if run is not None and run.project_id == env.project_id:
                return run
        return None

    def _commit_of(self, s: Session, env: EnvironmentRow, dep: Deployment, run: Run | None) -> str:
        """The commit a deployment ships: its run's, else the run that published its digest, else an
        earlier revision's with the same digest (a rollback re-applies one)."""
        if run is not None:
            return run.change.commit
        if not dep.image_digest:
            return ""
        commit = s.scalar(
            select(Change.commit).join(Run, Run.change_id == Change.id).join(Image, Image.run_id == Run.id)
            .where(Run.project_id == env.project_id, Image.digest == dep.image_digest)
            .order_by(Image.id).limit(1))
        if commit:
            return str(commit)
        earlier = s.scalar(select(DeploymentRow.commit).where(
            DeploymentRow.environment_id == env.id, DeploymentRow.image_digest == dep.image_digest,
            DeploymentRow.commit != "").order_by(DeploymentRow.revision.desc()).limit(1))
        return str(earlier or "")

    def _serving_revision(self, s: Session, env: EnvironmentRow, revision: int) -> int | None:
        value = s.scalar(select(DeploymentRow.revision).where(
            DeploymentRow.environment_id == env.id, DeploymentRow.status == HEALTHY,
            DeploymentRow.revision != revision).order_by(DeploymentRow.revision.desc()).limit(1))
        return int(value) if value is not None else None

    def _commits_for(self, project: str, environment: str, revision: int) -> list[str]:
        """Commits this revision ships that the revision serving before it did not have (newest first).

        Read before the write transaction: a git call must not hold the database's write lock.
        """
        with self.db.session() as s:
            env = self.environment_row(s, project, environment, create=False)
            row = self._row(s, env, revision) if env is not None else None
            if env is None or row is None or not row.commit:
                return []
            previous = (row.detail or {}).get("previous_revision")
            old = ""
            if previous is not None:
                prev_row = self._row(s, env, int(previous))
                old = prev_row.commit if prev_row is not None else ""
            new = row.commit
        if old == new:
            return []
        if self.commits_between is None:
            return [new]
        try:
            return self.commits_between(project, old or None, new)
        except Exception:  # an unknown commit in the mirror: the deployment still ships its own commit
            return [new]

    # ------------------------------------------------------------------ events

    def _event(self, s: Session, env: EnvironmentRow, row: DeploymentRow, kind: str, *, actor: str | None = None,
               outcome: str = "", data: dict[str, Any] | None = None, at: datetime | None = None) -> None:
        ctx = self._ctx()
        run = s.get(Run, row.run_id) if row.run_id else None
        project = s.get(Project, env.project_id)
        ledger.record(
            s, kind,
            actor=actor or ctx["actor"] or row.actor or "server",
            run=run,
            project=project.name if project is not None else "",
            commit=row.commit or None,
            image_digest=row.image_digest or "",
            environment=env.name,
            revision=row.revision,
            command=ctx["command"],
            outcome=outcome,
            at=at,
            data={**ctx["data"], **(data or {})},
        )

    def _image(self, row: DeploymentRow) -> str:
        return self.to_deployment("", "", row).image

    def _started(self, s: Session, env: EnvironmentRow, row: DeploymentRow) -> None:
        detail = row.detail or {}
        self._event(s, env, row, "deploy.started", at=row.started_at,
                    data={"image": self._image(row), "kind": row.kind,
                          "previous_revision": detail.get("previous_revision")})
        if row.kind == KIND_ROLLBACK:
            self._event(s, env, row, "rollback.started", at=row.started_at,
                        data={"from_revision": detail.get("rollback_of"),
                              "to_revision": self._restores(s, env, row), "revision": row.revision,
                              "automatic": False, "reason": row.reason})

    def _restores(self, s: Session, env: EnvironmentRow, row: DeploymentRow) -> int | None:
        """The earlier revision a rollback re-applies (same digest and manifests)."""
        manifests = (row.detail or {}).get("manifests", "")
        for earlier in s.scalars(select(DeploymentRow).where(
                DeploymentRow.environment_id == env.id, DeploymentRow.revision < row.revision,
                DeploymentRow.image_digest == row.image_digest,
                DeploymentRow.status.in_((HEALTHY, SUPERSEDED, ROLLED_BACK)))
                .order_by(DeploymentRow.revision.desc())):
            if (earlier.detail or {}).get("manifests", "") == manifests:
                return earlier.revision
        return None

    def _verdict(self, s: Session, env: EnvironmentRow, row: DeploymentRow, verdict: dict[str, Any]) -> None:
        at = None
        if isinstance(verdict.get("decided_at"), str):
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(verdict["decided_at"]).astimezone(UTC)
        self._event(s, env, row, "health.verdict", actor="server", at=at,
                    outcome="healthy" if verdict.get("healthy") else "unhealthy",
                    data={"checks": verdict.get("last") or {}, "reason": verdict.get("reason", ""),
                          "phase": verdict.get("phase"), "elapsed": verdict.get("elapsed")})

    def _finished(self, s: Session, env: EnvironmentRow, row: DeploymentRow, commits: list[str]) -> None:
        detail = row.detail or {}
        restored = detail.get("restored_revision")
        started = row.started_at or row.created_at
        finished = row.finished_at or utcnow()
        if row.status == FAILED and restored is not None and row.kind != KIND_ROLLBACK:
            # An automatic rollback: the previous revision serves again.
            data = {"from_revision": row.revision, "to_revision": restored, "automatic": True}
            self._event(s, env, row, "rollback.started", at=finished,
                        data={**data, "reason": row.error or ""})
            self._event(s, env, row, "rollback.finished", at=finished, outcome="restored",
                        data={**data, "time_to_restore": round((finished - started).total_seconds(), 3),
                              "served_for": row.time_to_restore})
            outcome = "rolled-back"
        else:
            outcome = "healthy" if row.status == HEALTHY else "failed"
        data: dict[str, Any] = {"image": self._image(row), "kind": row.kind,
                                "previous_revision": detail.get("previous_revision"), "commits": commits,
                                "reason": row.reason}
        if row.error:
            data["error"] = row.error
        if restored is not None:
            data["restored_revision"] = restored
        self._event(s, env, row, "deploy.finished", at=finished, outcome=outcome, data=data)
        if row.kind == KIND_ROLLBACK:
            # A rollback by a person: the revision it moved away from was started at `from`'s start.
            from_rev = detail.get("rollback_of")
            from_row = self._row(s, env, int(from_rev)) if from_rev is not None else None
            since = (from_row.started_at or from_row.created_at) if from_row is not None else started
            self._event(s, env, row, "rollback.finished", at=finished,
                        outcome="restored" if row.status == HEALTHY else "failed",
                        data={"from_revision": from_rev, "to_revision": self._restores(s, env, row),
                              "revision": row.revision, "automatic": False,
                              "time_to_restore": round((finished - since).total_seconds(), 3)
                              if row.status == HEALTHY else None})


__all__ = ["CommitsBetween", "SqlDeploymentStore", "UnknownProject"]
