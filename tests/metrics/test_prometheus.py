"""The Prometheus collector: gauges from the state tables, counters and histograms folded from the ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from chute.metrics import make_registry
from chute.metrics.prometheus import LEAD_TIME_BUCKETS, LedgerFold
from chute.server.services import update_stage
from chute.store import Change, Database, Project, Run, ledger, utcnow
from chute.store.queue import enqueue

from .conftest import T0, History
from .test_dora import LEAD


def samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return found.get((name, tuple(sorted(labels.items()))))


def test_ledger_figures(db: Database, main_history: History) -> None:
    registry, _ = make_registry(db)
    m = samples(registry)
    prod = {"project": "shop", "environment": "production"}
    assert value(m, "chute_deployments_total", kind="deploy", outcome="healthy", **prod) == 6  # 1 2 4 5 8 10
    assert value(m, "chute_deployments_total", kind="deploy", outcome="rolled-back", **prod) == 1  # 6
    assert value(m, "chute_deployments_total", kind="deploy", outcome="failed", **prod) == 1  # 9
    assert value(m, "chute_deployments_total", kind="auto-rollback", outcome="healthy", **prod) == 1  # 7
    assert value(m, "chute_rollbacks_total", automatic="true", outcome="restored", **prod) == 1
    assert value(m, "chute_rollbacks_total", automatic="false", outcome="restored", **prod) == 1
    assert value(m, "chute_time_to_restore_seconds_count", **prod) == 2
    assert value(m, "chute_time_to_restore_seconds_sum", **prod) == 8100 + 900
    # lead time per patch: the same seven patches and seconds as compute_metrics
    up = [v[0] for v in LEAD.values()]
    assert value(m, "chute_lead_time_seconds_count", since="upload", **prod) == 7
    assert value(m, "chute_lead_time_seconds_sum", since="upload", **prod) == sum(up)
    assert value(m, "chute_lead_time_seconds_sum", since="merge", **prod) == sum(v[1] for v in LEAD.values())
    for bound in LEAD_TIME_BUCKETS:
        assert value(m, "chute_lead_time_seconds_bucket", since="upload", le=str(bound), **prod) == \
            sum(1 for v in up if v <= bound)
    assert value(m, "chute_lead_time_seconds_bucket", since="upload", le="+Inf", **prod) == 7
    assert value(m, "chute_runs_finished_total", project="shop", pipeline="test", outcome="failure",
                 trigger="webhook") == 2  # runs 1 and 4
    assert value(m, "chute_reruns_passed_total", project="shop", pipeline="test") == 2
    assert value(m, "chute_reruns_passed_total", project="shop", pipeline="publish") == 1
    assert value(m, "chute_ledger_events_total", kind="deploy.finished") == 10 + 1  # production 1-10, staging 1
    assert value(m, "chute_deployments_total", project="shop", environment="staging", kind="deploy",
                 outcome="healthy") == 1


def test_state_gauges_and_stage_durations_from_the_real_write_path(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        p = Project(name="web", repo_url="/r", webhook_secret="x")
        ch = Change(project=p, kind="push", commit="f" * 40)
        done = Run(project=p, change=ch, pipeline="test", status="running")
        waiting = Run(project=p, change=ch, pipeline="test")
        held = Run(project=p, change=ch, pipeline="deploy")
        s.add_all([done, waiting, held])
        s.flush()
        enqueue(s, waiting, {})
        enqueue(s, held, {}, not_before=now + timedelta(hours=1))
        update_stage(s, done, "build", "running", at=now - timedelta(seconds=42))
        update_stage(s, done, "build", "success", at=now)
        update_stage(s, done, "unit", "running", at=now)
        update_stage(s, done, "unit", "failure", at=now + timedelta(seconds=200), error="boom")
    registry, _ = make_registry(db)
    m = samples(registry)
    assert value(m, "chute_runs", project="web", status="running") == 1
    assert value(m, "chute_runs", project="web", status="queued") == 2
    assert value(m, "chute_queue_depth") == 1 and value(m, "chute_queue_held") == 1
    assert value(m, "chute_jobs_running") == 0
    assert 0 <= (value(m, "chute_queue_oldest_seconds") or -1) < 60
    build = {"project": "web", "pipeline": "test", "stage": "build"}
    assert value(m, "chute_stage_duration_seconds_count", **build) == 1
    assert value(m, "chute_stage_duration_seconds_sum", **build) == pytest.approx(42)
    assert value(m, "chute_stage_duration_seconds_bucket", le="30", **build) == 0
    assert value(m, "chute_stage_duration_seconds_bucket", le="60", **build) == 1
    unit = {"project": "web", "pipeline": "test", "stage": "unit"}
    assert value(m, "chute_stage_duration_seconds_bucket", le="120", **unit) == 0
    assert value(m, "chute_stage_duration_seconds_bucket", le="300", **unit) == 1


def test_scrapes_are_incremental_and_registries_separate(db: Database, main_history: History) -> None:
    registry, collector = make_registry(db)
    other_registry, _ = make_registry(db)
    first = samples(registry)
    folded = collector.fold.last_id
    assert folded == max(main_history.written)
    main_history.deploy("production", 11, T0 + timedelta(days=12), commits=[])
    second = samples(registry)
    key = {"project": "shop", "environment": "production", "kind": "deploy", "outcome": "healthy"}
    assert value(second, "chute_deployments_total", **key) == value(first, "chute_deployments_total", **key) + 1
    assert collector.fold.last_id == max(main_history.written) > folded
    # another app's registry folds on its own and agrees
    assert value(samples(other_registry), "chute_deployments_total", **key) == value(second,
                                                                                      "chute_deployments_total", **key)


def test_out_of_order_commits_are_not_lost(db: Database, db_url: str) -> None:
    """PostgreSQL hands out ids at insert and shows rows at commit: a scrape between the two must
    not skip the earlier id for good."""
    if db.is_sqlite:
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): ids always become visible in order")
    History(db)  # the project row
    fold = LedgerFold()
    slow = db._factory()  # a transaction that takes its id first and commits last
    ev = ledger.record(slow, "deploy.finished", project="shop", environment="production", revision=1,
                       outcome="healthy", data={"kind": "deploy", "commits": []})
    slow.flush()
    with db.session() as fast:
        ledger.record(fast, "deploy.finished", project="shop", environment="production", revision=2,
                      outcome="healthy", data={"kind": "deploy", "commits": []})
    with db.read_session() as s:
        fold.advance(s)
    assert sum(fold.deployments.values()) == 1 and ev.id in fold.gaps
    slow.commit()
    slow.close()
    with db.read_session() as s:
        fold.advance(s)
    assert sum(fold.deployments.values()) == 2 and not fold.gaps
    # an id that never commits is given up after GAP_WAIT
    with db.session() as s:
        s.execute(text("SELECT nextval(pg_get_serial_sequence('events', 'id'))"))
    History(db).push("e" * 40, T0)
    with db.read_session() as s:
        fold.advance(s, now=0.0)
        assert len(fold.gaps) == 1
        fold.advance(s, now=10_000.0)
    assert not fold.gaps


def test_first_scrape_aggregates_equal_folding_event_by_event(db: Database) -> None:
    """A collector started before the history (folding each event) and one started after it
    (aggregating at its first scrape) report the same figures."""
    from .conftest import build_main_history

    early, _ = make_registry(db)
    samples(early)  # empty ledger: nothing to aggregate; everything later comes event by event
    h = build_main_history(db)
    with db.session() as s:  # stages through the real write path, so stage durations are covered
        p = Project(name="web", repo_url="/r", webhook_secret="x")
        run = Run(project=p, change=Change(project=p, kind="push", commit="f" * 40), pipeline="test")
        s.add(run)
        s.flush()
        update_stage(s, run, "build", "running", at=T0)
        update_stage(s, run, "build", "success", at=T0 + timedelta(seconds=75))
    h.deploy("production", 11, T0 + timedelta(days=13), commits=[])
    late, _ = make_registry(db)

    def comparable(reg) -> dict:  # type: ignore[no-untyped-def, type-arg]
        return {k: v for k, v in samples(reg).items() if not k[0].startswith(("chute_metrics_collect", "chute_queue"))}

    assert comparable(early) == comparable(late)
    assert value(samples(late), "chute_stage_duration_seconds_sum", project="web", pipeline="test",
                 stage="build") == 75
