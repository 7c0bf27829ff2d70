"""Prometheus exposition: a collector that reads the database at scrape time.

Two kinds of figures:

- **Gauges** of the current state (runs queued/running, queue depth, oldest
  queued job) come from small indexed queries on ``runs`` and ``jobs``.
- **Counters and histograms** (runs finished, stage durations, deployments,
  rollbacks, time to restore, lead time per patch, reruns that passed) are
  cumulative over the whole ledger. The first scrape of a process computes them
  with a few aggregate queries over one consistent snapshot (the ledger's read
  model: ``run_results``, ``deploy_results``, ``patch_deliveries``, and
  ``stage_results``); every later scrape reads only the events recorded since
  (a primary-key range) and adds them in. Every process therefore reports the
  same values, and a scrape stays cheap however long the ledger is.

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
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from chute.store import (
    Database,
    DeployResult,
    Event,
    Job,
    PatchDelivery,
    Project,
    Run,
    RunResult,
    StageResult,
    utcnow,
)

from .dora import flakiness
from .sql import epoch, to_epoch

# Bucket bounds in seconds. Lead time includes the Four Keys bounds (1 d, 1 w, 730 h, 6 x 730 h).
STAGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
LEAD_TIME_BUCKETS = (300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800, 2628000, 15768000)
RESTORE_BUCKETS = (60, 300, 900, 1800, 3600, 14400, 86400, 604800)

GAP_WAIT = 120.0  # seconds to keep looking for an id that was skipped (an uncommitted transaction)
MAX_GAPS = 10000
COLD_GAP_WINDOW = 1000  # at the first scrape, ids this close to the top may still be uncommitted
FOLD_BATCH = 5000
_DATA_KINDS = ("run.finished", "deploy.finished", "rollback.finished")
FINAL_STAGES = ("success", "failure", "skipped", "cancelled", "reused", "error")

E = Event.__table__.c
RR = RunResult.__table__.c
PD = PatchDelivery.__table__.c
SR = StageResult.__table__.c
RN = Run.__table__.c


class Histogram:
    """Per-bucket counts (not cumulative), a sum and a count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        i = 0
        while i < len(self.bounds) and value > self.bounds[i]:
            i += 1
        self.counts[i] += n
        self.sum += value * n
        self.count += n

    def add_bucket(self, index: int, count: int, total: float) -> None:
        """Add ``count`` observations known to fall in bucket ``index`` and sum to ``total``."""
        self.counts[index] += count
        self.sum += total
        self.count += count

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if bound == float("inf") else _num(bound), acc))
        return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _hist(table: dict[Any, Histogram], key: Any, bounds: tuple[float, ...]) -> Histogram:
    h = table.get(key)
    if h is None:
        h = table[key] = Histogram(bounds)
    return h


