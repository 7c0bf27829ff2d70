"""The agent protocol over HTTP: claim, graph, stage updates, logs (idempotent), complete, SSE."""

from __future__ import annotations

import json

from sqlalchemy import select

from chute.server import services
from chute.store import Change, Event, Project


def _queued_run(server, pipeline: str = "publish") -> int:
    st = server.app_state
    with st.db.session() as s:
        p = Project(name="greeter", repo_url="/nowhere", webhook_secret="s")
        ch = Change(project=p, kind="push", commit="c0ffee" * 6 + "abcd", branch="main")
        s.add_all([p, ch])
        s.flush()
        run = services.queue_run(s, st.settings, p, ch, pipeline, trigger="manual", actor="ada", trusted=True)
        return run.id


def test_a_run_goes_through_the_protocol_and_lands_with_images_and_ledger(server) -> None:
    run_id = _queued_run(server)
    h = server.admin
    r = server.post("/api/v1/agents/claim", json={"agent": "a1", "wait": 0}, headers=h)
    assert r.status_code == 200
    job = r.json()
    assert job["run_id"] == run_id and job["payload"]["pipeline"] == "publish" and job["payload"]["trusted"]
    jid = job["job_id"]
    assert server.post("/api/v1/agents/claim", json={"agent": "a2", "wait": 0}, headers=h).status_code == 204

    graph = {"stages": ["test", "production"], "edges": [["test", "production"]]}
    assert server.post(f"/api/v1/jobs/{jid}/graph", json={"agent": "a1", "graph": graph}, headers=h).status_code == 204
    server.post(f"/api/v1/jobs/{jid}/stage", json={"agent": "a1", "stage": "test", "status": "running"}, headers=h)
    chunks = [{"seq": 1, "stage": "test", "text": "Ran 2 tests\n"}, {"seq": 2, "stage": "test", "text": "OK\n"}]
    assert server.post(f"/api/v1/jobs/{jid}/logs", json={"agent": "a1", "chunks": chunks}, headers=h).status_code == 204
    # A retried delivery of the same chunks is ignored.
    server.post(f"/api/v1/jobs/{jid}/logs", json={"agent": "a1", "chunks": chunks}, headers=h)
    # Another agent cannot write into this job.
    r = server.post(f"/api/v1/jobs/{jid}/logs", json={"agent": "a2", "chunks": chunks}, headers=h)
    assert r.status_code == 409 and "not held by agent a2" in r.json()["detail"]

    run = server.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "running" and [s["status"] for s in run["stages"]] == ["running", "pending"]
    logs = server.get(f"/api/v1/runs/{run_id}/logs").json()
    assert "".join(c["text"] for c in logs) == "Ran 2 tests\nOK\n"

    digest = "sha256:" + "ab" * 32
    result = {
        "status": "success", "duration": 12.5,
        "stages": [{"name": "test", "status": "success", "exports": {"imageID": "1234"}},
                   {"name": "production", "status": "success", "exports": {"imageTag": "t1"}}],
        "images": [{"stage": "production", "name": "127.0.0.1:15000/greeter", "tags": ["t1", "latest"],
                    "digest": digest}],
    }
    assert server.post(f"/api/v1/jobs/{jid}/complete", json={"agent": "a1", "result": result},
                       headers=h).status_code == 204
    run = server.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "success" and run["finished_at"]
    assert run["images"][0]["references"] == [f"127.0.0.1:15000/greeter:t1@{digest}",
                                              f"127.0.0.1:15000/greeter:latest@{digest}"]
    # The job is done: a late heartbeat learns it lost it.
    assert server.post(f"/api/v1/jobs/{jid}/heartbeat", json={"agent": "a1"}, headers=h).json()["status"] == "lost"
    with server.app_state.db.session() as s:
        kinds = [e.kind for e in s.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id))]
    assert kinds == ["run.queued", "run.started", "stage.finished", "stage.finished", "image.published",
                     "run.finished"]


def test_sse_stream_sends_status_and_logs_and_ends(server) -> None:
    run_id = _queued_run(server)
    h = server.admin
    jid = server.post("/api/v1/agents/claim", json={"agent": "a1", "wait": 0}, headers=h).json()["job_id"]
    server.post(f"/api/v1/jobs/{jid}/logs", json={"agent": "a1", "chunks": [{"seq": 5, "stage": "t", "text": "hi\n"}]},
                headers=h)
    server.post(f"/api/v1/jobs/{jid}/complete", json={"agent": "a1", "result": {"status": "failure",
                "error": "stage t failed", "stages": [{"name": "t", "status": "failure", "error": "exit 1"}]}},
                headers=h)
    events = []
    with server.stream("GET", f"/api/v1/runs/{run_id}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
            if kind == "end":
                break
    assert ("log", {"seq": 5, "stage": "t", "text": "hi\n"}) in events
    run_events = [d for k, d in events if k == "run"]
    assert run_events[-1]["status"] == "failure" and run_events[-1]["stages"] == {"t": "failure"}
    assert server.get(f"/api/v1/runs/{run_id}").json()["reason"] == "stage t failed"


def test_cancel_rerun_and_rerun_failed_stages(server) -> None:
    run_id = _queued_run(server)
    h = server.admin
    r = server.post(f"/api/v1/runs/{run_id}/rerun", json={}, headers=h)
    assert r.status_code == 409 and "still queued" in r.json()["detail"]
    assert server.post(f"/api/v1/runs/{run_id}/cancel", headers=h).json()["status"] == "cancelled"
    assert server.post(f"/api/v1/runs/{run_id}/cancel", headers=h).status_code == 409
    r = server.post(f"/api/v1/runs/{run_id}/rerun", json={"failed_only": True}, headers=h)
    assert r.status_code == 409 and "no passed stage" in r.json()["detail"]
    new = server.post(f"/api/v1/runs/{run_id}/rerun", json={}, headers=h).json()
    assert new["rerun_of"] == run_id and new["status"] == "queued" and new["trigger"] == "rerun"

    # A run whose first stage passed and second failed: "rerun failed stages" carries the first's exports.
    job = server.post("/api/v1/agents/claim", json={"agent": "a", "wait": 0}, headers=h).json()
    result = {"status": "failure", "stages": [
        {"name": "build", "status": "success", "exports": {"imageID": "feed"}},
        {"name": "test", "status": "failure", "error": "exit 1"}]}
    server.post(f"/api/v1/jobs/{job['job_id']}/complete", json={"agent": "a", "result": result}, headers=h)
    again = server.post(f"/api/v1/runs/{new['id']}/rerun", json={"failed_only": True}, headers=h).json()
    assert again["reuse_from"] == new["id"]
    job2 = server.post("/api/v1/agents/claim", json={"agent": "a", "wait": 0}, headers=h).json()
    assert job2["run_id"] == again["id"]
    assert job2["payload"]["reuse"] == {"build": {"exports": {"imageID": "feed"}, "run": new["id"]}}
