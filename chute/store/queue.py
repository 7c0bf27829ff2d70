"""The job queue: runs waiting for an agent, claimed under a lease kept alive by heartbeats.

Claiming is one short transaction. PostgreSQL uses ``FOR UPDATE SKIP LOCKED`` so
that many agents claim different jobs without waiting on each other; SQLite
serialises writers (``BEGIN IMMEDIATE``, see db.py), which is the same
guarantee for a single machine. An agent that stops heartbeating loses its lease;
``reap_expired`` puts the job back in the queue, or fails the run with the
reason after ``max_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from . import ledger
from .db import Database
from .models import Job, Run, StageResult, utcnow

DEFAULT_LEASE = 60.0  # seconds without a heartbeat before a job is considered abandoned


@dataclass(frozen=True)
class Claim:
    job_id: int
    run_id: int
    attempt: int
    payload: dict[str, Any]
    lease_until: datetime


def enqueue(session: Session, run: Run, payload: dict[str, Any], *, max_attempts: int = 3,
            not_before: datetime | None = None) -> Job:
    """Queue ``run`` in the caller's transaction (so a run never exists without its job)."""
    job = Job(run=run, payload=payload, max_attempts=max_attempts, not_before=not_before)
    session.add(job)
    return job


def _close_stages(s: Session, run: Run, reason: str, now: datetime) -> None:
    """A run the server ends itself keeps no stage pending or running (its agent is gone)."""
    for st in s.scalars(select(StageResult).where(StageResult.run_id == run.id,
                                                  StageResult.status.in_(("pending", "running")))):
        st.status, st.error, st.finished_at = "cancelled", reason, now
        st.started_at = st.started_at or now
        ledger.record(s, "stage.finished", run=run, stage=st.name, outcome="cancelled", actor="server",
                      data={"error": reason[:500]})


def held_for_update(session: Session, job_id: int) -> Job | None:
    """The job, its row locked until the caller's transaction ends (PostgreSQL; SQLite holds the
    whole database already), read after any other writer of it committed."""
    return session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()


