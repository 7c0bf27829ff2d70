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
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from chute.store import Database, Event, utcnow

from .ledgerview import (
    Delivery,
    Deploy,
    add_patchset_commits,
    deliveries,
    deploy_started_times,
    load_deploys,
    load_patches,
    load_rollbacks,
    reading,
)
from .periods import as_utc, day_start, days_between, iso, median, p90, seconds, week_start

BUCKET_WINDOW = timedelta(weeks=13)  # Four Keys looks at the last three months
RETRY_TRIGGERS = ("rerun", "recheck")


@dataclass
class Failure:
    deploy: Deploy
    time_to_restore: float | None


def compute_metrics(db: Database | Session, project: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, environment: str = "production", *,
                    now: datetime | None = None) -> dict[str, Any]:
    """DORA metrics and flakiness for ``project`` (None: all) in ``environment`` over [since, until).

    ``until`` defaults to now; ``since`` to the beginning of the ledger.
    """
    until = as_utc(until) if until is not None else (now or utcnow())
    since = as_utc(since) if since is not None else None
    with reading(db) as s:
        deploys = load_deploys(s, project=project, environment=environment, until=until)
        rollbacks = load_rollbacks(s, project=project, environment=environment, until=until)
        patches = load_patches(s, project=project, until=until)
        add_patchset_commits(s, patches, {(d.project, c) for d in deploys if d.healthy for c in d.commits},
                             until=until)
        flaky = flakiness(s, project=project, since=since, until=until)

        def in_period(t: datetime) -> bool:
            return (since is None or t >= since) and t < until

        deployments = [d for d in deploys if d.is_deployment and in_period(d.at)]
        failures = _failures(s, deployments, deploys, rollbacks, project, environment)
    delivered = deliveries(deploys, patches)
    period_deliveries = [dl for dl in delivered.values() if in_period(dl.deploy.at)]
    projects_deploying = {d.project for d in deploys}
    in_flight = [p for p in patches.unique()
                 if p.merged_at is not None and in_period(p.merged_at) and p.key not in delivered
                 and p.project in projects_deploying]

    window_start = since if since is not None else (day_start(deployments[0].at) if deployments else None)
    window_days = (until - window_start).total_seconds() / 86400 if window_start is not None else None
    count = len(deployments)
    per_day = count / window_days if window_days else None
    up, mg = _lead_times(period_deliveries)
    ttrs = [f.time_to_restore for f in failures if f.time_to_restore is not None]
    return {
        "project": project,
        "environment": environment,
        "since": iso(since),
        "until": iso(until),
        "window_days": window_days,
        "deployment_count": count,
        "successful_deployment_count": sum(1 for d in deployments if d.healthy and not _is_failed(d, failures)),
        "deployment_frequency_per_day": per_day,
        "deployment_frequency_per_week": per_day * 7 if per_day is not None else None,
        "deployment_frequency_bucket": _bucket(deployments, window_start, until) if count else None,
        "lead_time_from_upload_median_seconds": median(up),
        "lead_time_from_upload_p90_seconds": p90(up),
        "lead_time_from_merge_median_seconds": median(mg),
        "lead_time_from_merge_p90_seconds": p90(mg),
        "patches_delivered": len(period_deliveries),
        "patches_in_flight": len(in_flight),
        "revert_count": sum(1 for dl in period_deliveries if dl.patch.is_revert),
        "change_failure_rate": len(failures) / count if count else None,
        "failed_deployment_count": len(failures),
        "rollback_count": sum(1 for r in rollbacks if r.kind == "rollback.finished" and in_period(r.at)),
        "automatic_rollback_count": sum(1 for r in rollbacks
                                        if r.kind == "rollback.finished" and r.automatic and in_period(r.at)),
        "time_to_restore_median_seconds": median(ttrs),
        "time_to_restore_p90_seconds": p90(ttrs),
        "unrestored_failure_count": sum(1 for f in failures if f.time_to_restore is None),
        "flakiness": flaky,
        "series": _series(deployments, failures, period_deliveries, window_start, until),
    }


def _is_failed(d: Deploy, failures: list[Failure]) -> bool:
    return any(f.deploy.id == d.id for f in failures)


def _lead_times(period_deliveries: list[Delivery]) -> tuple[list[float], list[float]]:
    """Seconds from first upload and from merge to delivery; negative gaps (clock skew) are dropped."""
    up, mg = [], []
    for dl in period_deliveries:
        a = seconds(dl.deploy.at, dl.patch.uploaded_at)
        b = seconds(dl.deploy.at, dl.patch.merged_at)
        if a is not None and a >= 0:
            up.append(a)
        if b is not None and b >= 0:
            mg.append(b)
    return up, mg


def _failures(s: Session, deployments: list[Deploy], deploys: list[Deploy], rollbacks: list[Any],
              project: str | None, environment: str) -> list[Failure]:
    rolled_back_at: dict[tuple[str, int | None], datetime] = {}
    restored: dict[tuple[str, int | None], Any] = {}
    for r in rollbacks:
        if r.from_revision is None:
            continue
        key = (r.project, r.from_revision)
        rolled_back_at.setdefault(key, r.at)
        if r.kind == "rollback.finished" and r.outcome == "restored":
            restored.setdefault(key, r)
    failed = [d for d in deployments
              if d.outcome in ("failed", "rolled-back") or (d.project, d.revision) in rolled_back_at]
    if not failed:
        return []
    started = deploy_started_times(s, project=project, environment=environment,
                                   keys={(d.project, d.revision) for d in failed})
    healthy_by_project: dict[str, list[Deploy]] = defaultdict(list)
    for d in deploys:
        if d.healthy:
            healthy_by_project[d.project].append(d)
    out = []
    for f in failed:
        key = (f.project, f.revision)
        start = started.get(key, f.at)
        ttr: float | None = None
        rb = restored.get(key)
        if rb is not None:
            ttr = rb.time_to_restore if rb.time_to_restore is not None else seconds(rb.at, start)
        else:
            # No restoring rollback: recovered by the environment's next healthy deploy.
            after = max(f.at, rolled_back_at.get(key, f.at))
            healthy = healthy_by_project[f.project]
            i = bisect.bisect_right([h.at for h in healthy], after)
            nxt = next((h for h in healthy[i:] if h.id != f.id), None)
            ttr = seconds(nxt.at, start) if nxt is not None else None
        out.append(Failure(f, ttr))
    return out