@dataclass
class LedgerFold:
    """Cumulative figures from the ledger: aggregated at the first scrape, then event by event."""

    last_id: int = 0
    started: bool = False
    gaps: dict[int, float] = field(default_factory=dict)  # id -> monotonic time it was first missed
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    runs_finished: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    reruns_passed: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    deployments: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    rollbacks: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    stage_seconds: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    restore_seconds: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    lead_seconds: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)

    def advance(self, s: Session, *, now: float | None = None) -> int:
        """Bring the figures up to date; returns how many events were read one by one."""
        now = time.monotonic() if now is None else now
        if not self.started:
            self._cold(s, now)
        n = 0
        if self.gaps:
            late = sorted(self.gaps)
            for i in range(0, len(late), 500):
                for row in s.execute(self._query().where(E.id.in_(late[i:i + 500]))):
                    self.gaps.pop(row.id, None)
                    self._fold(s, row)
                    n += 1
            for gid, first in list(self.gaps.items()):
                if now - first > GAP_WAIT:
                    del self.gaps[gid]  # a rolled-back insert: that id will never appear
        while True:
            rows = s.execute(self._query().where(E.id > self.last_id).order_by(E.id).limit(FOLD_BATCH)).all()
            for row in rows:
                if row.id > self.last_id + 1 and len(self.gaps) < MAX_GAPS:
                    for gid in range(self.last_id + 1, min(row.id, self.last_id + 1 + MAX_GAPS)):
                        self.gaps.setdefault(gid, now)
                self.last_id = row.id
                self._fold(s, row)
            n += len(rows)
            if len(rows) < FOLD_BATCH:
                return n

    # -- the first scrape: aggregates over one snapshot
    def _cold(self, s: Session, now: float) -> None:
        if s.get_bind().dialect.name == "postgresql":
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})  # one snapshot throughout
        hi = s.scalar(select(func.max(E.id))) or 0
        for kind, n in s.execute(select(E.kind, func.count()).where(E.id <= hi).group_by(E.kind)):
            self.events[kind] += n
        for key in s.execute(select(RR.project, RR.pipeline, RR.outcome, RR.trigger, func.count())
                             .where(RR.event_id <= hi).group_by(RR.project, RR.pipeline, RR.outcome, RR.trigger)):
            self.runs_finished[tuple(key[:4])] += key[4]  # type: ignore[index]
        for row in flakiness(s, project=None, since=None, until=None, max_event_id=hi):
            if row["rerun_passed"]:
                self.reruns_passed[(row["project"], row["pipeline"])] += row["rerun_passed"]
        dr = DeployResult.__table__.c
        for p, env, kind, outcome, n in s.execute(select(dr.project, dr.environment, dr.kind, dr.outcome, func.count())
                                                  .where(dr.event_id <= hi)
                                                  .group_by(dr.project, dr.environment, dr.kind, dr.outcome)):
            self.deployments[(p, env, kind, outcome)] += n
        for row in s.execute(self._query().where(E.kind == "rollback.finished", E.id <= hi)):
            self._fold_rollback(row)
        for p, env, up, merged, delivered in s.execute(
                select(PD.project, PD.environment, PD.uploaded_at, PD.merged_at, PD.delivered_at)
                .where(PD.event_id <= hi)):
            self._observe_delivery(p, env, up, merged, delivered)
        for p, pipeline, stage, bucket, n, total in s.execute(_stage_buckets(s)):
            _hist(self.stage_seconds, (p, pipeline, stage), STAGE_BUCKETS).add_bucket(bucket, n, total or 0.0)
        # ids near the top that are not visible yet may belong to transactions still open
        visible = set(s.scalars(select(E.id).where(E.id > hi - COLD_GAP_WINDOW)))
        for gid in range(max(1, hi - COLD_GAP_WINDOW + 1), hi + 1):
            if gid not in visible:
                self.gaps[gid] = now
        self.last_id = hi
        self.started = True

    # -- later scrapes: event by event
    @staticmethod
    def _query() -> Any:
        return (select(E.id, E.kind, E.project, E.change, E.commit, E.run_id, E.stage, E.environment, E.outcome,
                       case((E.kind.in_(_DATA_KINDS), E.data), else_=None).label("data"),
                       (epoch(SR.finished_at) - epoch(SR.started_at)).label("stage_seconds"),
                       RN.pipeline)
                .select_from(Event.__table__
                             .outerjoin(StageResult.__table__, and_(E.kind == "stage.finished",
                                                                     SR.run_id == E.run_id, SR.name == E.stage))
                             .outerjoin(Run.__table__, and_(E.kind == "stage.finished", RN.id == E.run_id))))

    def _fold(self, s: Session, row: Any) -> None:
        kind, project = row.kind, row.project
        self.events[kind] += 1
        if kind == "run.finished":
            data = row.data or {}
            pipeline, trigger = str(data.get("pipeline") or ""), str(data.get("trigger") or "")
            self.runs_finished[(project, pipeline, row.outcome, trigger)] += 1
            of = data.get("rerun_of")
            if row.outcome == "success" and trigger in ("rerun", "recheck") and of is not None:
                failed_before = s.scalar(select(func.count()).where(
                    RR.run_id == int(of), RR.outcome.in_(("failure", "error")), RR.commit == row.commit,
                    RR.event_id < row.id))
                if failed_before:
                    self.reruns_passed[(project, pipeline)] += 1
        elif kind == "stage.finished":
            if row.stage_seconds is not None and row.pipeline is not None:
                _hist(self.stage_seconds, (project, row.pipeline, row.stage), STAGE_BUCKETS).observe(
                    max(row.stage_seconds, 0.0))
        elif kind == "deploy.finished":
            data = row.data or {}
            self.deployments[(project, row.environment, str(data.get("kind") or "deploy"), row.outcome)] += 1
            if row.outcome == "healthy":
                for up, merged, delivered in s.execute(select(PD.uploaded_at, PD.merged_at, PD.delivered_at)
                                                          .where(PD.event_id == row.id)):
                    self._observe_delivery(project, row.environment, up, merged, delivered)
        elif kind == "rollback.finished":
            self._fold_rollback(row)

    def _fold_rollback(self, row: Any) -> None:
        data = row.data or {}
        automatic = "true" if data.get("automatic") else "false"
        self.rollbacks[(row.project, row.environment, automatic, row.outcome)] += 1
        ttr = data.get("time_to_restore")
        if isinstance(ttr, int | float) and row.outcome == "restored":
            _hist(self.restore_seconds, (row.project, row.environment), RESTORE_BUCKETS).observe(float(ttr))

    def _observe_delivery(self, project: str, environment: str, uploaded: float | None, merged: float | None,
                          delivered: float) -> None:
        if uploaded is not None and delivered >= uploaded:
            _hist(self.lead_seconds, (project, environment, "upload"), LEAD_TIME_BUCKETS).observe(delivered - uploaded)
        if merged is not None and delivered >= merged:
            _hist(self.lead_seconds, (project, environment, "merge"), LEAD_TIME_BUCKETS).observe(delivered - merged)


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


