"""Synthetic delivery histories, written through chute.store.ledger.record like the server does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.orm import Session

from chute.store import Database, Event, Project, ledger

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
D = timedelta(days=1)
M = timedelta(minutes=1)


def sha(name: str) -> str:
    """A stable 40-hex commit id for a readable name (``sha("m101")``)."""
    import hashlib

    return hashlib.sha1(name.encode()).hexdigest()


@dataclass
class History:
    """Writes ledger events for one project; every method takes explicit times."""

    db: Database
    project: str = "shop"
    written: list[int] = field(default_factory=list)
    _session: Session | None = None

    def __post_init__(self) -> None:
        with self.db.session() as s:
            if s.query(Project).filter_by(name=self.project).first() is None:
                s.add(Project(name=self.project, repo_url=f"/repos/{self.project}", webhook_secret="x"))

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction for several events (nested calls share it)."""
        if self._session is not None:
            yield self._session
            return
        with self.db.session() as s:
            self._session = s
            try:
                yield s
            finally:
                self._session = None

    def event(self, kind: str, at: datetime, *, change: str = "", patchset: int = 0, run: int | None = None,
              **kw: Any) -> None:
        # what the server passes as the Change and Run rows: record() copies their fields
        ch = SimpleNamespace(number=change, patchset=patchset, commit=kw.get("commit", ""), project=None) \
            if change or patchset else None
        rn = SimpleNamespace(id=run, change=ch, project=None) if run is not None else None
        with self.tx() as s:
            ev: Event = ledger.record(s, kind, project=self.project, at=at, actor=kw.pop("actor", "test"),
                                      change=ch, run=rn, **kw)  # type: ignore[arg-type]
            s.flush()
            self.written.append(ev.id)

    # -- changes
    def upload(self, change: str, patchset: int, commit: str, at: datetime, title: str = "") -> None:
        self.event("change.uploaded", at, change=change, patchset=patchset, commit=commit,
                   data={"ref": f"refs/changes/{change}/{patchset}", "branch": "main", "title": title, "url": ""})

    def merge(self, change: str, commit: str, at: datetime, title: str = "") -> None:
        self.event("change.merged", at, change=change, commit=commit,
                   data={"ref": "refs/heads/main", "branch": "main", "title": title, "url": ""})

    def push(self, commit: str, at: datetime, title: str = "") -> None:
        self.event("change.pushed", at, commit=commit, data={"ref": "refs/heads/main", "branch": "main",
                                                              "title": title})

    # -- runs
    def run(self, run_id: int, commit: str, queued: datetime, finished: datetime, outcome: str, *,
            change: str = "", patchset: int = 0, pipeline: str = "test", trigger: str = "webhook",
            rerun_of: int | None = None) -> None:
        with self.tx():
            self._run(run_id, commit, queued, finished, outcome, change, patchset, pipeline, trigger, rerun_of)

    def _run(self, run_id: int, commit: str, queued: datetime, finished: datetime, outcome: str, change: str,
             patchset: int, pipeline: str, trigger: str, rerun_of: int | None) -> None:
        self.event("run.queued", queued, change=change, patchset=patchset, run=run_id, commit=commit,
                   data={"pipeline": pipeline, "trigger": trigger})
        self.event("run.finished", finished, change=change, patchset=patchset, run=run_id, commit=commit,
                   outcome=outcome, data={"pipeline": pipeline, "trigger": trigger, "rerun_of": rerun_of,
                                          "duration": (finished - queued).total_seconds()})

    def image(self, run_id: int, commit: str, at: datetime, digest: str, change: str = "") -> None:
        self.event("image.published", at, change=change, run=run_id, commit=commit, image_digest=digest,
                   outcome="pushed", data={"name": f"registry.local/{self.project}", "tags": ["latest"]})

    # -- deployments
    def deploy(self, env: str, revision: int, finished: datetime, outcome: str = "healthy", *,
               commits: list[str] | tuple[str, ...] = (), kind: str = "deploy", started: datetime | None = None,
               digest: str = "", commit: str = "", previous: int | None = None, reason: str = "") -> None:
        with self.tx():
            self._deploy(env, revision, finished, outcome, list(commits), kind, started or finished - 5 * M,
                         digest, commit, previous, reason)

    def _deploy(self, env: str, revision: int, finished: datetime, outcome: str, commits: list[str], kind: str,
                started: datetime, digest: str, commit: str, previous: int | None, reason: str) -> None:
        base = {"image": f"registry.local/{self.project}@{digest}", "kind": kind, "previous_revision": previous}
        self.event("deploy.started", started, environment=env, revision=revision, image_digest=digest,
                   commit=commit, data=base)
        self.event("health.verdict", finished - M, environment=env, revision=revision,
                   outcome="healthy" if outcome == "healthy" else "unhealthy",
                   data={"checks": {}, "reason": "" if outcome == "healthy" else "readiness probe failed"})
        self.event("deploy.finished", finished, environment=env, revision=revision, image_digest=digest,
                   commit=commit, outcome=outcome, data={**base, "commits": list(commits), "reason": reason})

    def rollback(self, env: str, from_rev: int, to_rev: int, started: datetime, finished: datetime, *,
                 automatic: bool, time_to_restore: float | None, outcome: str = "restored") -> None:
        base = {"from_revision": from_rev, "to_revision": to_rev, "automatic": automatic, "reason": "test"}
        with self.tx():
            self.event("rollback.started", started, environment=env, data=base)
            self.event("rollback.finished", finished, environment=env, outcome=outcome,
                       data={**base, "time_to_restore": time_to_restore})


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    d = Database(db_url)
    d.migrate()
    yield d
    d.dispose()


