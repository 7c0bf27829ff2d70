"""Database connection: SQLite (WAL) under $CHUTE_HOME by default, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from chute.paths import chute_home

READ_ONLY_OPTION = "chute_read_only"


def database_url(explicit: str | None = None) -> str:
    url = explicit or os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{chute_home() / 'chute.db'}"
    # Plain postgresql:// means psycopg 3 here (the only driver chute depends on).
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (UI, API) run while the single writer commits; the busy
    # timeout makes writers queue instead of failing under contention.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # pysqlite's implicit BEGIN is deferred, which lets two writers deadlock on
    # upgrade; BEGIN IMMEDIATE takes the write lock up front (the "single-writer
    # transaction" the queue relies on). Read-only sessions (see
    # Database.read_session) take a plain deferred BEGIN: a WAL snapshot that
    # never blocks writers, however long a report or an export runs.
    read_only = conn.get_execution_options().get(READ_ONLY_OPTION)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str | None = None) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine plus a session factory; ``with db.session() as s:`` commits or rolls back."""

    def __init__(self, url: str | None = None) -> None:
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_factory = sessionmaker(self.engine.execution_options(**{READ_ONLY_OPTION: True}),
                                          expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        s = self._factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reading only (reports, exports, metrics); rolled back at the end.

        On SQLite it does not take the write lock, so a long read never makes
        writers wait; on PostgreSQL it is an ordinary transaction.
        """
        s = self._read_factory()
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision."""
        from chute.store.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
