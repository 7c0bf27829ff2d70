"""GitHub: a commit status per pipeline, and a pull request comment when the run ends.

``POST /repos/{owner}/{repo}/statuses/{sha}`` (``state`` error/failure/pending/success,
``context``, ``description`` of at most 140 characters, ``target_url``) and
``POST /repos/{owner}/{repo}/issues/{number}/comments`` (``body``), with
``Authorization: Bearer <token>``, ``Accept: application/vnd.github+json`` and
``X-GitHub-Api-Version``. Works with GitHub Enterprise Server: pass its API URL
(``https://github.example.com/api/v3``).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from ._http import ApiClient
from .base import PipelineStatus, Posted, RunReport
from .format import context_name, render_markdown, status_description

API_VERSION = "2022-11-28"
STATE: dict[PipelineStatus, str] = {
    "success": "success",
    "failure": "failure",
    "error": "error",
    # GitHub has no "cancelled" state; "error" does not claim the code is broken.
    "cancelled": "error",
    "running": "pending",
}


class GitHubReporter:
    kind = "github"

    def __init__(
        self,
        token: str,
        *,
        api_url: str = "https://api.github.com",
        context_prefix: str = "chute",
        api_version: str = API_VERSION,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.context_prefix = context_prefix
        self.api = ApiClient(
            "github",
            api_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": api_version,
            },
            secrets=[token],
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            transport=transport,
        )

    def close(self) -> None:
        self.api.close()

    def report(self, report: RunReport) -> list[Posted]:
        owner, sep, repo = report.project.partition("/")
        if not sep or not owner or not repo or "/" in repo:
            raise ValueError(f"a GitHub project is 'owner/repo', got {report.project!r}")
        base = f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
        done: list[Posted] = []
        for p in report.pipelines:
            body = {
                "state": STATE[p.status],
                "context": context_name(p, self.context_prefix),
                "description": status_description(p),
            }
            target = p.url or report.run_url
            if target:
                body["target_url"] = target
            response = self.api.post(f"{base}/statuses/{report.sha}", body)
            done.append(Posted(f"status {body['context']}", str(response.url), response.status_code))
        if report.change_number is None:
            done.append(Posted("comment", None, None, "no pull request (branch or tag build)"))
        elif report.finished:
            path = f"{base}/issues/{report.change_number}/comments"
            response = self.api.post(path, {"body": render_markdown(report)})
            done.append(Posted("comment", str(response.url), response.status_code))
        return done
