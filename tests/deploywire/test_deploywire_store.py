"""The SQL DeploymentStore on SQLite and PostgreSQL: the protocol, the lock, and the ledger it writes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from chute.deploy import FAILED, HEALTHY, ROLLED_BACK, SUPERSEDED, Deployment, DeploymentStore
from chute.deploy.model import DEPLOYING, KIND_ROLLBACK, PENDING
from chute.store import Change, Database, Event, Image, Project, Run, utcnow
from chute.store.deploy_store import SqlDeploymentStore, UnknownProject


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    database.migrate()
    with database.session() as s:
        s.add(Project(name="p", repo_url="/nowhere", webhook_secret="x"))
    yield database
    database.dispose()


def dep(rev: int, status: str, digest: str = "sha256:aa", **kw) -> Deployment:
    return Deployment(project="p", environment="staging", revision=rev, image_ref="r/web:1", image_digest=digest,
                      status=status, actor="me", reason="test", **kw)


def events(db: Database, **where) -> list[Event]:
    with db.session() as s:
        q = select(Event).where(Event.kind != "project.added")
        for key, value in where.items():
            q = q.where(getattr(Event, key) == value)
        return list(s.scalars(q.order_by(Event.id)))


def test_protocol_and_queries(db):
    store = SqlDeploymentStore(db)
    assert isinstance(store, DeploymentStore)
    assert [store.next_revision("p", "staging") for _ in range(3)] == [1, 2, 3]
    assert store.next_revision("p", "production") == 1  # per environment
    store.record(dep(1, SUPERSEDED, "sha256:01"))
    store.record(dep(2, HEALTHY, "sha256:02"))
    store.record(dep(3, FAILED, "sha256:03"))
    with pytest.raises(ValueError):
        store.record(dep(3, FAILED))
    assert store.current("p", "staging").revision == 2
    assert store.last_healthy("p", "staging").revision == 2
    assert store.last_healthy("p", "staging", before=2).revision == 1
    updated = store.update("p", "staging", 2, status=ROLLED_BACK, time_to_restore=3.5)
    assert updated.status == ROLLED_BACK and store.get("p", "staging", 2).time_to_restore == 3.5
    assert store.current("p", "staging") is None
    assert store.last_healthy("p", "staging").revision == 1
    assert [d.revision for d in store.list("p", "staging")] == [3, 2, 1]
    assert [d.revision for d in store.list("p", "staging", limit=1)] == [3]
    with pytest.raises(ValueError):
        store.update("p", "staging", 1, status="exploded")
    with pytest.raises(KeyError):
        store.update("p", "staging", 99, status=FAILED)
    assert store.get("p", "staging", 1).status == SUPERSEDED  # bad updates changed nothing
    assert store.get("p", "nowhere", 1) is None and store.list("p", "nowhere") == []
    with pytest.raises(UnknownProject):
        store.next_revision("no-such-project", "staging")


def test_every_field_round_trips(db):
    store = SqlDeploymentStore(db)
    now = utcnow()
    full = dep(1, PENDING, order_key="2026-11-26T10:00:00Z#000000000001", source_run=None, target="podman",
               created_at=now, freeze_override={"what": "frozen", "actor": "ada", "reason": "outage", "at": "x"},
               manifests="kind: Deployment\n", target_state={"pod": "p-r1", "side_port": 4711})
    store.record(full)
    store.update("p", "staging", 1, status=DEPLOYING, started_at=now + timedelta(seconds=1))
    store.update("p", "staging", 1, serving_at=now + timedelta(seconds=2), error="slow",
                 health=[{"phase": "within", "healthy": True, "reason": "ok", "last": {"http": "200"},
                          "decided_at": (now + timedelta(seconds=2)).isoformat()}])
    got = store.get("p", "staging", 1)
    assert got.order_key == full.order_key and got.target == "podman" and got.manifests == "kind: Deployment\n"
    assert got.target_state == {"pod": "p-r1", "side_port": 4711} and got.freeze_override["reason"] == "outage"
    assert got.created_at == now and got.started_at == now + timedelta(seconds=1)
    assert got.serving_at == now + timedelta(seconds=2) and got.error == "slow"
    assert got.health[0]["last"] == {"http": "200"} and got.status == DEPLOYING
    assert got.image == "r/web@sha256:aa"


def test_the_lock_is_exclusive_expires_and_belongs_to_its_owner(db):
    store = SqlDeploymentStore(db)
    assert store.try_lock("p", "staging", "a", ttl=60)
    assert store.try_lock("p", "staging", "a", ttl=60)  # the owner takes it again (renewal)
    assert not store.try_lock("p", "staging", "b", ttl=60)
    assert store.try_lock("p", "production", "b", ttl=60)  # another environment
    store.unlock("p", "staging", "b")  # not the owner: no effect
    assert not store.try_lock("p", "staging", "b", ttl=60)
    store.unlock("p", "staging", "a")
    assert store.try_lock("p", "staging", "b", ttl=0.2)
    import time

    time.sleep(0.4)
    assert store.try_lock("p", "staging", "c", ttl=60)  # b's lock expired


def test_only_one_of_many_threads_gets_the_lock(db):
    store = SqlDeploymentStore(db)
    store.next_revision("p", "staging")  # the environment row exists
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def take(owner: str) -> None:
        barrier.wait()
        if store.try_lock("p", "staging", owner, ttl=60):
            winners.append(owner)

    threads = [threading.Thread(target=take, args=(f"o{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_revisions_are_unique_under_concurrency(db):
    store = SqlDeploymentStore(db)
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(5):
            n = store.next_revision("p", "staging")
            with lock:
                got.append(n)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 21))


def _run_with_image(db: Database, commit: str, digest: str) -> int:
    with db.session() as s:
        p = s.scalars(select(Project).where(Project.name == "p")).one()
        ch = Change(project=p, kind="push", commit=commit, branch="main")
        run = Run(project=p, change=ch, pipeline="publish", status="success", trusted=True)
        s.add_all([ch, run])
        s.flush()
        s.add(Image(run_id=run.id, stage="production", name="r/web", tags=["t"], digest=digest))
        return run.id


def test_state_changes_write_the_ledger_in_the_same_transaction(db):
    asked: list[tuple[str, str | None, str]] = []

    def commits_between(project: str, old: str | None, new: str) -> list[str]:
        asked.append((project, old, new))
        return [new, "c" * 40] if old else [new]

    store = SqlDeploymentStore(db, commits_between=commits_between)
    c1, c2 = "1" * 40, "2" * 40
    run1 = _run_with_image(db, c1, "sha256:01")
    _run_with_image(db, c2, "sha256:02")
    t0 = utcnow()
    with store.context(command="chute deploy staging", data={"request": 7}):
        store.record(dep(1, PENDING, "sha256:01", source_run=str(run1), created_at=t0))
        store.update("p", "staging", 1, status=DEPLOYING, started_at=t0)
        store.update("p", "staging", 1, status=HEALTHY, finished_at=t0 + timedelta(seconds=3),
                     health=[{"phase": "within", "healthy": True, "reason": "passed", "last": {"http": "GET 200"},
                              "decided_at": (t0 + timedelta(seconds=2)).isoformat()}])
    kinds = [(e.kind, e.outcome) for e in events(db)]
    assert kinds == [("deploy.started", ""), ("health.verdict", "healthy"), ("deploy.finished", "healthy")]
    started, verdict, finished = events(db)
    assert started.revision == 1 and started.environment == "staging" and started.commit == c1
    assert started.run_id == run1 and started.image_digest == "sha256:01" and started.project == "p"
    assert started.data["kind"] == "deploy" and started.data["previous_revision"] is None
    assert started.command == "chute deploy staging" and started.data["request"] == 7
    assert verdict.data["checks"] == {"http": "GET 200"} and verdict.at == t0 + timedelta(seconds=2)
    assert finished.data["commits"] == [c1] and asked == [("p", None, c1)]
    assert finished.data["image"] == "r/web@sha256:01"

    # The second deployment (found by digest: no run given) ships what revision 1 did not have,
    # fails while serving and is rolled back automatically.
    store.record(dep(2, PENDING, "sha256:02", created_at=t0))
    store.update("p", "staging", 2, status=DEPLOYING, started_at=t0 + timedelta(seconds=10))
    store.update("p", "staging", 2, status=FAILED, serving_at=t0 + timedelta(seconds=12),
                 finished_at=t0 + timedelta(seconds=15), restored_revision=1, time_to_restore=3.0,
                 error="not healthy while serving: 500",
                 health=[{"healthy": True, "phase": "within", "reason": "ok"},
                         {"healthy": False, "phase": "stable", "reason": "500"}])
    new = [(e.kind, e.outcome) for e in events(db)][3:]
    assert new == [("deploy.started", ""), ("health.verdict", "healthy"), ("health.verdict", "unhealthy"),
                   ("rollback.started", ""), ("rollback.finished", "restored"), ("deploy.finished", "rolled-back")]
    evs = events(db)[3:]
    assert evs[0].data["previous_revision"] == 1 and evs[0].commit == c2
    assert evs[3].data == {"from_revision": 2, "to_revision": 1, "automatic": True,
                           "reason": "not healthy while serving: 500"}
    assert evs[4].data["time_to_restore"] == 5.0  # from the failed deploy's start to restored
    assert evs[4].data["served_for"] == 3.0
    assert evs[5].data["commits"] == [c2, "c" * 40] and asked[-1] == ("p", c1, c2)
    assert evs[5].data["error"] == "not healthy while serving: 500"


def test_a_rollback_by_a_person_is_audited_with_its_time_to_restore(db):
    store = SqlDeploymentStore(db)
    t0 = utcnow()
    store.record(dep(1, HEALTHY, "sha256:01", manifests="m1", started_at=t0, created_at=t0))
    store.update("p", "staging", 1, status=SUPERSEDED)
    store.record(dep(2, HEALTHY, "sha256:02", manifests="m2", started_at=t0 + timedelta(seconds=100)))
    before = len(events(db))
    store.record(dep(3, DEPLOYING, "sha256:01", manifests="m1", kind=KIND_ROLLBACK, rollback_of=2,
                     started_at=t0 + timedelta(seconds=160),
                     freeze_override={"what": "frozen", "actor": "bob", "reason": "outage", "at": "x"}))
    store.update("p", "staging", 3, status=HEALTHY, finished_at=t0 + timedelta(seconds=170))
    store.update("p", "staging", 2, status=ROLLED_BACK, time_to_restore=70.0)
    evs = events(db)[before:]
    assert [e.kind for e in evs] == ["deploy.freeze-override", "deploy.started", "rollback.started",
                                     "deploy.finished", "rollback.finished"]
    assert evs[0].actor == "bob" and evs[0].data["reason"] == "outage"
    assert evs[1].data == {"image": "r/web@sha256:01", "kind": "rollback", "previous_revision": 2}
    assert evs[2].data["from_revision"] == 2 and evs[2].data["to_revision"] == 1
    assert evs[2].data["automatic"] is False
    assert evs[4].outcome == "restored" and evs[4].data["time_to_restore"] == 70.0  # since revision 2 started
    assert evs[3].data["commits"] == []  # a rollback ships nothing new


def test_locks_are_leases_renewed_while_held(db):
    a = SqlDeploymentStore(db, lease=0.6)
    b = SqlDeploymentStore(db, lease=0.6)  # another server on the same database
    assert a.try_lock("p", "staging", "same-owner-id", ttl=3600)
    assert not b.try_lock("p", "staging", "same-owner-id", ttl=3600)  # owners are per server
    import time

    time.sleep(1.5)  # more than the lease: a renews it while it holds it
    assert not b.try_lock("p", "staging", "x", ttl=3600)
    a.unlock("p", "staging", "same-owner-id")
    assert b.try_lock("p", "staging", "x", ttl=3600)
    # b "dies": its renewer stops with the lock still recorded; the lease frees it.
    with b._held_mutex:
        b._held.clear()
    time.sleep(1.0)
    assert a.try_lock("p", "staging", "y", ttl=3600)
