"""What a reporter is told about a run, and what it answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

PipelineStatus = Literal["success", "failure", "error", "cancelled", "running"]
PIPELINE_STATUSES: tuple[PipelineStatus, ...] = ("success", "failure", "error", "cancelled", "running")

# Worst first: the overall status of a run is the first of these that any pipeline has.
_SEVERITY: tuple[PipelineStatus, ...] = ("running", "failure", "error", "cancelled", "success")

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ONE_LINE = re.compile(r"^[^\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class PipelineResult:
    """One pipeline of a run: its name in ``.pipeline/config.yaml`` and how it went."""

    name: str
    status: PipelineStatus
    #: Seconds, None while unknown.
    duration: float | None = None
    #: The pipeline's page in chute's UI.
    url: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not _ONE_LINE.match(self.name):
            raise ValueError(f"pipeline name must be one non-empty line, got {self.name!r}")
        if self.status not in PIPELINE_STATUSES:
            raise ValueError(
                f"pipeline {self.name!r}: status must be one of {', '.join(PIPELINE_STATUSES)}, "
                f"got {self.status!r}"
            )
        if self.duration is not None and not self.duration >= 0:
            raise ValueError(f"pipeline {self.name!r}: duration must be >= 0 seconds, got {self.duration!r}")
        _check_url(self.url, f"pipeline {self.name!r} url")


@dataclass(frozen=True)
class RunReport:
    """Everything a reporter needs to tell the code-review system about one run.

    ``project`` is the repository as the review system names it; ``change_number`` is the
    Gerrit change, GitLab merge request IID or GitHub pull request number (None for a branch
    or tag build, which gets commit statuses but no comment).
    """

    project: str
    sha: str
    pipelines: tuple[PipelineResult, ...]
    change_number: int | None = None
    #: Gerrit patch set; when None the review is posted on the revision ``sha``.
    patchset: int | None = None
    #: Published image references, ``registry/name:tag@sha256:<digest>``.
    images: tuple[str, ...] = ()
    run_id: str | None = None
    run_url: str | None = None
    rerun_url: str | None = None
    #: Whether the result should count as a vote (Gerrit label, when one is configured).
    vote: bool = False

    def __post_init__(self) -> None:
        if not self.project or not _ONE_LINE.match(self.project):
            raise ValueError(f"project must be one non-empty line, got {self.project!r}")
        if not _SHA.match(self.sha):
            raise ValueError(f"sha must be a 40- or 64-digit lowercase hex commit id, got {self.sha!r}")
        if not self.pipelines:
            raise ValueError("a run report needs at least one pipeline result")
        object.__setattr__(self, "pipelines", tuple(self.pipelines))
        object.__setattr__(self, "images", tuple(self.images))
        for image in self.images:
            if not image or any(c.isspace() for c in image) or not _ONE_LINE.match(image):
                raise ValueError(f"image reference must be one word, got {image!r}")
        for name, value in (("change_number", self.change_number), ("patchset", self.patchset)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.run_id is not None and not _ONE_LINE.match(self.run_id):
            raise ValueError(f"run_id must be one line, got {self.run_id!r}")
        _check_url(self.run_url, "run_url")
        _check_url(self.rerun_url, "rerun_url")

    @property
    def status(self) -> PipelineStatus:
        """The run's overall status: the worst of its pipelines'."""
        present = {p.status for p in self.pipelines}
        return next(s for s in _SEVERITY if s in present)

    @property
    def finished(self) -> bool:
        return all(p.status != "running" for p in self.pipelines)


def _check_url(url: str | None, what: str) -> None:
    if url is None:
        return
    if not re.match(r"^https?://[^\s\x00-\x1f\x7f]+$", url):
        raise ValueError(f"{what} must be an http(s) URL without spaces, got {url!r}")


@dataclass(frozen=True)
class Posted:
    """One thing a reporter did (or deliberately did not do), for the run's ledger."""

    #: ``review``, ``status chute/<pipeline>``, ``comment``.
    what: str
    #: The URL posted to (never with credentials); None when nothing was sent.
    url: str | None
    #: HTTP status of the final answer; None when nothing was sent.
    status: int | None
    note: str = ""


class ReportError(Exception):
    """A code-review system refused or could not be reached; names the system, URL and status."""

    def __init__(self, system: str, method: str, url: str, status: int | None, detail: str) -> None:
        self.system = system
        self.method = method
        self.url = url
        self.status = status
        self.detail = detail
        answer = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{system}: {method} {url} failed ({answer}): {detail}")


class Reporter(Protocol):
    """Tells one code-review system about a run. Call ``report`` whenever the run changes state.

    Commit statuses (GitLab, GitHub) follow every call; a comment or review message is posted
    once, when every pipeline has finished. Raises :class:`ReportError` when the system
    refuses a request or stays unreachable after bounded retries.
    """

    kind: str

    def report(self, report: RunReport) -> list[Posted]: ...

    def close(self) -> None:
        """Close the reporter's HTTP connections."""
        ...
