"""Delivery metrics (DORA "four keys" and flakiness), computed live from the ledger.

``compute_metrics`` answers for one project (or all), one environment (default
``production``) and one period [since, until). Every definition and edge case is
in docs/metrics.md; the short version:

- a *deployment* is a ``deploy.finished`` of kind ``deploy`` (not a rollback)
  with outcome healthy, failed or rolled-back; a deploy of an older image that
  ships no new commits still is one;
- a deployment *failed* when its outcome is failed or rolled-back, or when a
  rollback later names it as ``from_revision`` -- automatic rollbacks and failed
  health gates count without anyone filing an incident;
- *lead time* is per patch, from its first upload and from its merge to the
  first healthy deploy that shipped it; it belongs to the period of that deploy;
- *time to restore* of a failed deployment is its ``rollback.finished``
  ``time_to_restore``, else the time from its start to the next healthy deploy
  of the environment;
- with no deployments, counts are 0 and rates, lead times and the bucket are
  None (never 0, never an exception).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from chute.store import Database, RunResult, utcnow

from .ledgerview import (
    FAILED_OUTCOMES,
    Delivered,
    DeployRow,
    Rollback,
    delivered_patches,
    deploy_rows,
    deploy_started_times,
    deploying_projects,
    in_flight_count,
    load_rollbacks,
    reading,
)
from .periods import as_utc, day_start, days_between, iso, median, p90, week_start
from .sql import epoch_date, from_epoch, to_epoch

BUCKET_WINDOW = timedelta(weeks=13)  # Four Keys looks at the last three months
RETRY_TRIGGERS = ("rerun", "recheck")
FAILED_RUNS = ("failure", "error")
RR = RunResult.__table__.c


@dataclass
class Failure:
    deploy: DeployRow
    time_to_restore: float | None


def compute_metrics(db: Database | Session, project: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, environment: str = "production", *,
                    now: datetime | None = None) -> dict[str, Any]:
    """DORA metrics and flakiness for ``project`` (None: all) in ``environment`` over [since, until).

    ``until`` defaults to now; ``since`` to the beginning of the ledger.
    """
    until = as_utc(until) if until is not None else (now or utcnow())
    since = as_utc(since) if since is not None else None
    lo = to_epoch(since) if since is not None else float("-inf")
    hi = to_epoch(until)

    def in_period(t: float) -> bool:
        return lo <= t < hi

    with reading(db) as s:
        # deployments before the period are not needed: a failure's recovery comes after it
        deploys = deploy_rows(s, project=project, environment=environment, since=since, until=until)
        deployments = [d for d in deploys if d.is_deployment and in_period(d.at)]
        rollbacks = load_rollbacks(s, project=project, environment=environment, until=until)
        failures = _failures(s, deployments, deploys, rollbacks, project, environment)
        delivered = delivered_patches(s, project=project, environment=environment, since=since, until=until)
        in_flight = in_flight_count(s, project=project, environment=environment, since=since, until=until,
                                    deploying=deploying_projects(s, project=project, environment=environment,
                                                                 until=until))
        flaky = flakiness(s, project=project, since=since, until=until)

    window_start = since if since is not None else (
        day_start(from_epoch(deployments[0].at)) if deployments else None)
    window_days = (until - window_start).total_seconds() / 86400 if window_start is not None else None
    count = len(deployments)
    per_day = count / window_days if window_days else None
    up, mg = _lead_times(delivered)
    ttrs = [f.time_to_restore for f in failures if f.time_to_restore is not None]
    failed_ids = {f.deploy.id for f in failures}
    return {
        "project": project,
        "environment": environment,
        "since": iso(since),
        "until": iso(until),
        "window_days": window_days,
        "deployment_count": count,
        "successful_deployment_count": sum(1 for d in deployments if d.healthy and d.id not in failed_ids),
        "deployment_frequency_per_day": per_day,
        "deployment_frequency_per_week": per_day * 7 if per_day is not None else None,
        "deployment_frequency_bucket": _bucket(deployments, window_start, until) if count else None,
        "lead_time_from_upload_median_seconds": median(up),
        "lead_time_from_upload_p90_seconds": p90(up),
        "lead_time_from_merge_median_seconds": median(mg),
        "lead_time_from_merge_p90_seconds": p90(mg),
        "patches_delivered": len(delivered),
        "patches_in_flight": in_flight,
        "revert_count": sum(1 for d in delivered if d.revert),
        "change_failure_rate": len(failures) / count if count else None,
        "failed_deployment_count": len(failures),
        "rollback_count": sum(1 for r in rollbacks if r.kind == "rollback.finished" and in_period(r.at)),
        "automatic_rollback_count": sum(1 for r in rollbacks
                                        if r.kind == "rollback.finished" and r.automatic and in_period(r.at)),
        "time_to_restore_median_seconds": median(ttrs),
        "time_to_restore_p90_seconds": p90(ttrs),
        "unrestored_failure_count": sum(1 for f in failures if f.time_to_restore is None),
        "flakiness": flaky,
        "series": _series(deployments, failures, delivered, window_start, until),
    }


def _lead_times(delivered: list[Delivered]) -> tuple[list[float], list[float]]:
    """Seconds from first upload and from merge to delivery; negative gaps (clock skew) are dropped."""
    up, mg = [], []
    for d in delivered:
        if d.uploaded_at is not None and d.delivered_at >= d.uploaded_at:
            up.append(d.delivered_at - d.uploaded_at)
        if d.merged_at is not None and d.delivered_at >= d.merged_at:
            mg.append(d.delivered_at - d.merged_at)
    return up, mg


def _failures(s: Session, deployments: list[DeployRow], deploys: list[DeployRow], rollbacks: list[Rollback],
              project: str | None, environment: str) -> list[Failure]:
    rolled_back_at: dict[tuple[str, int | None], float] = {}
    restored: dict[tuple[str, int | None], Rollback] = {}
    for r in rollbacks:
        if r.from_revision is None:
            continue
        key = (r.project, r.from_revision)
        rolled_back_at.setdefault(key, r.at)
        if r.kind == "rollback.finished" and r.outcome == "restored":
            restored.setdefault(key, r)
    failed = [d for d in deployments if d.outcome in FAILED_OUTCOMES or (d.project, d.revision) in rolled_back_at]
    if not failed:
        return []
    started = deploy_started_times(s, project=project, environment=environment,
                                   keys={(d.project, d.revision) for d in failed})
    healthy_at: dict[str, list[float]] = defaultdict(list)
    healthy_id: dict[str, list[int]] = defaultdict(list)
    for d in deploys:
        if d.healthy:
            healthy_at[d.project].append(d.at)
            healthy_id[d.project].append(d.id)
    out = []
    for f in failed:
        key = (f.project, f.revision)
        start = started.get(key, f.at)
        ttr: float | None = None
        rb = restored.get(key)
        if rb is not None:
            ttr = rb.time_to_restore if rb.time_to_restore is not None else rb.at - start
        else:
            # No restoring rollback: recovered by the environment's next healthy deploy.
            after = max(f.at, rolled_back_at.get(key, f.at))
            times, ids = healthy_at[f.project], healthy_id[f.project]
            i = bisect.bisect_right(times, after)
            while i < len(ids) and ids[i] == f.id:
                i += 1
            ttr = times[i] - start if i < len(times) else None
        out.append(Failure(f, ttr))
    return out


def _bucket(deployments: list[DeployRow], window_start: datetime | None, until: datetime) -> str:
    """The Four Keys deployment-frequency bucket over the last 13 weeks of the period.

    Daily: the median week has >= 3 days with a deployment; weekly: the median week has
    >= 1 deployment; monthly: the median month has >= 1; otherwise yearly.
    """
    start = until - BUCKET_WINDOW
    if window_start is not None and window_start > start:
        start = window_start
    lo, hi = to_epoch(start), to_epoch(until)
    days = days_between(start, until)
    deploy_days = Counter(epoch_date(d.at) for d in deployments if lo <= d.at < hi)
    weeks: dict[date, list[int]] = defaultdict(lambda: [0, 0])  # week -> [days deployed, deployments]
    months: dict[tuple[int, int], int] = defaultdict(int)
    for d in days:
        w = weeks[week_start(d)]
        n = deploy_days.get(d, 0)
        w[0] += 1 if n else 0
        w[1] += n
        months[(d.year, d.month)] += n
    if not weeks:
        return "yearly"
    if (median([w[0] for w in weeks.values()]) or 0) >= 3:
        return "daily"
    if (median([w[1] for w in weeks.values()]) or 0) >= 1:
        return "weekly"
    if (median(list(months.values())) or 0) >= 1:
        return "monthly"
    return "yearly"


def _day(t: float) -> int:
    return int(t // 86400)


def _monday(day: int) -> int:
    return day - (day + 3) % 7  # 1970-01-01 was a Thursday


def _series(deployments: list[DeployRow], failures: list[Failure], delivered: list[Delivered],
            window_start: datetime | None, until: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per-day deployments and per-week figures over the period, for charts (empty weeks included)."""
    if window_start is None:
        return {"daily": [], "weekly": []}
    days = days_between(window_start, until)
    per_day = Counter(_day(d.at) for d in deployments)
    first_day = _day(to_epoch(datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC))) if days else 0
    daily = [{"date": d.isoformat(), "deployments": per_day.get(first_day + i, 0)} for i, d in enumerate(days)]
    weeks = sorted({_monday(first_day + i) for i in range(len(days))})
    dep_w: Counter[int] = Counter(_monday(_day(d.at)) for d in deployments)
    fail_w: Counter[int] = Counter(_monday(_day(f.deploy.at)) for f in failures)
    ttr_w: dict[int, list[float]] = defaultdict(list)
    for f in failures:
        if f.time_to_restore is not None:
            ttr_w[_monday(_day(f.deploy.at))].append(f.time_to_restore)
    up_w: dict[int, list[float]] = defaultdict(list)
    mg_w: dict[int, list[float]] = defaultdict(list)
    delivered_w: Counter[int] = Counter()
    for d in delivered:
        w = _monday(_day(d.delivered_at))
        delivered_w[w] += 1
        if d.uploaded_at is not None and d.delivered_at >= d.uploaded_at:
            up_w[w].append(d.delivered_at - d.uploaded_at)
        if d.merged_at is not None and d.delivered_at >= d.merged_at:
            mg_w[w].append(d.delivered_at - d.merged_at)
    weekly = []
    for w in weeks:
        n = dep_w.get(w, 0)
        weekly.append({
            "week": epoch_date(w * 86400.0).isoformat(),
            "deployments": n,
            "failed_deployments": fail_w.get(w, 0),
            "change_failure_rate": fail_w.get(w, 0) / n if n else None,
            "patches_delivered": delivered_w.get(w, 0),
            "lead_time_from_upload_median_seconds": median(up_w.get(w, [])),
            "lead_time_from_merge_median_seconds": median(mg_w.get(w, [])),
            "time_to_restore_median_seconds": median(ttr_w.get(w, [])),
        })
    return {"daily": daily, "weekly": weekly}


