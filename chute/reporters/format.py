"""The words of every report, in one place, so Gerrit, GitLab and GitHub say the same thing.

:func:`render_text` is the Gerrit review message (plain text, with PipelineLib's
``pipeline-dashboard:`` / ``pipeline-build-result:`` lines so existing Gerrit comment
styling keeps working); :func:`render_markdown` is the GitLab/GitHub comment;
:func:`status_description` is the one-line commit status text.
"""

from __future__ import annotations

import math
import re

from .base import PipelineResult, PipelineStatus, RunReport

STATUS_WORD: dict[PipelineStatus, str] = {
    "success": "passed",
    "failure": "failed",
    "error": "errored",
    "cancelled": "was cancelled",
    "running": "is running",
}
_MARK: dict[PipelineStatus, str] = {
    "success": "✅",
    "failure": "❌",
    "error": "⚠️",
    "cancelled": "⏹️",
    "running": "⏳",
}
# PipelineLib's result words (Jenkins build results) for the compatibility lines.
_PIPELINELIB_RESULT: dict[PipelineStatus, str] = {
    "success": "SUCCESS",
    "failure": "FAILURE",
    "error": "FAILURE",
    "cancelled": "ABORTED",
    "running": "RUNNING",
}
RECHECK_HINT = "reply with a comment that says only 'recheck'"
STATUS_DESCRIPTION_LIMIT = 140  # GitHub's limit; GitLab's is larger
MARKER = "<!-- chute:run-report -->"


def duration_text(seconds: float | None) -> str:
    """``1h 02m``, ``3m 07s``, ``12s``; empty when unknown."""
    if seconds is None or math.isnan(seconds):
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def pipeline_line(p: PipelineResult) -> str:
    """``test passed in 1m 04s``."""
    took = duration_text(p.duration)
    return f"{p.name} {STATUS_WORD[p.status]}" + (f" in {took}" if took and p.status != "running" else "")


def status_description(p: PipelineResult) -> str:
    """The commit status text for one pipeline, at most 140 characters."""
    text = pipeline_line(p)
    if len(text) > STATUS_DESCRIPTION_LIMIT:
        text = text[: STATUS_DESCRIPTION_LIMIT - 1] + "…"
    return text


def context_name(p: PipelineResult, prefix: str = "chute") -> str:
    """The commit status context/name of a pipeline: ``chute/test``."""
    return f"{prefix}/{p.name}"


def headline(report: RunReport) -> str:
    """``chute: all 2 pipelines passed`` / ``chute: 1 of 2 pipelines failed`` /
    ``chute: 2 of 3 pipelines did not pass (1 failed, 1 cancelled)``."""
    total = len(report.pipelines)
    noun = "pipeline" if total == 1 else "pipelines"
    status = report.status
    if status == "success":
        return f"chute: {noun} passed" if total == 1 else f"chute: all {total} {noun} passed"
    if status == "running":
        done = sum(1 for p in report.pipelines if p.status != "running")
        return f"chute: running, {done} of {total} {noun} finished"
    counts = {s: sum(1 for p in report.pipelines if p.status == s) for s in ("failure", "error", "cancelled")}
    words = {"failure": "failed", "error": "errored", "cancelled": "cancelled"}
    present = [(words[s], n) for s, n in counts.items() if n]
    if len(present) == 1:
        word, n = present[0]
        return f"chute: {n} of {total} {noun} {word}"
    details = ", ".join(f"{n} {word}" for word, n in present)
    return f"chute: {sum(counts.values())} of {total} {noun} did not pass ({details})"


def image_tags(images: tuple[str, ...]) -> list[str]:
    """The tags of ``registry/name:tag@sha256:…`` references, in order, without repeats."""
    tags: list[str] = []
    for ref in images:
        name = ref.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            tag = last.rsplit(":", 1)[1]
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def render_text(report: RunReport) -> str:
    """The Gerrit review message."""
    build = report.run_id or "-"
    lines = [headline(report) + (f" (run {report.run_id})" if report.run_id else ""), ""]
    for p in report.pipelines:
        lines.append(f"pipeline-dashboard: {p.name}")
        lines.append(
            f"pipeline-build-result: {_PIPELINELIB_RESULT[p.status]} (job: {p.name}, build: {build})"
        )
    lines.append("")
    for p in report.pipelines:
        lines.append(pipeline_line(p) + (f": {p.url}" if p.url else ""))
    if report.images:
        lines += ["", "IMAGE:"] + [f" {ref}" for ref in report.images]
        tags = image_tags(report.images)
        if tags:
            lines += ["", "TAGS:", " " + ", ".join(tags)]
    lines.append("")
    if report.run_url:
        lines.append(f"Run: {report.run_url}")
    lines.append(_rerun_text(report))
    return "\n".join(lines)


def _rerun_text(report: RunReport) -> str:
    if report.rerun_url:
        return f"Rerun: {report.rerun_url} (or {RECHECK_HINT})"
    return f"To run the tests again, {RECHECK_HINT}."


# Enough to keep names from opening emphasis, links, HTML, code or table cells.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_link(label: str, url: str | None) -> str:
    if not url:
        return md_escape(label)
    return f"[{md_escape(label)}]({url.replace('(', '%28').replace(')', '%29')})"


def render_markdown(report: RunReport) -> str:
    """The GitLab merge request note / GitHub pull request comment."""
    title = f"**{_MARK[report.status]} {md_escape(headline(report))}**"
    if report.run_url:
        title += " · " + _md_link(f"run {report.run_id}" if report.run_id else "run", report.run_url)
    lines = [MARKER, title, "", "| Pipeline | Result | Duration |", "| --- | --- | --- |"]
    for p in report.pipelines:
        lines.append(
            f"| {_md_link(p.name, p.url)} | {_MARK[p.status]} {STATUS_WORD[p.status]} "
            f"| {duration_text(p.duration) or '–'} |"
        )
    if report.images:
        # Backticks would close the code block early; references never contain them.
        refs = [ref.replace("`", "") for ref in report.images]
        lines += ["", "**Published images**", "", "```", *refs, "```"]
    lines.append("")
    if report.rerun_url:
        lines.append(f"{_md_link('Rerun', report.rerun_url)}, or {RECHECK_HINT}.")
    else:
        lines.append(f"To run the tests again, {RECHECK_HINT}.")
    return "\n".join(lines)
