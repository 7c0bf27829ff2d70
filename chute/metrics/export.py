"""Ledger export: JSON lines (the stable schema of docs/ledger.md) and Elasticsearch/OpenSearch.

Events are streamed in id order with a server-side cursor (PostgreSQL) or
SQLite's incremental fetch, a batch at a time: exporting a million events never
holds more than one batch in memory. The Elasticsearch export sends the same
documents through the ``_bulk`` API, using the event id as the document id, so
exporting twice updates instead of duplicating.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import httpx
from sqlalchemy import select

from chute.store import Database, Event
from chute.store.ledger import to_json

DEFAULT_INDEX = "chute-events"
BATCH = 1000


class ExportError(Exception):
    """The export target refused or could not be reached; the message says what to do."""


def iter_events(db: Database, *, project: str | None = None, since: datetime | None = None,
                until: datetime | None = None, after_id: int | None = None, kinds: Iterable[str] | None = None,
                batch_size: int = BATCH) -> Iterator[dict[str, Any]]:
    """Events as export documents (``ledger.to_json``), oldest first, streamed."""
    table = Event.__table__
    q = select(table).order_by(table.c.id)
    if project is not None:
        q = q.where(table.c.project == project)
    if since is not None:
        q = q.where(table.c.at >= since)
    if until is not None:
        q = q.where(table.c.at < until)
    if after_id is not None:
        q = q.where(table.c.id > after_id)
    if kinds:
        q = q.where(table.c.kind.in_(sorted(set(kinds))))
    with db.read_session() as s:
        result = s.execute(q, execution_options={"stream_results": True, "yield_per": batch_size})
        for row in result:
            yield to_json(row)  # a Row has the same attribute names as an Event


def dumps(doc: dict[str, Any]) -> str:
    """One JSON line (compact, UTF-8 kept as is)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def export_events(db: Database, project: str | None = None, since: datetime | None = None,
                  out: TextIO | None = None, *, until: datetime | None = None,
                  after_id: int | None = None) -> int:
    """Write the events as JSON lines to ``out`` (default stdout); returns how many."""
    out = out if out is not None else sys.stdout
    n = 0
    for doc in iter_events(db, project=project, since=since, until=until, after_id=after_id):
        out.write(dumps(doc) + "\n")
        n += 1
    return n


# ------------------------------------------------------------------ Elasticsearch / OpenSearch
@dataclass
class BulkReport:
    """What a bulk export did; ``errors`` holds the first 100 rejected documents."""

    sent: int = 0
    indexed: int = 0
    failed: int = 0
    requests: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "indexed": self.indexed, "failed": self.failed, "requests": self.requests,
                "errors": self.errors}


def safe_url(url: str) -> str:
    """The URL without credentials, for messages and logs."""
    try:
        u = httpx.URL(url)
        return str(u.copy_with(username=None, password=None)) if u.userinfo else url
    except Exception:
        return "<the Elasticsearch URL>"


def bulk_body(docs: list[dict[str, Any]], index: str) -> bytes:
    """The ``_bulk`` NDJSON body: an ``index`` action line, then the source line, per document.

    Each source is the export document plus ``@timestamp`` (= ``at``) so that Kibana and
    OpenSearch Dashboards find the time field without configuration.
    """
    lines = []
    for doc in docs:
        lines.append(dumps({"index": {"_index": index, "_id": str(doc["id"])}}))
        lines.append(dumps({**doc, "@timestamp": doc["at"]}))
    return ("\n".join(lines) + "\n").encode()


def bulk_index(docs: Iterable[dict[str, Any]], url: str, *, index: str = DEFAULT_INDEX,
               batch_size: int = 500, client: httpx.Client | None = None, timeout: float = 60.0) -> BulkReport:
    """Send export documents to ``{url}/_bulk`` in batches; per-document failures are
    collected in the report, a refused request raises ExportError."""
    if not index or index != index.lower() or any(ch in index for ch in ' "*\\<|,>/?#:'):
        raise ExportError(f"index name {index!r} is not valid for Elasticsearch: use lowercase letters, "
                          "digits, - and _ (e.g. chute-events)")
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    endpoint = url.rstrip("/") + "/_bulk"
    report = BulkReport()
    try:
        batch: list[dict[str, Any]] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                _send(http, endpoint, url, batch, index, report)
                batch = []
        if batch:
            _send(http, endpoint, url, batch, index, report)
    finally:
        if own:
            http.close()
    return report


def _send(http: httpx.Client, endpoint: str, url: str, batch: list[dict[str, Any]], index: str,
          report: BulkReport) -> None:
    try:
        r = http.post(endpoint, content=bulk_body(batch, index),
                      headers={"Content-Type": "application/x-ndjson"})
    except httpx.HTTPError as exc:
        raise ExportError(f"cannot reach Elasticsearch at {safe_url(url)} ({type(exc).__name__}: {exc}); "
                          "check the URL and that the cluster is up") from None
    report.requests += 1
    report.sent += len(batch)
    if r.status_code in (401, 403):
        raise ExportError(f"Elasticsearch at {safe_url(url)} refused the request ({r.status_code}); "
                          "put credentials in the URL (https://user:password@host:9200) or check the "
                          "user's index privileges")
    if r.status_code >= 300:
        raise ExportError(f"Elasticsearch at {safe_url(url)} answered {r.status_code} to _bulk: {r.text[:300]}")
    try:
        body = r.json()
        items = body.get("items", [])
    except (ValueError, AttributeError):
        raise ExportError(f"{safe_url(url)}/_bulk did not answer like Elasticsearch (no JSON items); "
                          "is the URL the cluster's root?") from None
    if len(items) != len(batch):
        raise ExportError(f"{safe_url(url)}/_bulk answered {len(items)} items for {len(batch)} documents")
    if not body.get("errors"):
        report.indexed += len(batch)
        return
    for item in items:
        result = next(iter(item.values()), {}) if isinstance(item, dict) else {}
        status = int(result.get("status", 500))
        if status < 300:
            report.indexed += 1
            continue
        report.failed += 1
        if len(report.errors) < 100:
            err = result.get("error") or {}
            report.errors.append({"id": result.get("_id"), "status": status,
                                  "type": err.get("type") if isinstance(err, dict) else None,
                                  "reason": err.get("reason") if isinstance(err, dict) else str(err)})


def export_to_elasticsearch(db: Database, url: str, *, project: str | None = None, since: datetime | None = None,
                            index: str = DEFAULT_INDEX, batch_size: int = 500,
                            client: httpx.Client | None = None) -> BulkReport:
    """Bulk-index the ledger (or a project's part of it, since a time) into Elasticsearch/OpenSearch."""
    return bulk_index(iter_events(db, project=project, since=since), url, index=index,
                      batch_size=batch_size, client=client)
