"""Ledger export: JSON lines with the documented schema, and the Elasticsearch/OpenSearch _bulk API.

Elasticsearch cannot run here, so ``FakeElasticsearch`` is a real HTTP server on
127.0.0.1 that checks every request against the _bulk API's documented shape
(POST /_bulk, Content-Type application/x-ndjson, newline-terminated action and
source lines) and answers like Elasticsearch does, including per-item errors.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chute.metrics import ExportError, bulk_index, export_events, export_to_elasticsearch, iter_events
from chute.store import Database, ledger

from .conftest import T0, H, History

SCHEMA = ["id", "at", "kind", "actor", "project", "change", "patchset", "commit", "run", "stage", "image_digest",
          "environment", "revision", "command", "outcome", "data"]


class FakeElasticsearch:
    """Accepts _bulk requests, checks their shape, keeps the indexed documents."""

    def __init__(self, *, reject_kind: str | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if credentials is not None:
                    want = "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._answer(401, {"error": {"type": "security_exception",
                                                            "reason": "missing authentication credentials"},
                                                  "status": 401})
                if self.path != "/_bulk":
                    fake.problems.append(f"path {self.path}")
                    return self._answer(404, {"error": "no handler"})
                if self.headers.get("Content-Type") != "application/x-ndjson":
                    fake.problems.append(f"content type {self.headers.get('Content-Type')}")
                    return self._answer(406, {"error": "Content-Type header is not supported", "status": 406})
                if not body.endswith(b"\n"):
                    fake.problems.append("body does not end with a newline")
                    return self._answer(400, {"error": {"type": "illegal_argument_exception",
                                                        "reason": "The bulk request must be terminated by a newline"}})
                lines = body.decode().split("\n")[:-1]
                if len(lines) % 2:
                    fake.problems.append("odd number of lines")
                items, errors = [], False
                for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
                    action, source = json.loads(action_line), json.loads(source_line)
                    meta = action.get("index")
                    if set(action) != {"index"} or not meta or set(meta) != {"_index", "_id"}:
                        fake.problems.append(f"action line {action_line}")
                        continue
                    if meta["_id"] != str(source["id"]) or "@timestamp" not in source:
                        fake.problems.append(f"source {source_line}")
                    if reject_kind and source["kind"] == reject_kind:
                        errors = True
                        items.append({"index": {"_index": meta["_index"], "_id": meta["_id"], "status": 400,
                                                "error": {"type": "mapper_parsing_exception",
                                                          "reason": "failed to parse field [data.commits]"}}})
                        continue
                    created = meta["_id"] not in fake.docs
                    fake.docs[meta["_id"]] = source
                    items.append({"index": {"_index": meta["_index"], "_id": meta["_id"], "_version": 1,
                                            "result": "created" if created else "updated",
                                            "status": 201 if created else 200}})
                self._answer(200, {"took": 3, "errors": errors, "items": items})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def es() -> Iterator[FakeElasticsearch]:
    fake = FakeElasticsearch()
    yield fake
    fake.close()


def _history(db: Database) -> History:
    h = History(db)
    h.upload("1", 1, "a" * 40, T0, "Ünïcode title")
    h.merge("1", "b" * 40, T0 + H)
    h.deploy("production", 1, T0 + 2 * H, commits=["b" * 40])
    other = History(db, project="other")
    other.push("c" * 40, T0 + 3 * H)
    return h


def test_jsonl_lines_follow_the_documented_schema(db: Database) -> None:
    h = _history(db)
    out = io.StringIO()
    n = export_events(db, out=out)
    lines = out.getvalue().splitlines()
    assert n == len(lines) == len(h.written) + 1  # + other's push
    docs = [json.loads(line) for line in lines]
    assert all(list(d) == SCHEMA for d in docs)
    assert [d["id"] for d in docs] == sorted(d["id"] for d in docs)
    first = docs[0]
    assert first["kind"] == "change.uploaded" and first["at"] == "2026-03-02T00:00:00Z"
    assert first["change"] == "1" and first["patchset"] == 1 and first["run"] is None
    assert first["data"]["title"] == "Ünïcode title" and "Ünïcode" in lines[0]  # UTF-8, not \\u escapes
    finished = next(d for d in docs if d["kind"] == "deploy.finished")
    assert finished["environment"] == "production" and finished["revision"] == 1
    assert finished["data"]["commits"] == ["b" * 40] and finished["outcome"] == "healthy"
    # the export is exactly ledger.to_json of each row
    with db.read_session() as s:
        from chute.store import Event

        assert docs == [ledger.to_json(e) for e in s.query(Event).order_by(Event.id)]


def test_filters(db: Database) -> None:
    _history(db)
    only_other = [d["project"] for d in iter_events(db, project="other")]
    assert only_other == ["other"]
    later = list(iter_events(db, since=T0 + 2 * H))
    assert later and all(d["at"] >= "2026-03-02T02:00:00Z" for d in later)
    all_ids = [d["id"] for d in iter_events(db)]
    assert [d["id"] for d in iter_events(db, after_id=all_ids[2])] == all_ids[3:]
    assert {d["kind"] for d in iter_events(db, kinds=["deploy.finished"])} == {"deploy.finished"}


def test_export_streams_in_batches(db: Database) -> None:
    """A consumer can stop early: the rows are fetched batch by batch, not all at once."""
    h = History(db)
    with h.tx():
        for i in range(120):
            h.push(f"{i:040x}", T0)
    it = iter_events(db, batch_size=10)
    first = [next(it) for _ in range(15)]
    assert [d["commit"] for d in first] == [f"{i:040x}" for i in range(15)]
    it.close()  # closes the cursor and the read session


def test_bulk_export_request_shape_and_idempotence(db: Database, es: FakeElasticsearch) -> None:
    h = _history(db)
    total = len(h.written) + 1
    report = export_to_elasticsearch(db, es.url, index="chute-events", batch_size=4)
    assert es.problems == []
    assert report.ok and report.sent == report.indexed == total and report.failed == 0
    assert report.requests == len(es.requests) == -(-total // 4)
    req = es.requests[0]
    assert req["path"] == "/_bulk" and req["headers"]["Content-Type"] == "application/x-ndjson"
    lines = req["body"].decode().splitlines()
    assert json.loads(lines[0]) == {"index": {"_index": "chute-events", "_id": str(json.loads(lines[1])["id"])}}
    assert set(es.docs) == {str(d["id"]) for d in iter_events(db)}
    doc = es.docs[lines and json.loads(lines[0])["index"]["_id"]]
    assert doc["@timestamp"] == doc["at"] and list(doc)[:len(SCHEMA)] == SCHEMA
    # exporting again updates the same documents instead of adding new ones
    again = export_to_elasticsearch(db, es.url, batch_size=100)
    assert again.indexed == total and len(es.docs) == total


def test_bulk_partial_failures_are_reported(db: Database) -> None:
    fake = FakeElasticsearch(reject_kind="deploy.finished")
    try:
        _history(db)
        report = export_to_elasticsearch(db, fake.url, batch_size=3)
        assert not report.ok and report.failed == 1
        assert report.indexed == report.sent - 1
        assert report.errors[0]["status"] == 400 and report.errors[0]["type"] == "mapper_parsing_exception"
        deploy_id = next(d["id"] for d in iter_events(db) if d["kind"] == "deploy.finished")
        assert report.errors[0]["id"] == str(deploy_id)
    finally:
        fake.close()


def test_bulk_credentials_and_refusals(db: Database) -> None:
    fake = FakeElasticsearch(credentials=("chute", "s3cret"))
    try:
        _history(db)
        with pytest.raises(ExportError) as err:
            export_to_elasticsearch(db, fake.url)
        assert "refused" in str(err.value) and "401" in str(err.value)
        host = fake.url.removeprefix("http://")
        with pytest.raises(ExportError) as err:
            export_to_elasticsearch(db, f"http://chute:wrong@{host}")
        assert "wrong" not in str(err.value)  # never print the password
        report = export_to_elasticsearch(db, f"http://chute:s3cret@{host}")
        assert report.ok and report.indexed > 0
    finally:
        fake.close()


def test_bulk_errors_say_what_to_do() -> None:
    with pytest.raises(ExportError) as err:
        bulk_index([{"id": 1, "at": "x"}], "http://127.0.0.1:9")  # nothing listens on port 9
    assert "cannot reach Elasticsearch" in str(err.value)
    with pytest.raises(ExportError) as err:
        bulk_index([], "http://127.0.0.1:9", index="Bad Index")
    assert "lowercase" in str(err.value)