def flakiness(s: Session, *, project: str | None, since: datetime | None, until: datetime | None,
              max_event_id: int | None = None) -> list[dict[str, Any]]:
    """Per pipeline: finished runs, reruns, rechecks, and retries that passed after a failure.

    A *rerun passed* is a ``run.finished`` with trigger rerun or recheck, outcome success,
    whose ``rerun_of`` run finished with failure or error on the same commit: the same code
    failed, then passed -- the flaky signal. (Read from ``run_results``.)
    """
    conds = []
    if project is not None:
        conds.append(RR.project == project)
    if since is not None:
        conds.append(RR.at >= to_epoch(since))
    if until is not None:
        conds.append(RR.at < to_epoch(until))
    if max_event_id is not None:
        conds.append(RR.event_id <= max_event_id)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    q = select(RR.project, RR.pipeline, func.count(),
               func.sum(case((RR.outcome.in_(FAILED_RUNS), 1), else_=0)),
               func.sum(case((RR.trigger == "rerun", 1), else_=0)),
               func.sum(case((RR.trigger == "recheck", 1), else_=0))).where(*conds)
    for proj, pipe, n, failed, reruns, rechecks in s.execute(q.group_by(RR.project, RR.pipeline)):
        rows[(proj, pipe)] = {"project": proj, "pipeline": pipe, "runs": int(n), "failed_runs": int(failed or 0),
                              "reruns": int(reruns or 0), "rechecks": int(rechecks or 0), "rerun_passed": 0}
    orig = RunResult.__table__.alias("orig")
    q = (select(RR.project, RR.pipeline, func.count(func.distinct(RR.id)))
         .select_from(RunResult.__table__.join(orig, orig.c.run_id == RR.rerun_of))
         .where(*conds, RR.trigger.in_(RETRY_TRIGGERS), RR.outcome == "success",
                orig.c.outcome.in_(FAILED_RUNS), orig.c.commit == RR.commit))
    for proj, pipe, n in s.execute(q.group_by(RR.project, RR.pipeline)):
        if (proj, pipe) in rows:
            rows[(proj, pipe)]["rerun_passed"] = int(n)
    out = sorted(rows.values(), key=lambda r: (r["project"], r["pipeline"]))
    for r in out:
        retries = r["reruns"] + r["rechecks"]
        r["rerun_pass_rate"] = r["rerun_passed"] / retries if retries else None
    return out
