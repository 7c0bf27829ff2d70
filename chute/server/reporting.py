"""Results and image tags back on the change: build a RunReport, hand it to the project's reporter.

Connections to review systems are per server, like Zuul's (credentials never
live in the database): ``CHUTE_GERRIT_URL``/``_USER``/``_PASSWORD`` (and
``CHUTE_GERRIT_VOTE_LABEL`` to vote), ``CHUTE_GITLAB_URL``/``_TOKEN``,
``CHUTE_GITHUB_TOKEN`` (and ``CHUTE_GITHUB_API_URL``). A project's
``settings["report"]`` may override the non-secret parts (url, vote label).
A failure to report is written to the ledger and never fails the run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import select

from chute.store import Project, Run, ledger

log = logging.getLogger("chute.reporting")


def reporter_for(project: Project) -> Any | None:
    """The reporter of the project's review system, or None when none is configured."""
    from chute.reporters import GerritReporter, GitHubReporter, GitLabReporter

    over = (project.settings or {}).get("report", {})
    env = os.environ
    if project.review_kind == "gerrit" and env.get("CHUTE_GERRIT_URL"):
        return GerritReporter(over.get("url") or env["CHUTE_GERRIT_URL"], env.get("CHUTE_GERRIT_USER", ""),
                              env.get("CHUTE_GERRIT_PASSWORD", ""),
                              vote_label=over.get("vote_label") or env.get("CHUTE_GERRIT_VOTE_LABEL") or None)
    if project.review_kind == "gitlab" and env.get("CHUTE_GITLAB_TOKEN"):
        return GitLabReporter(over.get("url") or env.get("CHUTE_GITLAB_URL", "https://gitlab.com"),
                              env["CHUTE_GITLAB_TOKEN"])
    if project.review_kind == "github" and env.get("CHUTE_GITHUB_TOKEN"):
        return GitHubReporter(env["CHUTE_GITHUB_TOKEN"],
                              api_url=over.get("url") or env.get("CHUTE_GITHUB_API_URL", "https://api.github.com"))
    return None


_STATUS = {"queued": "pending", "running": "running", "success": "success", "failure": "failure",
           "error": "error", "cancelled": "cancelled"}


def build_report(base: str, run: Run, change_runs: list[Run]) -> Any:
    """One report for the run's change: the latest run of each pipeline, and every image."""
    from chute.reporters import PipelineResult, RunReport

    change = run.change
    latest: dict[str, Run] = {}
    for r in change_runs:
        latest[r.pipeline] = r
    pipelines = tuple(
        PipelineResult(name, _STATUS.get(r.status, "error"),
                       (r.finished_at - r.started_at).total_seconds() if r.finished_at and r.started_at else None,
                       f"{base}/runs/{r.id}")
        for name, r in latest.items()
    )
    images = tuple(ref for r in latest.values() for img in r.images for ref in img.references())
    number = int(change.number) if change.number.isdigit() else None
    return RunReport(
        project=run.project.review_project or run.project.name,
        sha=change.commit,
        pipelines=pipelines,
        change_number=number,
        patchset=change.patchset or None,
        images=images,
        run_id=str(run.id),
        run_url=f"{base}/runs/{run.id}",
        rerun_url=f"{base}/runs/{run.id}#rerun",
        # Vote (when a label is configured) once every pipeline ended, unless one was cancelled.
        vote=all(r.status in ("success", "failure", "error") for r in latest.values()),
    )


def report_run(state: Any, run_id: int) -> None:
    """The ``queued``/``finished`` hook: post statuses and, when all pipelines ended, the comment."""
    with state.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            return
        reporter = reporter_for(run.project)
        if reporter is None:
            return
        # All runs of the same change (same commit) make one report.
        change_runs = list(s.scalars(select(Run).where(Run.change_id == run.change_id).order_by(Run.id)))
        report = build_report(state.settings.base_url, run, change_runs)
        project_name = run.project.name
    try:
        posted = reporter.report(report)
        outcome, data = "posted", {"posted": [p.what for p in posted]}
    except Exception as exc:  # ReportError, or a network failure the reporter could not absorb
        log.warning("report for run %s failed: %s", run_id, exc)
        outcome, data = "failed", {"error": str(exc)[:500]}
    finally:
        reporter.close()
    with state.db.session() as s:
        run = s.get(Run, run_id)
        ledger.record(s, "report.sent", run=run, project=project_name, actor="server", outcome=outcome, data=data)
