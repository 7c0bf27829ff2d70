"""What this work added to chute.store: ledger retention, read-only sessions."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from chute.store import Database, Event
from chute.store.ledger import RETENTION_ENV, apply_retention, prune_events, retention_days

from .conftest import T0, D, History


def count(db: Database) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(Event)) or 0


def test_retention_setting() -> None:
    assert retention_days({}) is None and retention_days({RETENTION_ENV: " "}) is None
    assert retention_days({RETENTION_ENV: "400"}) == 400.0
    for bad in ("0", "-3", "a year", "inf"):
        with pytest.raises(ValueError) as err:
            retention_days({RETENTION_ENV: bad})
        assert RETENTION_ENV in str(err.value) and "unset it" in str(err.value)


def test_prune_deletes_old_events_in_batches(db: Database) -> None:
    h = History(db)
    with h.tx():
        for i in range(25):
            h.push(f"{i:040x}", T0 + i * D)
    assert prune_events(db, T0 + 10 * D, batch_size=4) == 10
    with db.read_session() as s:
        ats = list(s.scalars(select(Event.at).order_by(Event.id)))
    assert len(ats) == 15 and min(ats) == T0 + 10 * D
    # default: keep forever
    assert apply_retention(db, now=T0 + 100 * D, environ={}) == 0 and count(db) == 15
    # keep 5 days back from day 30: everything before day 25 goes, i.e. days 10..24
    assert apply_retention(db, now=T0 + 30 * D, environ={RETENTION_ENV: "5"}) == 15
    assert count(db) == 0


def test_retention_keeps_recent_events(db: Database) -> None:
    h = History(db)
    with h.tx():
        for i in range(10):
            h.push(f"{i:040x}", T0 + i * D)
    deleted = apply_retention(db, now=T0 + 9 * D + timedelta(hours=1), environ={RETENTION_ENV: "3"})
    # the cutoff is day 9 + 1 h - 3 days = day 6 + 1 h: days 0..6 go, days 7, 8, 9 stay
    assert deleted == 7 and count(db) == 3


def test_read_session_does_not_block_writers(db: Database) -> None:
    """A long read (a report, an export) must not hold SQLite's write lock."""
    History(db).push("a" * 40, T0)
    done = threading.Event()
    took: list[float] = []

    def write() -> None:
        started = time.monotonic()
        History(db).push("b" * 40, T0)
        took.append(time.monotonic() - started)
        done.set()

    with db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1
        t = threading.Thread(target=write)
        t.start()
        assert done.wait(10), "the writer waited for the reader"
        if db.is_sqlite:  # a deferred transaction reads one WAL snapshot throughout
            assert s.scalar(select(func.count()).select_from(Event)) == 1
    t.join()
    assert took[0] < 5 and count(db) == 2


def _read_model(db: Database) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    from chute.store import DeployResult, PatchDelivery, RunResult

    out = {}
    with db.read_session() as s:
        for table, cols in ((RunResult, ("event_id", "run_id", "project", "pipeline", "trigger", "outcome", "commit",
                                         "rerun_of", "at")),
                            (DeployResult, ("event_id", "project", "environment", "revision", "kind", "outcome",
                                            "commits", "at")),
                            (PatchDelivery, ("event_id", "project", "environment", "patch", "change", "commit",
                                             "title", "revision", "uploaded_at", "merged_at", "delivered_at"))):
            c = table.__table__.c
            out[table.__tablename__] = sorted(tuple(r) for r in s.execute(select(*(c[n] for n in cols))))
    return out


def test_read_model_is_written_with_the_events_and_rebuilds_the_same(db: Database) -> None:
    from chute.store import derived

    from .conftest import build_main_history, sha

    build_main_history(db)
    live = _read_model(db)
    assert len(live["run_results"]) == 12 and len(live["deploy_results"]) == 11
    # patches first delivered: staging 101 102 p1; production 101 102 p1 103 104 106 108
    assert sorted((r[2], r[3]) for r in live["patch_deliveries"]) == sorted(
        [("staging", "101"), ("staging", "102"), ("staging", "@" + sha("p1"))]
        + [("production", c) for c in ("101", "102", "@" + sha("p1"), "103", "104", "106", "108")])
    counts = derived.rebuild(db)
    assert counts == {"run_results": 12, "deploy_results": 11, "patch_deliveries": 10}
    assert _read_model(db) == live


def test_retention_deletes_the_derived_rows_too(db: Database) -> None:
    from .conftest import build_main_history

    build_main_history(db)
    prune_events(db, T0 + 5 * D)  # everything up to rev 5 of production
    rows = _read_model(db)
    with db.read_session() as s:
        kept = set(s.scalars(select(Event.id)))
    assert all(r[0] in kept for table in rows.values() for r in table)
    assert len(rows["deploy_results"]) == 5  # production revisions 6 to 10


def test_record_many_keeps_order_ids_and_read_model(db: Database) -> None:
    from chute.store import RunResult, ledger

    with db.session() as s:
        one = ledger.record(s, "run.queued", project="p", data={"pipeline": "test", "trigger": "webhook"})
        evs = ledger.record_many(s, [
            {"kind": "stage.finished", "project": "p", "stage": f"s{i}", "outcome": "success", "at": T0 + i * D}
            for i in range(30)] + [
            {"kind": "run.finished", "project": "p", "outcome": "success", "commit": "c" * 40,
             "data": {"pipeline": "test", "trigger": "rerun", "rerun_of": 7}}])
    assert [e.id for e in evs] == list(range(one.id + 1, one.id + 32))
    with db.read_session() as s:
        stored = [(e.id, e.kind, e.stage, e.at) for e in s.scalars(select(Event).where(Event.id > one.id)
                                                                    .order_by(Event.id))]
        rr = s.execute(select(RunResult.event_id, RunResult.trigger, RunResult.rerun_of)).all()
    assert stored == [(e.id, e.kind, e.stage, e.at) for e in evs]
    assert [x[2] for x in stored[:30]] == [f"s{i}" for i in range(30)]
    assert rr == [(evs[-1].id, "rerun", 7)]
    with pytest.raises(ValueError), db.session() as s:
        ledger.record_many(s, [{"kind": "no.such.kind", "project": "p"}])
