"""The job queue on SQLite and PostgreSQL: claims, leases, requeue, give-up, cancel, concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select

from chute.store import Change, Database, Event, Job, Project, Run, utcnow
from chute.store.queue import Queue, enqueue


def _setup(url: str, runs: int = 1, max_attempts: int = 3) -> tuple[Database, list[int]]:
    db = Database(url)
    db.migrate()
    ids = []
    with db.session() as s:
        p = Project(name="p", repo_url="/r", webhook_secret="x")
        ch = Change(project=p, kind="push", commit="a" * 40)
        for i in range(runs):
            r = Run(project=p, change=ch, pipeline=f"pipe{i}")
            s.add(r)
            s.flush()
            enqueue(s, r, {"i": i}, max_attempts=max_attempts)
            ids.append(r.id)
    return db, ids


def test_claim_heartbeat_finish(db_url: str) -> None:
    db, (run_id,) = _setup(db_url)
    q = Queue(db)
    c = q.claim("agent-a", lease=30)
    assert c is not None and c.run_id == run_id and c.attempt == 1 and c.payload == {"i": 0}
    assert q.claim("agent-b") is None  # nothing else queued
    assert q.heartbeat(c.job_id, "agent-a") == "ok"
    assert q.heartbeat(c.job_id, "agent-b") == "lost"
    with db.session() as s:
        assert s.get(Run, run_id).status == "running"
        assert q.finish(s, c.job_id, "agent-b") is None
        assert q.finish(s, c.job_id, "agent-a") is not None
    with db.session() as s:
        assert s.get(Job, c.job_id).status == "done"
        kinds = [e.kind for e in s.scalars(select(Event).order_by(Event.id))]
        assert kinds == ["run.started"]


def test_expired_lease_requeues_then_gives_up_with_reason(db_url: str) -> None:
    db, (run_id,) = _setup(db_url, max_attempts=2)
    q = Queue(db)
    c1 = q.claim("dead-agent", lease=1)
    later = utcnow() + timedelta(seconds=5)
    assert q.reap_expired(now=later) == [(run_id, "queued")]
    with db.session() as s:
        run = s.get(Run, run_id)
        assert run.status == "queued" and "dead-agent stopped sending heartbeats" in run.reason
    assert q.heartbeat(c1.job_id, "dead-agent") == "lost"  # the old holder is told it lost the job
    c2 = q.claim("dead-agent-2", lease=1)
    assert c2 is not None and c2.attempt == 2
    assert q.reap_expired(now=utcnow() + timedelta(seconds=5)) == [(run_id, "error")]
    with db.session() as s:
        run = s.get(Run, run_id)
        assert run.status == "error" and "gave up after 2 attempts" in run.reason
        assert run.finished_at is not None
        kinds = [e.kind for e in s.scalars(select(Event).order_by(Event.id))]
        assert kinds == ["run.started", "run.requeued", "run.started", "run.finished"]
    assert q.claim("x") is None


def test_cancel_queued_and_running(db_url: str) -> None:
    db, (r1, r2) = _setup(db_url, runs=2)
    q = Queue(db)
    c = q.claim("a")
    assert c.run_id == r1
    with db.session() as s:
        assert q.request_cancel(s, s.get(Run, r2), "bob")  # queued: cancelled at once
        assert q.request_cancel(s, s.get(Run, r1), "bob")  # running: the agent is asked
    with db.session() as s:
        assert s.get(Run, r2).status == "cancelled"
        assert s.get(Run, r1).status == "running"
    assert q.heartbeat(c.job_id, "a") == "cancel"
    assert q.claim("b") is None


def test_concurrent_claims_never_share_a_job(db_url: str) -> None:
    db, ids = _setup(db_url, runs=30)
    q = Queue(db)
    got: list[int] = []
    lock = threading.Lock()

    def agent(n: int) -> None:
        while True:
            c = q.claim(f"agent-{n}")
            if c is None:
                return
            with lock:
                got.append(c.run_id)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # every job once, none twice
    with db.session() as s:
        assert s.scalar(select(func.count(Event.id)).where(Event.kind == "run.started")) == 30


def test_release_agent_hands_jobs_back_without_counting_an_attempt(db_url: str) -> None:
    db, (run_id,) = _setup(db_url)
    q = Queue(db)
    q.claim("a")
    assert q.release_agent("a") == 1
    c = q.claim("b")
    assert c is not None and c.attempt == 1 and c.run_id == run_id
