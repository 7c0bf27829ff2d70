"""GitLab: a commit status per pipeline, and a merge request note when the run ends.

``POST /api/v4/projects/:id/statuses/:sha`` (``state`` pending/running/success/failed/
canceled, ``name``, ``target_url``, ``description``) and
``POST /api/v4/projects/:id/merge_requests/:iid/notes`` (``body``), authenticated with the
``PRIVATE-TOKEN`` header (a project, group or personal access token with the ``api`` scope).
``:id`` is the project's path URL-encoded as one segment (``group%2Fproject``).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from ._http import ApiClient
from .base import PipelineStatus, Posted, RunReport
from .format import context_name, render_markdown, status_description

STATE: dict[PipelineStatus, str] = {
    "success": "success",
    "failure": "failed",
    "error": "failed",
    "cancelled": "canceled",
    "running": "running",
}


class GitLabReporter:
    kind = "gitlab"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        context_prefix: str = "chute",
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``url`` is GitLab's web URL (``https://gitlab.example.com``); the API is below it."""
        self.context_prefix = context_prefix
        self.api = ApiClient(
            "gitlab",
            url.rstrip("/") + "/api/v4",
            headers={"PRIVATE-TOKEN": token, "Accept": "application/json"},
            secrets=[token],
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            transport=transport,
        )

    def close(self) -> None:
        self.api.close()

    def report(self, report: RunReport) -> list[Posted]:
        project = quote(report.project, safe="")
        done: list[Posted] = []
        for p in report.pipelines:
            body = {
                "state": STATE[p.status],
                "name": context_name(p, self.context_prefix),
                "description": status_description(p),
            }
            target = p.url or report.run_url
            if target:
                body["target_url"] = target
            response = self.api.post(f"/projects/{project}/statuses/{report.sha}", body, ok=(400,))
            what = f"status {body['name']}"
            if response.status_code == 400:
                # GitLab refuses to set a status to the state it already has ("Cannot
                # transition status via :run from :running"); anything else is an error.
                if "Cannot transition status" not in response.text:
                    raise self.api.fail(response)
                done.append(Posted(what, str(response.url), 400, f"already {body['state']}"))
            else:
                done.append(Posted(what, str(response.url), response.status_code))
        if report.change_number is None:
            done.append(Posted("comment", None, None, "no merge request (branch or tag build)"))
        elif report.finished:
            path = f"/projects/{project}/merge_requests/{report.change_number}/notes"
            response = self.api.post(path, {"body": render_markdown(report)})
            done.append(Posted("comment", str(response.url), response.status_code))
        return done