def build_main_history(db: Database) -> History:
    """The history every metric test computes by hand (tests/metrics/test_dora.py explains it).

    Production revisions: 1 healthy, 2 healthy then manually rolled back (rev 3 is the
    rollback), 4 healthy (re-ships 103 and ships the revert 104), 5 an older image (no
    commits), 6 rolled back automatically (rev 7 is the auto-rollback), 8 healthy (106),
    9 failed health gate with no rollback, 10 healthy (108, recovers 9).
    """
    h = History(db)
    with h.tx():
        _main(h)
    return h


def _main(h: History) -> None:
    # change 101: two patchsets; patchset 1 failed, a rerun passed (flaky); patchset 2 passed
    h.upload("101", 1, sha("c101a"), T0 + 1 * H, "Add cart")
    h.run(1, sha("c101a"), T0 + 1 * H, T0 + 1 * H + 10 * M, "failure", change="101", patchset=1)
    h.run(2, sha("c101a"), T0 + 1 * H + 15 * M, T0 + 1 * H + 30 * M, "success", change="101", patchset=1,
          trigger="rerun", rerun_of=1)
    h.upload("101", 2, sha("c101b"), T0 + 2 * H, "Add cart")
    h.run(3, sha("c101b"), T0 + 2 * H, T0 + 2 * H + 20 * M, "success", change="101", patchset=2)
    h.run(7, sha("c101b"), T0 + 2 * H + 30 * M, T0 + 2 * H + 50 * M, "success", change="101", patchset=2,
          trigger="rerun", rerun_of=3)
    # change 102: failed, a recheck failed too, a second recheck passed (flaky)
    h.upload("102", 1, sha("c102"), T0 + 3 * H, "Fix totals")
    h.run(4, sha("c102"), T0 + 3 * H, T0 + 3 * H + 10 * M, "failure", change="102", patchset=1)
    h.run(5, sha("c102"), T0 + 3 * H + 20 * M, T0 + 3 * H + 30 * M, "failure", change="102", patchset=1,
          trigger="recheck", rerun_of=4)
    h.run(6, sha("c102"), T0 + 3 * H + 40 * M, T0 + 3 * H + 50 * M, "success", change="102", patchset=1,
          trigger="recheck", rerun_of=5)
    h.merge("101", sha("m101"), T0 + 5 * H, "Add cart")
    h.run(10, sha("m101"), T0 + 5 * H, T0 + 5 * H + 25 * M, "success", change="101", pipeline="publish")
    h.image(10, sha("m101"), T0 + 5 * H + 30 * M, "sha256:" + "1" * 64, change="101")
    h.merge("102", sha("m102"), T0 + 6 * H, "Fix totals")
    h.run(11, sha("m102"), T0 + 6 * H, T0 + 6 * H + 10 * M, "failure", change="102", pipeline="publish")
    h.run(12, sha("m102"), T0 + 6 * H + 15 * M, T0 + 6 * H + 35 * M, "success", change="102",
          pipeline="publish", trigger="rerun", rerun_of=11)
    h.push(sha("p1"), T0 + 7 * H, "Bump dependency")
    h.deploy("staging", 1, T0 + 7 * H + 30 * M, commits=[sha("p1"), sha("m102"), sha("m101")])
    h.deploy("production", 1, T0 + 8 * H, commits=[sha("p1"), sha("m102"), sha("m101")],
             digest="sha256:" + "1" * 64)
    # change 103 ships at rev 2, which a person rolls back; its error run and a recheck on another commit
    h.upload("103", 1, sha("c103"), T0 + D, "Add feature")
    h.run(8, sha("c103"), T0 + D, T0 + D + 5 * M, "error", change="103", patchset=1)
    h.run(9, sha("c103-other"), T0 + D + 10 * M, T0 + D + 20 * M, "success", change="103", patchset=1,
          trigger="recheck", rerun_of=8)
    h.merge("103", sha("m103"), T0 + D + 2 * H, "Add feature")
    h.deploy("production", 2, T0 + D + 4 * H, commits=[sha("m103")], started=T0 + D + 3 * H + 55 * M)
    h.rollback("production", 2, 1, T0 + D + 6 * H, T0 + D + 6 * H + 10 * M, automatic=False,
               time_to_restore=8100.0)
    h.deploy("production", 3, T0 + D + 6 * H + 10 * M, kind="rollback", commits=[])
    # the revert of 103, shipped at rev 4 together with 103 again
    h.upload("104", 1, sha("c104"), T0 + 2 * D, 'Revert "Add feature"')
    h.merge("104", sha("m104"), T0 + 2 * D + 1 * H, 'Revert "Add feature"')
    h.deploy("production", 4, T0 + 2 * D + 3 * H, commits=[sha("m104"), sha("m103")])
    # change 105 merges but is never deployed: in flight
    h.upload("105", 1, sha("c105"), T0 + 3 * D, "Refactor")
    h.merge("105", sha("m105"), T0 + 3 * D + 1 * H, "Refactor")
    # rev 5 re-deploys an older image: no new commits
    h.deploy("production", 5, T0 + 4 * D, commits=[])
    # change 106: its first deploy (rev 6) is rolled back automatically; rev 8 ships it
    h.upload("106", 1, sha("c106"), T0 + 8 * D, "Speed up search")
    h.merge("106", sha("m106"), T0 + 8 * D + 1 * H, "Speed up search")
    h.deploy("production", 6, T0 + 8 * D + 3 * H, "rolled-back", commits=[sha("m106")],
             started=T0 + 8 * D + 2 * H + 50 * M)
    h.rollback("production", 6, 5, T0 + 8 * D + 3 * H, T0 + 8 * D + 3 * H + 5 * M, automatic=True,
               time_to_restore=900.0)
    h.deploy("production", 7, T0 + 8 * D + 3 * H + 5 * M, kind="auto-rollback", commits=[])
    h.deploy("production", 8, T0 + 9 * D, commits=[sha("m106")])
    # change 107 is still in review
    h.upload("107", 1, sha("c107"), T0 + 9 * D, "Draft")
    # change 108: rev 9 fails its health gate (no rollback); rev 10 ships it and recovers
    h.upload("108", 1, sha("c108"), T0 + 9 * D + 1 * H, "Tune cache")
    h.merge("108", sha("m108"), T0 + 9 * D + 2 * H, "Tune cache")
    h.deploy("production", 9, T0 + 10 * D, "failed", commits=[sha("m108")], started=T0 + 10 * D - 10 * M)
    h.deploy("production", 10, T0 + 10 * D + 2 * H, commits=[sha("m108")])


@pytest.fixture
def main_history(db: Database) -> History:
    return build_main_history(db)


# ------------------------------------------------------------------ a real HTTP server for the CLI
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    app: Any


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """chute's app served by uvicorn on 127.0.0.1 in a thread (the CLI talks HTTP to it)."""
    import uvicorn

    from chute.server.app import create_app
    from chute.server.settings import Settings

    app = create_app(Settings(home=tmp_path, database_url=db_url), start_background=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
