"""Delivery metrics, traces, the ledger export and the Prometheus endpoint.

``install(app)`` adds these routes and the trace/dashboard pages, and gives the
app its own Prometheus registry. Reads use read-only sessions, so a long export
never holds up writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from chute.metrics import TimeError, TraceError, compute_metrics, iter_events, make_registry, parse_time, trace
from chute.metrics.export import dumps

from .. import services
from .deps import get_state
from .schemas import errors

router = APIRouter(prefix="/api/v1", tags=["metrics"], responses=errors(400, 401, 403, 404, 422))
prometheus_router = APIRouter()

SINCE_HELP = "Start of the period: a date (2026-01-31), an ISO 8601 time, or a span back from now (30d, 12h, 4w)"


class FlakinessOut(BaseModel):
    project: str
    pipeline: str
    runs: int = Field(description="Finished runs")
    failed_runs: int = Field(description="Runs that finished with failure or error")
    reruns: int = Field(description="Runs started by a rerun")
    rechecks: int = Field(description="Runs started by a recheck comment")
    rerun_passed: int = Field(description="Reruns/rechecks that passed on the same commit after a failure")
    rerun_pass_rate: float | None


class WeekOut(BaseModel):
    week: str = Field(description="Monday of the ISO week (UTC)")
    deployments: int
    failed_deployments: int
    change_failure_rate: float | None
    patches_delivered: int
    lead_time_from_upload_median_seconds: float | None
    lead_time_from_merge_median_seconds: float | None
    time_to_restore_median_seconds: float | None


class DayOut(BaseModel):
    date: str
    deployments: int


class SeriesOut(BaseModel):
    daily: list[DayOut]
    weekly: list[WeekOut]


class MetricsOut(BaseModel):
    """DORA metrics of one environment over [since, until); see docs/metrics.md for definitions."""

    project: str | None
    environment: str
    since: str | None
    until: str
    window_days: float | None
    deployment_count: int
    successful_deployment_count: int
    deployment_frequency_per_day: float | None
    deployment_frequency_per_week: float | None
    deployment_frequency_bucket: str | None = Field(description="daily | weekly | monthly | yearly (Four Keys rule)")
    lead_time_from_upload_median_seconds: float | None
    lead_time_from_upload_p90_seconds: float | None
    lead_time_from_merge_median_seconds: float | None
    lead_time_from_merge_p90_seconds: float | None
    patches_delivered: int
    patches_in_flight: int
    revert_count: int
    change_failure_rate: float | None
    failed_deployment_count: int
    rollback_count: int
    automatic_rollback_count: int
    time_to_restore_median_seconds: float | None
    time_to_restore_p90_seconds: float | None
    unrestored_failure_count: int
    flakiness: list[FlakinessOut]
    series: SeriesOut


def read_time(value: str | None, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(value, what=what)
    except TimeError as err:
        raise services.ServiceError(str(err), 400) from None


def check_project(state: Any, name: str | None) -> None:
    if name:
        with state.db.read_session() as s:
            services.get_project(s, name)


@router.get("/metrics", response_model=MetricsOut)
def get_metrics(
    project: str | None = Query(None, description="A project name; default: all projects"),
    since: str | None = Query(None, description=SINCE_HELP + "; default: the beginning of the ledger"),
    until: str | None = Query(None, description="End of the period (exclusive); default: now"),
    environment: str = Query("production", description="The environment that counts as production"),
    state=Depends(get_state),  # type: ignore[no-untyped-def]
) -> dict[str, Any]:
    """Deployment frequency, lead time per patch, change failure rate, time to restore and flakiness,
    computed from the ledger at the time of the request (no cache)."""
    check_project(state, project)
    return compute_metrics(state.db, project=project, since=read_time(since, "since"),
                           until=read_time(until, "until"), environment=environment)


@router.get("/projects/{name}/trace")
def get_trace(
    name: str,
    change: str | None = Query(None, description="A change / MR / PR number"),
    commit: str | None = Query(None, description="A commit sha (7 characters or more)"),
    environment: str | None = Query(None, description="With revision: the deployment's environment. With change "
                                                      "or commit: where lead time is measured to (production)"),
    revision: int | None = Query(None, description="A deployment revision number of the environment"),
    state=Depends(get_state),  # type: ignore[no-untyped-def]
) -> dict[str, Any]:
    """The journey of a patch (``type: patch``: steps with the time between them, patchsets, runs,
    deployments, events), or what one deployment shipped (``type: deployment``: its changes with
    their lead times, health verdicts, rollback, events)."""
    check_project(state, name)
    try:
        return trace(state.db, name, change=change, commit=commit, environment=environment,
                     revision=revision).to_json()
    except TraceError as err:
        raise services.ServiceError(err.message, err.status, err.hint) from None


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "One ledger event per line (schema: docs/ledger.md), oldest first"}})
def get_events(
    project: str | None = None,
    since: str | None = Query(None, description=SINCE_HELP),
    until: str | None = Query(None, description="Only events before this time"),
    after: int | None = Query(None, description="Only events with an id above this (to resume an export)"),
    kind: list[str] | None = Query(None, description="Only these kinds (repeat the parameter)"),
    format: str = Query("jsonl", description="jsonl (the only format; ndjson is the same)"),
    state=Depends(get_state),  # type: ignore[no-untyped-def]
) -> StreamingResponse:
    """Export the ledger as JSON lines, streamed (a million events never sit in memory)."""
    if format not in ("jsonl", "ndjson"):
        raise services.ServiceError(f"format {format!r} is not supported", 400, "use format=jsonl")
    check_project(state, project)
    docs = iter_events(state.db, project=project, since=read_time(since, "since"), until=read_time(until, "until"),
                       after_id=after, kinds=kind)

    def lines() -> Iterator[bytes]:
        batch: list[str] = []
        for doc in docs:
            batch.append(dumps(doc))
            if len(batch) >= 500:
                yield ("\n".join(batch) + "\n").encode()
                batch = []
        if batch:
            yield ("\n".join(batch) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@prometheus_router.get("/metrics", include_in_schema=False)
def prometheus(state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    """Prometheus text exposition, read from the database at scrape time."""
    return Response(generate_latest(state.prometheus_registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """Add the metrics API, ``/metrics`` and the trace/dashboard pages to ``app``."""
    from ..metrics_pages import router as pages

    state = app.state.chute
    state.prometheus_registry, state.prometheus_collector = make_registry(state.db)
    app.include_router(router)
    app.include_router(prometheus_router)
    app.include_router(pages)