class Queue:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, agent: str, *, lease: float = DEFAULT_LEASE, now: datetime | None = None) -> Claim | None:
        now = now or utcnow()
        with self.db.session() as s:
            q = (
                select(Job)
                .where(Job.status == "queued", Job.cancel_requested.is_(False),
                       or_(Job.not_before.is_(None), Job.not_before <= now))
                .order_by(Job.id)
                .limit(1)
            )
            if not self.db.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            job = s.scalars(q).first()
            if job is None:
                return None
            job.status = "claimed"
            job.agent = agent
            job.attempts += 1
            job.lease_until = now + timedelta(seconds=lease)
            run = s.get(Run, job.run_id)
            assert run is not None
            run.status = "running"
            run.started_at = run.started_at or now
            ledger.record(s, "run.started", run=run, actor=f"agent:{agent}",
                          data={"attempt": job.attempts, "agent": agent})
            return Claim(job.id, job.run_id, job.attempts, dict(job.payload), job.lease_until)

    def heartbeat(self, job_id: int, agent: str, *, lease: float = DEFAULT_LEASE) -> str:
        """Extend the lease. Returns "ok", "cancel" (stop work) or "lost" (not yours any more)."""
        now = utcnow()
        with self.db.session() as s:
            job = held_for_update(s, job_id)
            if job is None or job.status != "claimed" or job.agent != agent:
                return "lost"
            job.lease_until = now + timedelta(seconds=lease)
            return "cancel" if job.cancel_requested else "ok"

    def finish(self, session: Session, job_id: int, agent: str) -> Job | None:
        """Mark the job done in the caller's transaction; None if the agent no longer holds it."""
        job = held_for_update(session, job_id)
        if job is None or job.status != "claimed" or job.agent != agent:
            return None
        job.status = "done"
        job.lease_until = None
        return job

    def request_cancel(self, session: Session, run: Run, actor: str) -> bool:
        """Cancel a queued run at once; ask the agent of a running one to stop."""
        job = session.scalars(select(Job).where(Job.run_id == run.id)).first()
        if run.status in ("success", "failure", "error", "cancelled"):
            return False
        if job is not None:
            job.cancel_requested = True
        if job is None or job.status == "queued":
            if job is not None:
                job.status = "done"
            run.status = "cancelled"
            run.reason = f"cancelled by {actor} before it started"
            run.finished_at = utcnow()
            ledger.record(session, "run.cancelled", run=run, actor=actor, outcome="cancelled")
        else:
            ledger.record(session, "run.cancel-requested", run=run, actor=actor)
        return True

    def reap_expired(self, now: datetime | None = None) -> list[tuple[int, str]]:
        """Requeue or fail jobs whose lease ran out. Returns (run_id, new status) pairs."""
        now = now or utcnow()
        changed: list[tuple[int, str]] = []
        with self.db.session() as s:
            q = select(Job).where(Job.status == "claimed", Job.lease_until < now).order_by(Job.id)
            if not self.db.is_sqlite:
                # A job whose row an agent's call holds (completing it, or heartbeating just in time)
                # is that call's to decide; without the lock both would write and the run would end
                # finished *and* requeued. SQLite's BEGIN IMMEDIATE serialises the two already.
                q = q.with_for_update(skip_locked=True)
            jobs = s.scalars(q).all()
            for job in jobs:
                run = s.get(Run, job.run_id)
                assert run is not None
                reason = (f"agent {job.agent} stopped sending heartbeats "
                          f"(lease expired {now - job.lease_until if job.lease_until else 'now'} ago)")
                job.last_error = reason
                if job.cancel_requested:
                    job.status = "done"
                    run.status, run.reason, run.finished_at = "cancelled", "cancelled; " + reason, now
                    _close_stages(s, run, reason, now)
                    ledger.record(s, "run.cancelled", run=run, actor="server", outcome="cancelled")
                elif job.attempts >= job.max_attempts:
                    job.status = "done"
                    run.status = "error"
                    run.reason = f"{reason}; gave up after {job.attempts} attempts"
                    run.finished_at = now
                    _close_stages(s, run, run.reason, now)
                    ledger.record(s, "run.finished", run=run, actor="server", outcome="error",
                                  data={"reason": run.reason})
                else:
                    job.status, job.agent, job.lease_until = "queued", None, None
                    run.status = "queued"
                    run.reason = f"requeued: {reason} (attempt {job.attempts} of {job.max_attempts})"
                    ledger.record(s, "run.requeued", run=run, actor="server", data={"reason": reason})
                changed.append((run.id, run.status))
        return changed

    def resume_after_restart(self, lease: float = DEFAULT_LEASE, now: datetime | None = None) -> int:
        """Give every claimed job a lease from now; call when the server starts, before the reaper.

        While the server was down no agent could heartbeat, so every lease may have run out
        though the agents kept working. Reaping them at once would throw that work away and
        count an attempt against each run; instead a live agent reattaches with its next
        heartbeat and its run resumes, and a dead agent's job is requeued one lease later.
        Returns how many jobs got the new lease.
        """
        now = now or utcnow()
        until = now + timedelta(seconds=lease)
        with self.db.session() as s:
            result = s.execute(
                update(Job).where(Job.status == "claimed", or_(Job.lease_until.is_(None), Job.lease_until < until))
                .values(lease_until=until).execution_options(synchronize_session=False))
            return int(result.rowcount or 0)

    def depth(self) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count(Job.id)).where(Job.status == "queued")) or 0

    def release_agent(self, agent: str) -> int:
        """Put back every job an agent holds (it told us it is shutting down cleanly)."""
        with self.db.session() as s:
            jobs = s.scalars(select(Job).where(Job.status == "claimed", Job.agent == agent)).all()
            for job in jobs:
                job.status, job.agent, job.lease_until = "queued", None, None
                job.attempts = max(0, job.attempts - 1)  # a clean hand-back is not a failed attempt
                run = s.get(Run, job.run_id)
                assert run is not None
                run.status, run.reason = "queued", f"requeued: agent {agent} shut down"
                ledger.record(s, "run.requeued", run=run, actor=f"agent:{agent}", data={"reason": run.reason})
            return len(jobs)
