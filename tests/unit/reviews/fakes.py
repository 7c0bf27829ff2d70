"""Recording fakes of the Gerrit, GitLab and GitHub REST APIs: real HTTP servers on 127.0.0.1.

Each fake checks every request against the official API's shape (method, path pattern with
URL-encoded project names, auth header form, content type, required JSON fields, their types
and allowed values) and answers like the real API, including its error forms. A malformed
request gets a 4xx, so a reporter that sends a wrong request fails its test. Each request is
recorded with the fake's verdict for assertions.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Recorded:
    method: str
    path: str  # the raw request target path, percent-encoding as sent
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int = 0
    problem: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def _json_answer(status: int, data: Any, prefix: str = "") -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8"}, (prefix + json.dumps(data)).encode()


class Reject(Exception):
    """A request that does not match the API: answered with ``answer``."""

    def __init__(self, answer: Answer, problem: str) -> None:
        super().__init__(problem)
        self.answer = answer
        self.problem = problem


class FakeAPI:
    """Base: the HTTP server, recording and failure injection; subclasses implement ``route``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        #: Answers to give (before any checking) to the next requests: (status, body).
        self.fail_next: list[tuple[int, str]] = []
        #: Close the connection without answering the next N requests.
        self.drop_next = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- server plumbing -------------------------------------------------------------------
    def start(self) -> FakeAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                rec = Recorded(
                    method=self.command,
                    path=split.path,
                    query=split.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with fake._lock:
                    fake.requests.append(rec)
                    drop = fake.drop_next > 0
                    if drop:
                        fake.drop_next -= 1
                    injected = fake.fail_next.pop(0) if (fake.fail_next and not drop) else None
                if drop:
                    rec.problem = "dropped by the test"
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if injected is not None:
                    status, text = injected
                    answer: Answer = (status, {"Content-Type": "text/plain"}, text.encode())
                    rec.problem = "injected by the test"
                else:
                    try:
                        answer = fake.route(rec)
                    except Reject as exc:
                        answer = exc.answer
                        rec.problem = exc.problem
                status, headers, payload = answer
                rec.status = status
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def accepted(self) -> list[Recorded]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def route(self, rec: Recorded) -> Answer:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- shared checks ---------------------------------------------------------------------
    @staticmethod
    def require_json_body(rec: Recorded, error: Any, status: int = 400) -> dict[str, Any]:
        content_type = rec.headers.get("content-type", "")
        if content_type.split(";")[0].strip() != "application/json":
            raise Reject(_json_answer(415, error("Content-Type must be application/json")), "content type")
        try:
            data = json.loads(rec.body)
        except ValueError:
            raise Reject(_json_answer(status, error("body is not valid JSON")), "bad JSON") from None
        if not isinstance(data, dict):
            raise Reject(_json_answer(status, error("body must be a JSON object")), "not an object")
        return data


# ======================================================================================
# Gerrit
# ======================================================================================

REVIEW_INPUT_FIELDS = {
    "message",
    "tag",
    "labels",
    "comments",
    "robot_comments",
    "drafts",
    "draft_ids_to_publish",
    "notify",
    "notify_details",
    "omit_duplicate_comments",
    "on_behalf_of",
    "reviewers",
    "ready",
    "work_in_progress",
    "add_to_attention_set",
    "remove_from_attention_set",
    "ignore_automatic_attention_set_rules",
    "strict_labels",
    "response_format_options",
}
NOTIFY = {"NONE", "OWNER", "OWNER_REVIEWERS", "ALL"}


@dataclass
class GerritChange:
    project: str
    number: int
    #: patch set number → revision sha
    revisions: dict[int, str] = field(default_factory=dict)


class FakeGerrit(FakeAPI):
    """``POST {prefix}/a/changes/{project~number}/revisions/{revision}/review`` (set review)."""

    XSSI = ")]}'\n"

    def __init__(
        self,
        username: str,
        password: str,
        changes: list[GerritChange],
        labels: dict[str, range] | None = None,
        prefix: str = "/r",
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.changes = {(c.project, c.number): c for c in changes}
        self.labels = labels or {"Code-Review": range(-2, 3), "Verified": range(-1, 2)}
        self.prefix = prefix
        #: answer 200 with this text instead of a ReviewResult (a misconfigured proxy)
        self.html_instead: str | None = None
        self.reviews: list[tuple[str, int, int, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    def route(self, rec: Recorded) -> Answer:
        def text(status: int, message: str) -> Answer:
            # Gerrit answers errors as plain text.
            return status, {"Content-Type": "text/plain; charset=utf-8"}, message.encode()

        pattern = re.escape(self.prefix) + r"/a/changes/([^/]+)/revisions/([^/]+)/review"
        match = re.fullmatch(pattern, rec.path)
        if match is None:
            raise Reject(text(404, "Not Found"), f"no such endpoint: {rec.path}")
        if rec.method != "POST":
            raise Reject(text(405, "Method Not Allowed"), f"method {rec.method}")
        auth = rec.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if auth != expected:
            raise Reject(text(401, "Unauthorized"), "bad or missing basic auth")
        change_id, revision_id = match.groups()
        # change id: <url-encoded project>~<number>; the project is one path segment, so its
        # slashes must arrive as %2F.
        project_enc, sep, number_text = change_id.rpartition("~")
        if not sep or not number_text.isdigit():
            raise Reject(text(404, f"Not found: {unquote(change_id)}"), "change id is not project~number")
        # The path pattern already refused a project whose slashes were not sent as %2F.
        project = unquote(project_enc)
        change = self.changes.get((project, int(number_text)))
        if change is None:
            raise Reject(text(404, f"Not found: {unquote(change_id)}"), "unknown change")
        if revision_id.isdigit():
            if int(revision_id) not in change.revisions:
                raise Reject(text(404, f"Not found: {revision_id}"), "unknown patch set")
            patchset = int(revision_id)
        else:
            found = [ps for ps, sha in change.revisions.items() if sha == revision_id]
            if not found:
                raise Reject(text(404, f"Not found: {revision_id}"), "unknown revision")
            patchset = found[0]
        data = self.require_json_body(rec, lambda m: m)
        unknown = set(data) - REVIEW_INPUT_FIELDS
        if unknown:
            raise Reject(text(400, f"unknown ReviewInput fields: {sorted(unknown)}"), "unknown fields")
        if "message" in data and not isinstance(data["message"], str):
            raise Reject(text(400, "message must be a string"), "message type")
        if "tag" in data and not isinstance(data["tag"], str):
            raise Reject(text(400, "tag must be a string"), "tag type")
        if "notify" in data and data["notify"] not in NOTIFY:
            raise Reject(text(400, f"invalid notify: {data['notify']}"), "notify value")
        labels = data.get("labels", {})
        if not isinstance(labels, dict):
            raise Reject(text(400, "labels must be an object"), "labels type")
        for name, value in labels.items():
            if name not in self.labels:
                raise Reject(text(400, f'label "{name}" is not a configured label'), "unknown label")
            if isinstance(value, bool) or not isinstance(value, int):
                raise Reject(text(400, f"label {name}: value must be an integer"), "label value type")
            if value not in self.labels[name]:
                raise Reject(text(400, f"label {name}: {value} is not a valid value"), "label value range")
        self.reviews.append((project, change.number, patchset, data))
        if self.html_instead is not None:
            return 200, {"Content-Type": "text/html"}, self.html_instead.encode()
        return _json_answer(200, {"labels": labels, "ready": False}, prefix=self.XSSI)


# ======================================================================================
# GitLab
# ======================================================================================

GITLAB_STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}
GITLAB_STATUS_FIELDS = {
    "state",
    "ref",
    "name",
    "context",
    "target_url",
    "description",
    "coverage",
    "pipeline_id",
}
_UNFINISHED = {"pending", "running"}


@dataclass
class GitLabProject:
    path: str
    id: int
    commits: set[str]
    merge_requests: set[int]


class FakeGitLab(FakeAPI):
    """``POST /api/v4/projects/:id/statuses/:sha`` and ``…/merge_requests/:iid/notes``."""

    def __init__(self, token: str, projects: list[GitLabProject]) -> None:
        super().__init__()
        self.token = token
        self.projects = projects
        #: (project path, sha, name) → current state, to emulate GitLab's transition rules
        self.statuses: dict[tuple[str, str, str], str] = {}
        self.notes: list[tuple[str, int, str]] = []

    @property
    def url(self) -> str:
        return self.origin

    def _project(self, segment: str) -> GitLabProject:
        if "/" in segment:
            raise Reject(_json_answer(404, {"error": "404 Not Found"}), "project id not one segment")
        decoded = unquote(segment)
        for p in self.projects:
            if decoded == p.path or decoded == str(p.id):
                return p
        raise Reject(_json_answer(404, {"message": "404 Project Not Found"}), "unknown project")

    def route(self, rec: Recorded) -> Answer:
        status_match = re.fullmatch(r"/api/v4/projects/([^/]+)/statuses/([^/]+)", rec.path)
        note_match = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests/([^/]+)/notes", rec.path)
        if status_match is None and note_match is None:
            raise Reject(_json_answer(404, {"error": "404 Not Found"}), f"no such endpoint: {rec.path}")
        if rec.method != "POST":
            raise Reject(_json_answer(405, {"error": "405 Method Not Allowed"}), f"method {rec.method}")
        if rec.headers.get("private-token") != self.token:
            raise Reject(_json_answer(401, {"message": "401 Unauthorized"}), "bad or missing PRIVATE-TOKEN")

        def error(message: str) -> dict[str, str]:
            return {"error": message}

        if status_match is not None:
            project = self._project(status_match.group(1))
            sha = status_match.group(2)
            if sha not in project.commits:
                raise Reject(_json_answer(404, {"message": "404 Commit Not Found"}), "unknown commit")
            data = self.require_json_body(rec, error)
            unknown = set(data) - GITLAB_STATUS_FIELDS
            if unknown:
                raise Reject(
                    _json_answer(400, error(f"unknown parameters {sorted(unknown)}")), "unknown fields"
                )
            state = data.get("state")
            if state not in GITLAB_STATES:
                raise Reject(_json_answer(400, error("state does not have a valid value")), "state value")
            for key in ("ref", "name", "context", "target_url", "description"):
                if key in data and not isinstance(data[key], str):
                    raise Reject(_json_answer(400, error(f"{key} is invalid")), f"{key} type")
            if "target_url" in data and not re.match(r"^https?://", data["target_url"]):
                blocked = error("target_url is blocked: Only allowed schemes are http, https")
                raise Reject(_json_answer(400, blocked), "target_url scheme")
            name = data.get("name") or data.get("context") or "default"
            key = (project.path, sha, name)
            current = self.statuses.get(key)
            if current is not None and current == state and current in _UNFINISHED:
                event = "run" if state == "running" else "enqueue"
                return _json_answer(
                    400,
                    {
                        "message": (
                            f"Cannot transition status via :{event} from :{current} "
                            f'(Reason(s): Status cannot transition via "{event}")'
                        )
                    },
                )
            self.statuses[key] = state
            return _json_answer(
                201,
                {
                    "id": len(self.requests),
                    "sha": sha,
                    "ref": data.get("ref"),
                    "status": state,
                    "name": name,
                    "target_url": data.get("target_url"),
                    "description": data.get("description"),
                    "created_at": "2026-11-20T10:00:00.000Z",
                    "allow_failure": False,
                    "author": {"id": 1, "username": "chute-bot"},
                },
            )

        assert note_match is not None
        project = self._project(note_match.group(1))
        iid_text = note_match.group(2)
        if not iid_text.isdigit() or int(iid_text) not in project.merge_requests:
            raise Reject(_json_answer(404, {"message": "404 Not found"}), "unknown merge request")
        data = self.require_json_body(rec, error)
        body = data.get("body")
        if not isinstance(body, str) or not body.strip():
            raise Reject(_json_answer(400, error("body is missing")), "note body")
        if set(data) - {"body", "internal", "confidential", "created_at", "merge_request_diff_head_sha"}:
            raise Reject(_json_answer(400, error("unknown parameters")), "unknown fields")
        self.notes.append((project.path, int(iid_text), body))
        return _json_answer(
            201,
            {
                "id": len(self.notes),
                "body": body,
                "author": {"id": 1, "username": "chute-bot"},
                "noteable_type": "MergeRequest",
                "noteable_iid": int(iid_text),
                "system": False,
            },
        )


# ======================================================================================
# GitHub
# ======================================================================================

GITHUB_STATES = {"error", "failure", "pending", "success"}
GITHUB_API_VERSIONS = {"2022-11-28", "2026-03-10"}


@dataclass
class GitHubRepo:
    full_name: str
    commits: set[str]
    pulls: set[int]


class FakeGitHub(FakeAPI):
    """``POST /repos/{owner}/{repo}/statuses/{sha}`` and ``…/issues/{number}/comments``."""

    def __init__(self, token: str, repos: list[GitHubRepo]) -> None:
        super().__init__()
        self.token = token
        self.repos = {r.full_name.lower(): r for r in repos}
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []
        self.comments: list[tuple[str, int, str]] = []

    @property
    def url(self) -> str:
        return self.origin

    def route(self, rec: Recorded) -> Answer:
        docs = "https://docs.github.com/rest"
        status_match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)", rec.path)
        comment_match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/([^/]+)/comments", rec.path)
        if status_match is None and comment_match is None:
            raise Reject(
                _json_answer(404, {"message": "Not Found", "documentation_url": docs}), "no endpoint"
            )
        if not rec.headers.get("user-agent"):
            raise Reject(
                _json_answer(
                    403,
                    {
                        "message": (
                            "Request forbidden by administrative rules. "
                            "Please make sure your request has a User-Agent header"
                        )
                    },
                ),
                "no User-Agent",
            )
        auth = rec.headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            raise Reject(
                _json_answer(401, {"message": "Bad credentials", "documentation_url": docs}), "bad auth"
            )
        if "application/vnd.github+json" not in rec.headers.get("accept", ""):
            raise Reject(_json_answer(415, {"message": "Unsupported Accept header"}), "Accept header")
        version = rec.headers.get("x-github-api-version")
        if version is not None and version not in GITHUB_API_VERSIONS:
            raise Reject(
                _json_answer(400, {"message": f"API version {version} is not supported."}), "api version"
            )
        if rec.method != "POST":
            raise Reject(_json_answer(404, {"message": "Not Found"}), f"method {rec.method}")

        def invalid(field_name: str, code: str = "invalid") -> Reject:
            return Reject(
                _json_answer(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"resource": "Status", "field": field_name, "code": code}],
                        "documentation_url": docs,
                    },
                ),
                f"invalid {field_name}",
            )

        match = status_match or comment_match
        assert match is not None
        repo = self.repos.get(f"{unquote(match.group(1))}/{unquote(match.group(2))}".lower())
        if repo is None:
            raise Reject(
                _json_answer(404, {"message": "Not Found", "documentation_url": docs}), "unknown repo"
            )
        data = self.require_json_body(rec, lambda m: {"message": f"Problems parsing JSON: {m}"})

        if status_match is not None:
            sha = status_match.group(3)
            if sha not in repo.commits:
                raise Reject(_json_answer(422, {"message": f"No commit found for SHA: {sha}"}), "unknown sha")
            if data.get("state") not in GITHUB_STATES:
                raise invalid("state")
            for key in ("target_url", "description", "context"):
                if data.get(key) is not None and not isinstance(data[key], str):
                    raise invalid(key)
            if len(data.get("description") or "") > 140:
                raise invalid("description", "custom")
            if set(data) - {"state", "target_url", "description", "context"}:
                raise invalid("body")
            self.statuses.append((repo.full_name, sha, data))
            return _json_answer(
                201,
                {
                    "id": len(self.statuses),
                    "state": data["state"],
                    "context": data.get("context", "default"),
                    "description": data.get("description"),
                    "target_url": data.get("target_url"),
                    "created_at": "2026-11-20T10:00:00Z",
                    "creator": {"login": "chute-bot"},
                },
            )

        assert comment_match is not None
        number_text = comment_match.group(3)
        if not number_text.isdigit() or int(number_text) not in repo.pulls:
            raise Reject(
                _json_answer(404, {"message": "Not Found", "documentation_url": docs}), "unknown issue"
            )
        body = data.get("body")
        if not isinstance(body, str) or not body:
            raise invalid("body", "missing_field")
        if len(body) > 65536:
            raise invalid("body", "custom")
        self.comments.append((repo.full_name, int(number_text), body))
        return _json_answer(
            201,
            {
                "id": len(self.comments),
                "body": body,
                "user": {"login": "chute-bot"},
                "html_url": f"https://github.com/{repo.full_name}/pull/{number_text}#issuecomment-{len(self.comments)}",
            },
        )
