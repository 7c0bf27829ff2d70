"""Regression tests for what the chaos tests found (docs/crash-safety.md, "Bugs found"), each on its own.

Fast and deterministic: the crash is staged (a lease that ran out while the server was down, a
transaction held open at the wrong moment, a port nobody answers on) instead of waited for.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chute.agent.client import AgentClient
from chute.server.app import create_app
from chute.server.settings import Settings
from chute.store import Change, Database, Event, Job, Project, Run, StageResult, utcnow
from chute.store.queue import Queue, enqueue, held_for_update

from .harness import free_port


def _queued_run(db: Database) -> int:
    with db.session() as s:
        p = Project(name="p", repo_url="/r", webhook_secret="x")
        run = Run(project=p, change=Change(project=p, kind="push", commit="a" * 40), pipeline="test")
        s.add(run)
        s.flush()
        enqueue(s, run, {"pipeline": "test"})
        return run.id


def _kinds(db: Database, run_id: int) -> list[str]:
    with db.session() as s:
        return [e.kind for e in s.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id))]


@pytest.fixture
def app_settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    return Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://chute.test",
                    lease_seconds=30)


def test_a_restarted_server_lets_running_jobs_report_back(app_settings: Settings) -> None:
    """Bug: at start the reaper requeued every job whose lease ran out while the server was down,
    though its agent was alive and still working: each server restart cost every running run an
    attempt (and, three restarts in, failed it with "agent stopped sending heartbeats")."""
    first = create_app(app_settings, start_background=False)
    with TestClient(first):
        db = first.state.chute.db
        run_id = _queued_run(db)
        claim = first.state.chute.queue.claim("busy-agent", lease=3)
        assert claim is not None
    # The server was down for a minute; the agent kept running the job.
    with db.session() as s:
        s.get(Job, claim.job_id).lease_until = utcnow() - timedelta(seconds=60)
    second = create_app(app_settings, start_background=False)
    with TestClient(second):
        q = second.state.chute.queue
        assert q.reap_expired() == []  # the reaper's first round leaves it alone
        assert q.heartbeat(claim.job_id, "busy-agent", lease=30) == "ok"  # and the agent carries on
        with second.state.chute.db.session() as s:
            job = s.get(Job, claim.job_id)
            assert job.status == "claimed" and job.attempts == 1
            assert s.get(Run, run_id).status == "running"
        # A dead agent's job still comes back, one lease later.
        assert q.reap_expired(now=utcnow() + timedelta(seconds=31)) == [(run_id, "queued")]
    assert _kinds(db, run_id) == ["run.started", "run.requeued"]


def test_a_run_the_server_gives_up_on_keeps_no_stage_running(db_url: str) -> None:
    """Bug: when the last attempt's agent died mid-stage, the reaper ended the run ``error`` but
    left the stage ``running`` for ever (a half-written record on the run page)."""
    db = Database(db_url)
    db.migrate()
    run_id = _queued_run(db)
    q = Queue(db)
    for attempt in (1, 2, 3):
        claim = q.claim(f"agent-{attempt}", lease=1)
        assert claim is not None and claim.attempt == attempt
        with db.session() as s:
            run = s.get(Run, run_id)
            if attempt == 1:  # what the agent reported before it died: build passed, test started
                run.stages.append(StageResult(name="build", status="success"))
                run.stages.append(StageResult(name="test", status="running", started_at=utcnow()))
        q.reap_expired(now=utcnow() + timedelta(seconds=5))
    with db.session() as s:
        run = s.get(Run, run_id)
        assert run.status == "error" and "gave up after 3 attempts" in run.reason
        stages = {st.name: (st.status, st.error) for st in run.stages}
        assert stages["build"] == ("success", "")
        assert stages["test"][0] == "cancelled" and "stopped sending heartbeats" in stages["test"][1]
        ev = s.scalars(select(Event).where(Event.run_id == run_id, Event.kind == "stage.finished")).one()
        assert ev.stage == "test" and ev.outcome == "cancelled"
    db.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_reaper_leaves_a_job_whose_completion_is_being_written(db_url: str) -> None:
    """Bug (PostgreSQL): the reaper read an expired job, then overwrote the completion an agent
    was committing at that moment: the run ended finished *and* requeued, and ran again."""
    db = Database(db_url)
    db.migrate()
    run_id = _queued_run(db)
    q = Queue(db)
    claim = q.claim("slow-agent", lease=1)
    assert claim is not None
    with db.session() as s:  # the complete call: the agent still holds the job, the row is locked
        job = held_for_update(s, claim.job_id)
        assert job is not None and job.status == "claimed"
        reaped: list[object] = []
        reaper = threading.Thread(target=lambda: reaped.extend(q.reap_expired(now=utcnow() + timedelta(seconds=5))))
        reaper.start()
        reaper.join(10)
        assert not reaper.is_alive(), "the reaper waited for the agent's transaction"
        assert q.finish(s, claim.job_id, "slow-agent") is not None
        s.get(Run, run_id).status = "success"
    assert reaped == []
    with db.session() as s:
        assert s.get(Job, claim.job_id).status == "done" and s.get(Run, run_id).status == "success"
    assert "run.requeued" not in _kinds(db, run_id)
    db.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_completion_that_loses_the_race_with_the_reaper_is_refused(app_settings: Settings) -> None:
    """The same race the other way round: the reaper requeued the job first; the agent's late
    completion used to read the job before that commit and overwrite it. Now it waits, sees the
    job requeued and is told 409 (drop the result)."""
    app = create_app(app_settings, start_background=False)
    with TestClient(app) as client:
        state = app.state.chute
        run_id = _queued_run(state.db)
        claim = state.queue.claim("late-agent", lease=1)
        assert claim is not None
        answers: list[int] = []
        with state.db.session() as s:  # the reaper, half-way: the job is requeued but not committed yet
            job = held_for_update(s, claim.job_id)
            job.status, job.agent, job.lease_until = "queued", None, None
            s.get(Run, run_id).status = "queued"

            def complete() -> None:
                r = client.post(f"/api/v1/jobs/{claim.job_id}/complete",
                                headers={"Authorization": f"Bearer {state.admin_token}"},
                                json={"agent": "late-agent", "result": {"status": "success", "stages": []}})
                answers.append(r.status_code)

            late = threading.Thread(target=complete)
            late.start()
            time.sleep(1.0)
            assert answers == [], "the completion did not wait for the reaper's transaction"
        late.join(10)
        assert answers == [409]
        with state.db.session() as s:
            assert s.get(Job, claim.job_id).status == "queued" and s.get(Run, run_id).status == "queued"
        assert "run.finished" not in _kinds(state.db, run_id)


class _LateServer:
    """Nothing listens on the port until ``start`` (a server being restarted), then 204 to everything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def late_server() -> Iterator[_LateServer]:
    server = _LateServer()
    yield server
    if server.httpd is not None:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_an_agent_waits_for_its_server_during_a_job(late_server: _LateServer) -> None:
    """Bug: a job's stage or log call gave up after five tries (about 12 s); the exception went up
    through the runner and out of ``chute agent``, which exited. A server restart that took a
    little longer killed every agent that was running a job."""
    client = AgentClient(f"http://127.0.0.1:{late_server.port}", "t", "a1", patience=60)
    threading.Timer(10.0, late_server.start).start()  # longer than the five tries used to last
    t0 = time.monotonic()
    client.stage(7, "test", "running")  # waits for the server instead of raising
    assert 9.5 < time.monotonic() - t0 < 60
    client.patience = 1.0
    late_server.httpd.shutdown()  # type: ignore[union-attr]
    late_server.httpd.server_close()  # type: ignore[union-attr]
    late_server.httpd = None
    with pytest.raises(ConnectionError, match="unreachable"):
        client.stage(7, "test", "success")  # bounded all the same
    client.close()