def _stage_buckets(s: Session) -> Any:
    """Finished stages grouped by project, pipeline, stage and histogram bucket, in SQL: each
    duration is computed once in a subquery (which SQLite must not flatten, hence LIMIT -1),
    then counted per bucket."""
    raw = epoch(SR.finished_at) - epoch(SR.started_at)
    sub = select(SR.run_id, SR.name, case((raw < 0, 0.0), else_=raw).label("d")).where(
        SR.status.in_(FINAL_STAGES), SR.started_at.is_not(None), SR.finished_at.is_not(None))
    if s.get_bind().dialect.name == "sqlite":
        sub = sub.limit(-1)
    d = sub.subquery("d")
    bucket = case(*[(d.c.d <= bound, i) for i, bound in enumerate(STAGE_BUCKETS)], else_=len(STAGE_BUCKETS))
    return (select(Project.name, RN.pipeline, d.c.name, bucket, func.count(), func.sum(d.c.d))
            .select_from(d.join(Run.__table__, RN.id == d.c.run_id).join(Project.__table__,
                                                                          Project.id == RN.project_id))
            .group_by(Project.name, RN.pipeline, d.c.name, bucket))


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
        func.count().filter(ready), func.count().filter(~ready), epoch(func.min(Job.created_at).filter(ready)),
    ).where(Job.status == "queued")).one()
    g = GaugeMetricFamily("chute_queue_depth", "Jobs waiting for an agent (not held)")
    g.add_metric([], depth or 0)
    yield g
    g = GaugeMetricFamily("chute_queue_held", "Queued jobs held until later (e.g. by a deploy freeze)")
    g.add_metric([], held or 0)
    yield g
    g = GaugeMetricFamily("chute_queue_oldest_seconds", "Age of the oldest job waiting for an agent (0: none)")
    g.add_metric([], max(0.0, to_epoch(now) - oldest) if oldest is not None else 0.0)
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
