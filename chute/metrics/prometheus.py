"""Prometheus exposition: a collector that reads the database at scrape time.

Two kinds of figures:

- **Gauges** of the current state (runs queued/running, queue depth, oldest
  queued job) come from small indexed queries on ``runs`` and ``jobs``.
- **Counters and histograms** (runs finished, stage durations, deployments,
  rollbacks, time to restore, lead time per patch, reruns that passed) are a
  fold over the ledger. Each scrape reads only the events recorded since the
  previous scrape (a primary-key range), so a scrape stays cheap however long
  the ledger is; the first scrape after a start reads the whole ledger once.

The fold follows PostgreSQL's out-of-order commits: ids are handed out at
insert but become visible at commit, so an id skipped by a scrape is looked
for again for ``GAP_WAIT`` seconds (long enough for any chute transaction).

Each app has its own ``CollectorRegistry`` (``make_registry``), so tests can
build many apps in one process.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from chute.store import Database, Event, Job, Project, Run, StageResult, utcnow

# Bucket bounds in seconds. Lead time includes the Four Keys bounds (1 d, 1 w, 730 h, 6 x 730 h).
STAGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
LEAD_TIME_BUCKETS = (300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800, 2628000, 15768000)
RESTORE_BUCKETS = (60, 300, 900, 1800, 3600, 14400, 86400, 604800)

GAP_WAIT = 120.0  # seconds to keep looking for an id that was skipped (an uncommitted transaction)
MAX_GAPS = 10000
FOLD_BATCH = 5000
_DATA_KINDS = ("run.finished", "deploy.finished", "rollback.finished")


class Histogram:
    """Per-bucket counts (not cumulative), a sum and a count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = 0
        while i < len(self.bounds) and value > self.bounds[i]:
            i += 1
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if bound == float("inf") else _num(bound), acc))
        return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