def _bucket(deployments: list[Deploy], window_start: datetime | None, until: datetime) -> str:
    """The Four Keys deployment-frequency bucket over the last 13 weeks of the period.

    Daily: the median week has >= 3 days with a deployment; weekly: the median week has
    >= 1 deployment; monthly: the median month has >= 1; otherwise yearly.
    """
    start = until - BUCKET_WINDOW
    if window_start is not None and window_start > start:
        start = window_start
    days = days_between(start, until)
    deploy_days = Counter(d.at.date() for d in deployments if start <= d.at < until)
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


def _series(deployments: list[Deploy], failures: list[Failure], period_deliveries: list[Delivery],
            window_start: datetime | None, until: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per-day deployments and per-week figures over the period, for charts (empty weeks included)."""
    if window_start is None:
        return {"daily": [], "weekly": []}
    days = days_between(window_start, until)
    per_day = Counter(d.at.date() for d in deployments)
    daily = [{"date": d.isoformat(), "deployments": per_day.get(d, 0)} for d in days]
    weeks = sorted({week_start(d) for d in days})
    dep_w: Counter[date] = Counter(week_start(d.at.date()) for d in deployments)
    fail_w: Counter[date] = Counter(week_start(f.deploy.at.date()) for f in failures)
    ttr_w: dict[date, list[float]] = defaultdict(list)
    for f in failures:
        if f.time_to_restore is not None:
            ttr_w[week_start(f.deploy.at.date())].append(f.time_to_restore)
    up_w: dict[date, list[float]] = defaultdict(list)
    mg_w: dict[date, list[float]] = defaultdict(list)
    delivered_w: Counter[date] = Counter()
    for dl in period_deliveries:
        w = week_start(dl.deploy.at.date())
        delivered_w[w] += 1
        up, mg = _lead_times([dl])
        up_w[w].extend(up)
        mg_w[w].extend(mg)
    weekly = []
    for w in weeks:
        n = dep_w.get(w, 0)
        weekly.append({
            "week": w.isoformat(),
            "deployments": n,
            "failed_deployments": fail_w.get(w, 0),
            "change_failure_rate": fail_w.get(w, 0) / n if n else None,
            "patches_delivered": delivered_w.get(w, 0),
            "lead_time_from_upload_median_seconds": median(up_w.get(w, [])),
            "lead_time_from_merge_median_seconds": median(mg_w.get(w, [])),
            "time_to_restore_median_seconds": median(ttr_w.get(w, [])),
        })
    return {"daily": daily, "weekly": weekly}


def flakiness(s: Session, *, project: str | None, since: datetime | None,
              until: datetime | None) -> list[dict[str, Any]]:
    """Per pipeline: finished runs, reruns, rechecks, and retries that passed after a failure.

    A *rerun passed* is a ``run.finished`` with trigger rerun or recheck, outcome success,
    whose ``rerun_of`` run finished with failure or error on the same commit: the same code
    failed, then passed -- the flaky signal.
    """
    pipeline = Event.data["pipeline"].as_string()
    trigger = Event.data["trigger"].as_string()

    def scoped(q: Any, ev: Any = Event) -> Any:
        q = q.where(ev.kind == "run.finished")
        if project is not None:
            q = q.where(ev.project == project)
        if since is not None:
            q = q.where(ev.at >= since)
        if until is not None:
            q = q.where(ev.at < until)
        return q

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    q = scoped(select(Event.project, pipeline, func.count(),
                      func.sum(case((Event.outcome.in_(("failure", "error")), 1), else_=0)),
                      func.sum(case((trigger == "rerun", 1), else_=0)),
                      func.sum(case((trigger == "recheck", 1), else_=0))))
    for proj, pipe, n, failed, reruns, rechecks in s.execute(q.group_by(Event.project, pipeline)):
        rows[(proj, pipe or "")] = {"project": proj, "pipeline": pipe or "", "runs": int(n),
                                    "failed_runs": int(failed or 0), "reruns": int(reruns or 0),
                                    "rechecks": int(rechecks or 0), "rerun_passed": 0}
    orig = aliased(Event)
    q = scoped(select(Event.project, pipeline, func.count())
               .join(orig, (orig.run_id == Event.data["rerun_of"].as_integer()) & (orig.kind == "run.finished")
                     & (orig.commit == Event.commit) & orig.outcome.in_(("failure", "error"))))
    q = q.where(trigger.in_(RETRY_TRIGGERS), Event.outcome == "success")
    for proj, pipe, n in s.execute(q.group_by(Event.project, pipeline)):
        row = rows.get((proj, pipe or ""))
        if row is not None:
            row["rerun_passed"] = int(n)
    out = sorted(rows.values(), key=lambda r: (r["project"], r["pipeline"]))
    for r in out:
        retries = r["reruns"] + r["rechecks"]
        r["rerun_pass_rate"] = r["rerun_passed"] / retries if retries else None
    return out
