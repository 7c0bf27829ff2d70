"""URL patterns of the trace and dashboard pages, for links from runs, changes and environments."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def _p(value: object) -> str:
    return quote(str(value), safe="")


def trace_change(project: str, change: str) -> str:
    return f"/projects/{_p(project)}/trace/change/{_p(change)}"


def trace_commit(project: str, commit: str) -> str:
    return f"/projects/{_p(project)}/trace/commit/{_p(commit)}"


def trace_deployment(project: str, environment: str, revision: int) -> str:
    return f"/projects/{_p(project)}/trace/deploy/{_p(environment)}/{int(revision)}"


def environment(project: str, environment: str) -> str:
    return f"/projects/{_p(project)}/trace/environment/{_p(environment)}"


def trace_search(project: str) -> str:
    return f"/projects/{_p(project)}/trace"


def dashboard(project: str | None = None, **params: object) -> str:
    query = {k: v for k, v in {"project": project, **params}.items() if v not in (None, "")}
    return "/metrics/dashboard" + (f"?{urlencode(query)}" if query else "")