@dataclass
class LedgerFold:
    """Cumulative figures folded from the ledger, event by event, in id order."""

    last_id: int = 0
    gaps: dict[int, float] = field(default_factory=dict)  # id -> monotonic time it was first missed
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    runs_finished: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    reruns_passed: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    deployments: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    rollbacks: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    stage_seconds: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    restore_seconds: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    lead_seconds: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    # what the fold must remember to link later events
    uploads: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # (project, commit) -> (patch key, reviewed (else a plain push), merged at)
    patches: dict[tuple[str, str], tuple[tuple[str, str], bool, datetime]] = field(default_factory=dict)
    merged: set[tuple[str, str]] = field(default_factory=set)
    delivered: set[tuple[str, str, tuple[str, str]]] = field(default_factory=set)
    failed_runs: dict[int, str] = field(default_factory=dict)  # run id -> commit, for the flaky signal

    def _query(self) -> Any:
        e, sr, run = Event.__table__.c, StageResult.__table__.c, Run.__table__.c
        return (select(e.id, e.kind, e.project, e.change, e.commit, e.run_id, e.stage, e.environment, e.outcome, e.at,
                       case((e.kind.in_(_DATA_KINDS), e.data), else_=None).label("data"),
                       sr.started_at, sr.finished_at, run.pipeline)
                .select_from(Event.__table__
                             .outerjoin(StageResult.__table__, and_(e.kind == "stage.finished",
                                                                     sr.run_id == e.run_id, sr.name == e.stage))
                             .outerjoin(Run.__table__, and_(e.kind == "stage.finished", run.id == e.run_id))))

    def advance(self, s: Session, *, now: float | None = None) -> int:
        """Fold every event not folded yet; returns how many."""
        now = time.monotonic() if now is None else now
        n = 0
        if self.gaps:
            late = sorted(self.gaps)
            for i in range(0, len(late), 500):
                for row in s.execute(self._query().where(Event.__table__.c.id.in_(late[i:i + 500]))):
                    self.gaps.pop(row.id, None)
                    self._fold(row)
                    n += 1
            for gid, first in list(self.gaps.items()):
                if now - first > GAP_WAIT:
                    del self.gaps[gid]  # a rolled-back insert: that id will never appear
        while True:
            rows = s.execute(self._query().where(Event.__table__.c.id > self.last_id)
                             .order_by(Event.__table__.c.id).limit(FOLD_BATCH)).all()
            for row in rows:
                if row.id > self.last_id + 1 and len(self.gaps) < MAX_GAPS:
                    for gid in range(self.last_id + 1, min(row.id, self.last_id + 1 + MAX_GAPS)):
                        self.gaps.setdefault(gid, now)
                self.last_id = row.id
                self._fold(row)
            n += len(rows)
            if len(rows) < FOLD_BATCH:
                return n

    def _fold(self, row: Any) -> None:
        kind, project = row.kind, row.project
        self.events[kind] += 1
        if kind == "change.uploaded":
            if row.change and ((project, row.change) not in self.uploads
                               or row.at < self.uploads[(project, row.change)]):
                self.uploads[(project, row.change)] = row.at
        elif kind in ("change.merged", "change.pushed"):
            if row.commit and (project, row.commit) not in self.patches:
                key = (project, row.change) if row.change else (project, "@" + row.commit)
                if key not in self.merged:  # a change merged twice counts from its first merge
                    self.merged.add(key)
                    self.patches[(project, row.commit)] = (key, bool(row.change), row.at)
        elif kind == "run.finished":
            data = row.data or {}
            pipeline, trigger = str(data.get("pipeline") or ""), str(data.get("trigger") or "")
            self.runs_finished[(project, pipeline, row.outcome, trigger)] += 1
            if row.outcome in ("failure", "error") and row.run_id is not None:
                self.failed_runs[row.run_id] = row.commit
            elif row.outcome == "success" and trigger in ("rerun", "recheck"):
                of = data.get("rerun_of")
                if of is not None and self.failed_runs.get(int(of)) == row.commit:
                    self.reruns_passed[(project, pipeline)] += 1
        elif kind == "stage.finished":
            if row.started_at is not None and row.finished_at is not None:
                secs = (row.finished_at - row.started_at).total_seconds()
                key = (project, row.pipeline or "", row.stage)
                self._hist(self.stage_seconds, key, STAGE_BUCKETS).observe(max(secs, 0.0))
        elif kind == "deploy.finished":
            data = row.data or {}
            self.deployments[(project, row.environment, str(data.get("kind") or "deploy"), row.outcome)] += 1
            if row.outcome == "healthy":
                for c in data.get("commits") or []:
                    self._deliver(project, row.environment, str(c), row.at)
        elif kind == "rollback.finished":
            data = row.data or {}
            automatic = "true" if data.get("automatic") else "false"
            self.rollbacks[(project, row.environment, automatic, row.outcome)] += 1
            ttr = data.get("time_to_restore")
            if isinstance(ttr, int | float) and row.outcome == "restored":
                self._hist(self.restore_seconds, (project, row.environment), RESTORE_BUCKETS).observe(float(ttr))

    def _deliver(self, project: str, environment: str, commit: str, at: datetime) -> None:
        found = self.patches.get((project, commit))
        if found is None:
            return
        key, reviewed, merged = found
        if (project, environment, key) in self.delivered:
            return
        self.delivered.add((project, environment, key))
        uploaded = self.uploads.get(key) if reviewed else merged
        if uploaded is not None and at >= uploaded:
            self._hist(self.lead_seconds, (project, environment, "upload"), LEAD_TIME_BUCKETS).observe(
                (at - uploaded).total_seconds())
        if at >= merged:
            self._hist(self.lead_seconds, (project, environment, "merge"), LEAD_TIME_BUCKETS).observe(
                (at - merged).total_seconds())

    @staticmethod
    def _hist(table: dict[Any, Histogram], key: Any, bounds: tuple[float, ...]) -> Histogram:
        h = table.get(key)
        if h is None:
            h = table[key] = Histogram(bounds)
        return h