@pytest.mark.podman
def test_an_agent_removes_what_a_killed_process_of_it_left(tmp_path: Path) -> None:
    """Bug: an agent killed mid-run left its container running (conmon keeps it) and then exited
    in podman's storage for ever; nobody owned it. Now every container a job starts carries
    ``chute.agent=<name>`` and the agent, when it starts, removes its own."""
    from chute.agent import Worker

    from .conftest import need_podman
    from .harness import containers, podman

    need_podman("localhost/busybox:stable")
    me, other = f"chaos-janitor-{uuid.uuid4().hex[:6]}", f"chaos-other-{uuid.uuid4().hex[:6]}"
    for agent in (me, other):
        podman("run", "-d", "--label", "chute.test=1", "--label", f"chute.agent={agent}", "--label", "chute.run=7",
               "localhost/busybox:stable", "sleep", "60", check=True)
    client = AgentClient("http://127.0.0.1:9", "t", me)  # never called: the janitor needs no server
    worker = Worker(client, tmp_path / "agent")
    (worker.workdir / "run-7-7" / "src").mkdir(parents=True)
    try:
        removed = worker.clean_up_after_crash()
        assert len(removed) == 1
        assert containers(f"chute.agent={me}") == []
        assert len(containers(f"chute.agent={other}")) == 1  # another agent's work is not ours to remove
        assert not worker.workdir.exists()
    finally:
        for agent in (me, other):
            for c in containers(f"chute.agent={agent}"):
                podman("rm", "-f", "-t", "0", c["name"])
        client.close()


