"""Telling code review how a run went: Gerrit review messages (and optional votes), GitLab and
GitHub commit statuses plus a merge/pull request comment.

Use::

    reporter = GitHubReporter(token)                   # or GerritReporter / GitLabReporter
    reporter.report(RunReport(project="owner/repo", sha=..., change_number=7,
                              pipelines=(PipelineResult("test", "running"),), run_url=...))
    ...                                                # statuses follow each call
    reporter.report(finished_report)                   # comment/review once all pipelines end

Every message is rendered by :mod:`chute.reporters.format`, so the three systems say the same.
Nothing here imports the server or the database.
"""

from .base import (
    PIPELINE_STATUSES,
    PipelineResult,
    PipelineStatus,
    Posted,
    Reporter,
    ReportError,
    RunReport,
)
from .format import render_markdown, render_text, status_description
from .gerrit import GerritReporter
from .github import GitHubReporter
from .gitlab import GitLabReporter

__all__ = [
    "PIPELINE_STATUSES",
    "GerritReporter",
    "GitHubReporter",
    "GitLabReporter",
    "PipelineResult",
    "PipelineStatus",
    "Posted",
    "ReportError",
    "Reporter",
    "RunReport",
    "render_markdown",
    "render_text",
    "status_description",
]
