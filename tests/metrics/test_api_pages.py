"""HTTP: /api/v1/metrics, the trace API, /api/v1/events, /metrics, the dashboard and trace pages."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chute.metrics import compute_metrics, urls
from chute.server.app import create_app
from chute.server.settings import Settings
from chute.store import Database, ledger

from .conftest import T0, History, build_main_history, sha


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(home=tmp_path, database_url=db_url), start_background=False)
    with TestClient(app) as c:
        yield c


def _db(client: TestClient) -> Database:
    return client.app.state.chute.db  # type: ignore[attr-defined]


def test_metrics_api_is_compute_metrics(client: TestClient) -> None:
    db = _db(client)
    build_main_history(db)
    r = client.get("/api/v1/metrics", params={"project": "shop", "since": "2026-03-02", "until": "2026-03-16"})
    assert r.status_code == 200
    body = r.json()
    assert body == json.loads(json.dumps(compute_metrics(db, project="shop", since=T0,
                                                        until=T0.replace(day=16))))
    assert body["deployment_count"] == 8 and body["flakiness"][0]["pipeline"] == "publish"


def test_metrics_api_errors(client: TestClient) -> None:
    r = client.get("/api/v1/metrics", params={"since": "last tuesday"})
    assert r.status_code == 400 and "since" in r.json()["detail"] and "30d" in r.json()["detail"]
    r = client.get("/api/v1/metrics", params={"project": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_metrics_are_live(client: TestClient) -> None:
    """A deployment recorded through the ledger shows in /api/v1/metrics and /metrics at once."""
    db = _db(client)
    h = History(db)
    assert client.get("/api/v1/metrics").json()["deployment_count"] == 0
    assert "chute_deployments_total" not in client.get("/metrics").text.split("# TYPE chute_deployments_total")[-1]
    started = time.monotonic()
    with db.session() as s:  # the way the deploy code records it: in its own transaction
        ledger.record(s, "deploy.finished", project="shop", environment="production", revision=1,
                      outcome="healthy", actor="deployer", data={"kind": "deploy", "commits": []})
    assert client.get("/api/v1/metrics").json()["deployment_count"] == 1
    line = 'chute_deployments_total{environment="production",kind="deploy",outcome="healthy",project="shop"} 1.0'
    assert line in client.get("/metrics").text
    h.deploy("production", 2, T0, "failed")
    assert client.get("/api/v1/metrics").json()["failed_deployment_count"] == 1
    assert 'outcome="failed",project="shop"} 1.0' in client.get("/metrics").text
    assert time.monotonic() - started < 5


def test_prometheus_content_type(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE chute_queue_depth gauge" in r.text and "# TYPE chute_lead_time_seconds histogram" in r.text


def test_trace_api(client: TestClient) -> None:
    build_main_history(_db(client))
    r = client.get("/api/v1/projects/shop/trace", params={"change": "101"})
    assert r.status_code == 200 and r.json()["type"] == "patch"
    assert r.json()["lead_time_from_upload_seconds"] == 7 * 3600
    r = client.get("/api/v1/projects/shop/trace", params={"commit": sha("m102")[:8]})
    assert r.json()["change"] == "102"
    r = client.get("/api/v1/projects/shop/trace", params={"environment": "production", "revision": 4})
    assert r.json()["type"] == "deployment" and [c["change"] for c in r.json()["changes"]] == ["104", "103"]
    r = client.get("/api/v1/projects/shop/trace")
    assert r.status_code == 400 and "hint" in r.json()
    r = client.get("/api/v1/projects/shop/trace", params={"environment": "production", "revision": 77})
    assert r.status_code == 404 and "recent revisions" in r.json()["hint"]
    assert client.get("/api/v1/projects/ghost/trace", params={"change": "1"}).status_code == 404


def test_events_api_streams_jsonl(client: TestClient) -> None:
    h = build_main_history(_db(client))
    r = client.get("/api/v1/events", params={"format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    docs = [json.loads(x) for x in r.text.splitlines()]
    # The server's first start made the bootstrap admin and its token; then the history.
    first = [d["kind"] for d in docs if d["id"] not in set(h.written)]
    assert first == ["user.created", "token.created"], first
    assert [d["id"] for d in docs[len(first):]] == sorted(h.written)
    r = client.get("/api/v1/events", params={"project": "shop"})
    assert [json.loads(x)["id"] for x in r.text.splitlines()] == sorted(h.written)
    r = client.get("/api/v1/events", params={"project": "shop", "kind": ["deploy.finished", "rollback.finished"],
                                             "since": "2026-03-10T00:00:00Z"})
    assert {json.loads(x)["kind"] for x in r.text.splitlines()} == {"deploy.finished", "rollback.finished"}
    r = client.get("/api/v1/events", params={"after": h.written[-3]})
    assert [json.loads(x)["id"] for x in r.text.splitlines()] == h.written[-2:]
    assert client.get("/api/v1/events", params={"format": "csv"}).status_code == 400


def test_pages_render_without_javascript(client: TestClient) -> None:
    build_main_history(_db(client))
    pages = {
        urls.dashboard("shop", weeks="all"): ["Delivery metrics", "<svg", "Deployments per week", "Lead time trend",
                                              "Change failure rate", "Time to restore", "Flakiness per pipeline"],
        urls.dashboard(): ["all projects"],
        urls.trace_change("shop", "101"): ["Change 101", "Add cart", "tests passed (test, run 3)",
                                           urls.trace_deployment("shop", "production", 1), "/runs/3"],
        urls.trace_commit("shop", sha("p1")): ["Bump dependency", "pushed"],
        urls.trace_deployment("shop", "production", 4): ["revision 4", urls.trace_change("shop", "104"),
                                                         "already shipped by", urls.trace_commit("shop", sha("m103"))],
        urls.trace_deployment("shop", "production", 6): ["Automatically rolled back", "15 min 00 s"],
        urls.environment("shop", "production"): [urls.trace_deployment("shop", "production", 10), "auto-rollback"],
        urls.trace_search("shop"): ["<form", "production", "staging"],
    }
    for url, needles in pages.items():
        r = client.get(url)
        assert r.status_code == 200, url
        assert "<script" not in r.text
        for needle in needles:
            assert needle in r.text, (url, needle)


def test_dashboard_numbers_and_escaping(client: TestClient) -> None:
    db = _db(client)
    h = History(db, project="<i>evil&co")
    h.push(sha("x"), T0, "<script>alert(1)</script>")
    h.deploy("production", 1, T0, commits=[sha("x")])
    r = client.get(urls.dashboard("<i>evil&co", weeks="all"))
    assert r.status_code == 200 and "<i>evil" not in r.text and "&lt;i&gt;evil&amp;co" in r.text
    r = client.get(urls.trace_commit("<i>evil&co", sha("x")))
    assert r.status_code == 200 and "<script>alert" not in r.text


def test_page_errors(client: TestClient) -> None:
    build_main_history(_db(client))
    r = client.get(urls.trace_change("shop", "424242"))
    assert r.status_code == 404 and "no change" in r.text
    assert client.get(urls.trace_change("ghost", "1")).status_code == 404
    assert client.get("/metrics/dashboard", params={"weeks": "lots"}).status_code == 400
    assert client.get("/metrics/dashboard", params={"project": "ghost"}).status_code == 404
    r = client.get("/projects/shop/trace", params={"change": "101"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == urls.trace_change("shop", "101")
    r = client.get("/projects/shop/trace", params={"environment": "production", "revision": "4"},
                   follow_redirects=False)
    assert r.headers["location"] == "/projects/shop/trace/deploy/production/4"


def test_dashboard_chart_bars_match_the_series(client: TestClient) -> None:
    build_main_history(_db(client))
    html = client.get(urls.dashboard("shop", weeks="all")).text
    # every week's healthy and failed bars carry their exact values in <title>
    assert re.search(r"03-02 — healthy: 3</title>", html) and re.search(r"03-02 — failed: 1</title>", html)
    assert re.search(r"03-09 — healthy: 2</title>", html) and re.search(r"03-09 — failed: 2</title>", html)