def test_a_claim_never_holds_the_event_loop_while_the_database_is_busy(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug (SQLite): the claim route wrote the agent's last-seen time on the event loop. When another
    session held the write lock, the whole server stood still; when that session's commit itself
    waited for the loop (a request's session is closed by the loop), nothing moved for the full
    30 s busy timeout. Seen in the chaos test as 30 s without a single request served after a
    restart, when all agents came back at once."""
    import sqlite3

    import uvicorn
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    path = tmp_path / "chute.db"
    port = free_port()
    app = create_app(Settings(home=home, database_url=f"sqlite:///{path}", embedded_agent=False, port=port),
                     start_background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    armed, fired = threading.Event(), threading.Event()

    def another_writer(session: Session) -> None:
        """Right after the claim commits, someone else writes for 3 s."""
        if armed.is_set() and any(isinstance(o, Job) and o.status == "claimed" for o in session.identity_map.values()):
            armed.clear()
            con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            con.execute("BEGIN IMMEDIATE")
            threading.Timer(3.0, lambda: (con.execute("COMMIT"), con.close())).start()
            fired.set()

    event.listen(Session, "after_commit", another_writer)
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        _queued_run(app.state.chute.db)
        token = app.state.chute.admin_token
        assert httpx.get(f"{url}/openapi.json").status_code == 200  # built once, cached
        answers: list[int] = []
        armed.set()
        claim = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{url}/api/v1/agents/claim", json={"agent": "a1", "wait": 0},
            headers={"Authorization": f"Bearer {token}"}, timeout=60).status_code))
        claim.start()
        assert fired.wait(20)
        t0 = time.monotonic()
        assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 200
        assert time.monotonic() - t0 < 1.5, "the server stood still while the claim waited for the database"
        claim.join(30)
        assert answers == [200]
    finally:
        event.remove(Session, "after_commit", another_writer)
        server.should_exit = True
        thread.join(30)


def test_a_third_attempt_still_ships_its_logs(app_settings: Settings) -> None:
    """Bug (PostgreSQL): log chunks were numbered attempt * 10^9 + n; from the third attempt on
    that is beyond the 32-bit ``seq`` column, every log call failed with a 500 and the agent
    retried it (for ten minutes, once it learnt to wait for its server). Found by the chaos test."""
    from chute.agent.worker import LogShipper
    from chute.store import LogChunk

    app = create_app(app_settings, start_background=False)
    with TestClient(app) as tc:
        state = app.state.chute
        run_id = _queued_run(state.db)
        for _ in range(2):  # two agents died
            assert state.queue.claim("dead", lease=1) is not None
            state.queue.reap_expired(now=utcnow() + timedelta(seconds=5))
        claim = state.queue.claim("third", lease=30)
        assert claim is not None and claim.attempt == 3
        client = AgentClient("http://testserver", state.admin_token, "third")
        client.http.close()
        client.http = TestClient(app, headers={"Authorization": f"Bearer {state.admin_token}"})
        shipper = LogShipper(client, claim.job_id, claim.attempt, interval=60)
        shipper.add("test", "third time lucky\n")
        shipper.close()
        assert not shipper.pending, "the chunk was not accepted"
        with state.db.session() as s:
            (chunk,) = s.scalars(select(LogChunk).where(LogChunk.run_id == run_id))
            assert chunk.text == "third time lucky\n" and chunk.seq < 2**31
        # A number the column cannot hold (BIGINT, and JSON parsers keep integers exact to 2^53) is the
        # agent's mistake: a clear 422, not a 500.
        r = tc.post(f"/api/v1/jobs/{claim.job_id}/logs", headers={"Authorization": f"Bearer {state.admin_token}"},
                    json={"agent": "third", "chunks": [{"seq": 2**53 + 1, "stage": "test", "text": "x"}]})
        assert r.status_code == 422 and "seq" in r.text


def test_a_server_error_is_not_waited_out_like_a_restart(late_server: _LateServer) -> None:
    """A 500 is the server's answer, not its absence: a job's call gives up after its five tries
    instead of holding the run for the whole patience (and the agent drops the job)."""
    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    late_server.httpd = ThreadingHTTPServer(("127.0.0.1", late_server.port), Failing)
    threading.Thread(target=late_server.httpd.serve_forever, daemon=True).start()
    client = AgentClient(f"http://127.0.0.1:{late_server.port}", "t", "a1", patience=120)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="HTTP 500"):
        client.stage(7, "test", "running")
    assert time.monotonic() - t0 < 30
    client.close()


def test_an_acknowledged_write_is_committed_before_the_answer(db_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: routes on the request's session (add a project; an agent's graph, stage and logs;
    cancel) committed *after* the response was sent, FastAPI's default for dependencies with
    yield. A client was told 201/204 for writes a crash could still lose, and did not find them
    in its next request (the chaos test on PostgreSQL: a project created, the trigger right after
    it answered 404)."""
    import uvicorn
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from tests.conftest import make_repo

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    repo = make_repo(tmp_path / "repo", files={"README": "x\n"})
    port = free_port()
    app = create_app(Settings(home=home, database_url=db_url, embedded_agent=False, port=port),
                     start_background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    committed: list[float] = []

    def inserts(session: Session, _flush: object) -> None:
        if any(isinstance(o, Project) for o in session.new):
            session.info["adds_project"] = True

    def slow(session: Session) -> None:  # a commit that takes its time, as on a busy disk
        if session.info.get("adds_project"):
            time.sleep(1.0)

    def done(session: Session) -> None:
        if session.info.pop("adds_project", False):
            committed.append(time.monotonic())

    event.listen(Session, "after_flush", inserts)
    event.listen(Session, "before_commit", slow)
    event.listen(Session, "after_commit", done)
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        h = {"Authorization": f"Bearer {app.state.chute.admin_token}"}
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/projects", json={"repo": str(repo), "name": "p"},
                       headers=h, timeout=30)
        answered = time.monotonic()
        assert r.status_code == 201, r.text
        assert committed and committed[0] <= answered, "201 was sent before the project was committed"
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/projects/p", headers=h, timeout=30).status_code == 200
    finally:
        event.remove(Session, "after_flush", inserts)
        event.remove(Session, "before_commit", slow)
        event.remove(Session, "after_commit", done)
        server.should_exit = True
        thread.join(30)


def test_a_killed_agents_long_poll_claims_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: an agent killed while its claim long-polled left the poll running on the server for up
    to ``wait`` seconds; a job queued meanwhile was claimed for the dead agent and sat out a lease
    (an attempt lost, and three of them fail the run)."""
    import json
    import socket

    import uvicorn

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    port = free_port()
    app = create_app(Settings(home=home, database_url=f"sqlite:///{tmp_path / 'chute.db'}", embedded_agent=False,
                              port=port), start_background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        state = app.state.chute
        body = json.dumps({"agent": "doomed", "wait": 20}).encode()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /api/v1/agents/claim HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {state.admin_token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        time.sleep(1.0)  # the poll is waiting on the server
        sock.close()  # SIGKILL: the kernel closes the agent's connection
        run_id = _queued_run(state.db)
        state.wake_agents()
        time.sleep(4.0)  # more than the poll's 2 s rounds
        with state.db.session() as s:
            job = s.scalars(select(Job).where(Job.run_id == run_id)).one()
            assert (job.status, job.agent) == ("queued", None), "a dead agent's poll claimed the job"
    finally:
        server.should_exit = True
        thread.join(30)
