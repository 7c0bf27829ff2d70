"""Server-rendered pages: the delivery dashboard and the traces (readable without JavaScript).

URL patterns (chute.metrics.urls builds them):

- ``/metrics/dashboard?project=&environment=&weeks=``
- ``/projects/{name}/trace`` (a search form; ``?change=|commit=|environment=&revision=`` redirects)
- ``/projects/{name}/trace/change/{number}``
- ``/projects/{name}/trace/commit/{sha}``
- ``/projects/{name}/trace/deploy/{environment}/{revision}``
- ``/projects/{name}/trace/environment/{environment}``
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select

from chute.metrics import (
    TraceError,
    compute_metrics,
    environment_history,
    environments,
    trace_change,
    trace_commit,
    trace_deployment,
    urls,
)
from chute.metrics import charts as ch
from chute.metrics.periods import human_duration, iso
from chute.store import Project, utcnow

from .api.deps import get_state

router = APIRouter(include_in_schema=False)

COLORS = {"ok": "#2f7d4f", "bad": "#c0392b", "upload": "#3b6ea8", "merge": "#8e5ea2", "ttr": "#d35400",
          "flaky": "#e67e22", "retry": "#b0b7c3", "cfr": "#c0392b"}
PERIODS = (("4", "4 weeks"), ("12", "12 weeks"), ("26", "26 weeks"), ("52", "52 weeks"), ("all", "all time"))


@lru_cache(maxsize=1)
def templates() -> Environment:
    env = Environment(loader=PackageLoader("chute.metrics", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["duration"] = human_duration
    env.filters["iso"] = iso
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "—"
    env.filters["short"] = lambda sha: (sha or "")[:12]
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.0f} %"
    env.globals["urls"] = urls
    return env


def render(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(templates().get_template(name).render(**ctx), status_code=status)


def error_page(message: str, status: int, hint: str | None = None, project: str | None = None) -> HTMLResponse:
    return render("error.html", status, title="Not found" if status == 404 else "Cannot show this",
                  message=message, hint=hint, project=project)


def _known_project(state: Any, name: str) -> bool:
    with state.db.read_session() as s:
        return s.scalars(select(Project.id).where(Project.name == name)).first() is not None


def _no_project(name: str) -> HTMLResponse:
    return error_page(f"There is no project named {name!r}.", 404, "Projects are listed at /api/v1/projects.")


# ------------------------------------------------------------------ dashboard
@router.get("/metrics/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, project: str | None = None, environment: str = "production", weeks: str = "12",
              state=Depends(get_state)) -> HTMLResponse:  # type: ignore[no-untyped-def]
    project = project or None
    if project and not _known_project(state, project):
        return _no_project(project)
    until = utcnow()
    if weeks != "all":
        try:
            n = int(weeks)
            if not 1 <= n <= 520:
                raise ValueError
        except ValueError:
            return error_page(f"weeks={weeks!r} is not a number of weeks between 1 and 520.", 400,
                              "Use weeks=12, or weeks=all for the whole ledger.")
        since = until - timedelta(weeks=n)
    else:
        since = None
    m = compute_metrics(state.db, project=project, since=since, until=until, environment=environment)
    with state.db.read_session() as s:
        projects = list(s.scalars(select(Project.name).order_by(Project.name)))
    return render("dashboard.html", m=m, charts=_dashboard_charts(m), projects=projects, project=project,
                  environment=environment, weeks=weeks, periods=PERIODS, title="Delivery metrics")


def _dashboard_charts(m: dict[str, Any]) -> dict[str, Any]:
    weekly = m["series"]["weekly"]
    labels = [w["week"][5:] for w in weekly]  # MM-DD of each week's Monday
    ok = [w["deployments"] - w["failed_deployments"] for w in weekly]
    failed = [w["failed_deployments"] for w in weekly]
    lead_up = [w["lead_time_from_upload_median_seconds"] for w in weekly]
    lead_mg = [w["lead_time_from_merge_median_seconds"] for w in weekly]
    div, unit = ch.duration_unit(max([v for v in lead_up + lead_mg if v is not None], default=0))
    ttr = [w["time_to_restore_median_seconds"] for w in weekly]
    tdiv, tunit = ch.duration_unit(max([v for v in ttr if v is not None], default=0))
    cfr = [w["change_failure_rate"] for w in weekly]
    flaky_rows = sorted(m["flakiness"], key=lambda r: (-r["rerun_passed"], -(r["reruns"] + r["rechecks"]),
                                                       r["project"], r["pipeline"]))[:15]
    multi = len({r["project"] for r in m["flakiness"]}) > 1 or m["project"] is None
    return {
        "deploys": ch.bar_chart(labels, [("healthy", ok, COLORS["ok"]), ("failed", failed, COLORS["bad"])],
                                title="Deployments per week", integer=True),
        "deploys_legend": ch.legend([("healthy", COLORS["ok"]), ("failed or rolled back", COLORS["bad"])]),
        "lead": ch.line_chart(labels, [
            ("from first upload", [v / div if v is not None else None for v in lead_up], COLORS["upload"]),
            ("from merge", [v / div if v is not None else None for v in lead_mg], COLORS["merge"])],
            title=f"Median lead time per week ({unit})", fmt=lambda v: f"{v:.1f} {unit}",
            axis_fmt=lambda v: f"{v:g} {unit}"),
        "lead_legend": ch.legend([("from first upload", COLORS["upload"]), ("from merge", COLORS["merge"])]),
        "cfr": ch.bar_chart(labels, [("change failure rate", [v * 100 if v is not None else None for v in cfr],
                                      COLORS["cfr"])], title="Change failure rate per week (%)",
                            fmt=lambda v: f"{v:.0f} %", axis_fmt=lambda v: f"{v:g} %"),
        "ttr": ch.bar_chart(labels, [("median time to restore", [v / tdiv if v is not None else None for v in ttr],
                                      COLORS["ttr"])], title=f"Median time to restore per week ({tunit})",
                            fmt=lambda v: f"{v:.1f} {tunit}", axis_fmt=lambda v: f"{v:g} {tunit}"),
        "flaky": ch.hbar_chart(
            [((f"{r['project']}/{r['pipeline']}" if multi else r["pipeline"]),
              [("passed on retry after a failure", r["rerun_passed"], COLORS["flaky"]),
               ("other reruns and rechecks", r["reruns"] + r["rechecks"] - r["rerun_passed"], COLORS["retry"])])
             for r in flaky_rows], title="Retries per pipeline", integer=True),
        "flaky_legend": ch.legend([("passed on retry after a failure (flaky)", COLORS["flaky"]),
                                   ("other reruns and rechecks", COLORS["retry"])]),
        "flaky_rows": flaky_rows,
        "multi": multi,
    }


# ------------------------------------------------------------------ traces
@router.get("/projects/{name}/trace", response_model=None)
def trace_search(name: str, change: str | None = None, commit: str | None = None, environment: str | None = None,
                 revision: str | None = None, state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    if not _known_project(state, name):
        return _no_project(name)
    change, commit, environment, revision = (v.strip() if v else None for v in (change, commit, environment, revision))
    if change:
        return RedirectResponse(urls.trace_change(name, change), 303)
    if commit:
        return RedirectResponse(urls.trace_commit(name, commit), 303)
    if environment and revision:
        if not revision.isdigit():
            return error_page(f"revision {revision!r} is not a number.", 400, project=name)
        return RedirectResponse(urls.trace_deployment(name, environment, int(revision)), 303)
    if environment:
        return RedirectResponse(urls.environment(name, environment), 303)
    envs = environments(state.db, name)
    return render("trace_search.html", project=name, environments=envs, title=f"Trace — {name}")


@router.get("/projects/{name}/trace/change/{number}", response_class=HTMLResponse)
def change_page(name: str, number: str, environment: str = "production",
                state=Depends(get_state)) -> HTMLResponse:  # type: ignore[no-untyped-def]
    if not _known_project(state, name):
        return _no_project(name)
    try:
        t = trace_change(state.db, name, number, environment=environment)
    except TraceError as err:
        return error_page(err.message, err.status, err.hint, project=name)
    return _patch_page(t)


@router.get("/projects/{name}/trace/commit/{sha}", response_class=HTMLResponse)
def commit_page(name: str, sha: str, environment: str = "production",
                state=Depends(get_state)) -> HTMLResponse:  # type: ignore[no-untyped-def]
    if not _known_project(state, name):
        return _no_project(name)
    try:
        t = trace_commit(state.db, name, sha, environment=environment)
    except TraceError as err:
        return error_page(err.message, err.status, err.hint, project=name)
    return _patch_page(t)


def _patch_page(t: Any) -> HTMLResponse:
    timed = [st for st in t.steps if st.at is not None]
    segments = []
    palette = ["#3b6ea8", "#2f7d4f", "#8e5ea2", "#d35400", "#16a085", "#c0392b", "#7f8c8d"]
    for i in range(1, len(timed)):
        secs = max(0.0, timed[i].seconds_since_previous or 0.0)
        a, b = (st.label.split(" (")[0] for st in (timed[i - 1], timed[i]))
        segments.append((f"{a} → {b}", secs, palette[(i - 1) % len(palette)]))
    total = sum(v for _, v, _ in segments)
    div, unit = ch.duration_unit(total)
    journey = ch.hbar_chart([("journey", [(n, v / div, c) for n, v, c in segments])],
                            title=f"Time between steps ({unit})", fmt=lambda v: f"{v:.1f} {unit}") if segments else None
    legend = ch.legend([(n, c) for n, _, c in segments]) if segments else None
    heading = f"Change {t.change}" if t.change else f"Commit {t.commit[:12] if t.commit else ''}"
    return render("trace_patch.html", t=t, journey=journey, journey_legend=legend, project=t.project,
                  title=f"{heading} — {t.project}", heading=heading)


@router.get("/projects/{name}/trace/deploy/{environment}/{revision}", response_class=HTMLResponse)
def deploy_page(name: str, environment: str, revision: int,
                state=Depends(get_state)) -> HTMLResponse:  # type: ignore[no-untyped-def]
    if not _known_project(state, name):
        return _no_project(name)
    try:
        t = trace_deployment(state.db, name, environment, revision)
    except TraceError as err:
        return error_page(err.message, err.status, err.hint, project=name)
    return render("trace_deploy.html", t=t, project=name,
                  title=f"{environment} revision {revision} — {name}")


@router.get("/projects/{name}/trace/environment/{environment}", response_class=HTMLResponse)
def environment_page(name: str, environment: str, state=Depends(get_state)) -> HTMLResponse:  # type: ignore[no-untyped-def]
    if not _known_project(state, name):
        return _no_project(name)
    history = environment_history(state.db, name, environment, limit=100)
    if not history:
        return error_page(f"Project {name!r} has no finished deployment to {environment!r}.", 404,
                          project=name)
    return render("trace_environment.html", project=name, environment=environment, history=history,
                  title=f"{environment} — {name}")