class LedgerCollector(Collector):
    """Collects chute's figures from the database on every scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.fold = LedgerFold()
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # do not query the database when registered

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        with self._lock, self.db.read_session() as s:
            self.fold.advance(s)
            gauges = list(_gauges(s))
            metrics = list(_fold_metrics(self.fold))
        yield from gauges
        yield from metrics
        g = GaugeMetricFamily("chute_metrics_collect_seconds", "Time this scrape spent reading the database")
        g.add_metric([], time.perf_counter() - started)
        yield g


def _gauges(s: Session) -> Iterator[Metric]:
    runs = GaugeMetricFamily("chute_runs", "Runs that are not finished, by project and status",
                             labels=["project", "status"])
    q = (select(Project.name, Run.status, func.count()).join(Project, Project.id == Run.project_id)
         .where(Run.status.in_(("queued", "running"))).group_by(Project.name, Run.status))
    for name, status, n in s.execute(q):
        runs.add_metric([name, status], n)
    yield runs
    now = utcnow()
    ready = or_(Job.not_before.is_(None), Job.not_before <= now)
    depth, held, oldest = s.execute(select(
        func.count().filter(ready), func.count().filter(~ready), func.min(Job.created_at).filter(ready),
    ).where(Job.status == "queued")).one()
    g = GaugeMetricFamily("chute_queue_depth", "Jobs waiting for an agent (not held)")
    g.add_metric([], depth or 0)
    yield g
    g = GaugeMetricFamily("chute_queue_held", "Queued jobs held until later (e.g. by a deploy freeze)")
    g.add_metric([], held or 0)
    yield g
    g = GaugeMetricFamily("chute_queue_oldest_seconds", "Age of the oldest job waiting for an agent (0: none)")
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    g.add_metric([], (now - oldest).total_seconds() if oldest is not None else 0.0)
    yield g
    claimed = s.execute(select(func.count()).where(Job.status == "claimed")).scalar_one()
    g = GaugeMetricFamily("chute_jobs_running", "Jobs an agent holds right now")
    g.add_metric([], claimed)
    yield g


def _fold_metrics(f: LedgerFold) -> Iterator[Metric]:
    c = CounterMetricFamily("chute_ledger_events", "Ledger events recorded, by kind", labels=["kind"])
    for kind, n in sorted(f.events.items()):
        c.add_metric([kind], n)
    yield c
    c = CounterMetricFamily("chute_runs_finished", "Runs finished, by project, pipeline, outcome and trigger",
                            labels=["project", "pipeline", "outcome", "trigger"])
    for key, n in sorted(f.runs_finished.items()):
        c.add_metric(list(key), n)
    yield c
    c = CounterMetricFamily("chute_reruns_passed",
                            "Reruns and rechecks that passed on the same commit after a failure (flaky signal)",
                            labels=["project", "pipeline"])
    for key, n in sorted(f.reruns_passed.items()):
        c.add_metric(list(key), n)
    yield c
    c = CounterMetricFamily("chute_deployments", "Deployments finished, by environment, kind and outcome",
                            labels=["project", "environment", "kind", "outcome"])
    for key, n in sorted(f.deployments.items()):
        c.add_metric(list(key), n)
    yield c
    c = CounterMetricFamily("chute_rollbacks", "Rollbacks finished, by environment, automatic or not, and outcome",
                            labels=["project", "environment", "automatic", "outcome"])
    for key, n in sorted(f.rollbacks.items()):
        c.add_metric(list(key), n)
    yield c
    yield _histogram("chute_stage_duration_seconds", "Duration of finished stages",
                     ["project", "pipeline", "stage"], f.stage_seconds)
    yield _histogram("chute_time_to_restore_seconds", "Time from a failed deploy's start to restored service",
                     ["project", "environment"], f.restore_seconds)
    yield _histogram("chute_lead_time_seconds",
                     "Lead time per patch to its first healthy deploy in an environment, from its first upload "
                     "or from its merge", ["project", "environment", "since"], f.lead_seconds)


def _histogram(name: str, doc: str, labels: list[str], table: dict[Any, Histogram]) -> Metric:
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, hist in sorted(table.items()):
        h.add_metric(list(key), hist.buckets(), hist.sum)
    return h


def make_registry(db: Database) -> tuple[CollectorRegistry, LedgerCollector]:
    """A registry of its own (not the process-wide default) with chute's collector."""
    registry = CollectorRegistry(auto_describe=False)
    collector = LedgerCollector(db)
    registry.register(collector)
    return registry, collector
