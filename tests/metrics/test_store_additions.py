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
