"""The documented post-receive hook (docs/hooks/post-receive), run by a real git push.

A small HTTP server on 127.0.0.1 plays chute's /webhooks/git endpoint with the real driver:
it checks the secret with ``git.verify`` and parses with ``git.parse``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from chute.server.webhooks import ChangeEvent, WebhookError, git

HOOK = Path(__file__).resolve().parents[3] / "docs" / "hooks" / "post-receive"
SECRET = "post-receive-secret-42"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("curl") is None,
    reason="git and curl are needed to run the post-receive hook (apt-get install git curl)",
)


class Endpoint:
    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self.answers: list[tuple[int, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                headers = dict(self.headers.items())
                if split.path != "/webhooks/git":
                    status, text = 404, "not found"
                elif not git.verify(headers, body, SECRET, query=query):
                    status, text = 401, "bad secret"
                else:
                    try:
                        events = git.parse(headers, body)
                        endpoint.events += events
                        status, text = 202, "queued"
                    except WebhookError as exc:
                        status, text = exc.status, exc.message
                endpoint.answers.append((status, text))
                self.send_response(status)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "USER": "alice", "GIT_CONFIG_NOSYSTEM": "1"},
    )
    return result.stdout + result.stderr


def make_repo(tmp_path: Path, endpoint_url: str, secret: str) -> tuple[Path, Path]:
    bare = tmp_path / "citoid.git"
    work = tmp_path / "work"
    run("init", "--bare", "-q", "-b", "main", str(bare), cwd=tmp_path)
    shutil.copy(HOOK, bare / "hooks" / "post-receive")
    (bare / "hooks" / "post-receive").chmod(0o755)
    (tmp_path / "secret").write_text(secret + "\n")
    run("config", "chute.url", endpoint_url, cwd=bare)
    run("config", "chute.project", "citoid", cwd=bare)
    run("config", "chute.secretFile", str(tmp_path / "secret"), cwd=bare)
    run("clone", "-q", str(bare), str(work), cwd=tmp_path)
    (work / "README").write_text("citoid\n")
    run("add", "README", cwd=work)
    run("commit", "-q", "-m", "First", cwd=work)
    return bare, work


def test_push_of_a_branch_and_a_tag_reaches_chute(tmp_path: Path, endpoint: Endpoint) -> None:
    _, work = make_repo(tmp_path, endpoint.url, SECRET)
    run("push", "-q", "origin", "main", cwd=work)
    head = run("rev-parse", "HEAD", cwd=work).strip()
    run("tag", "-a", "v1.0", "-m", "Release 1.0", cwd=work)
    run("push", "-q", "origin", "v1.0", cwd=work)
    assert run("rev-parse", "v1.0", cwd=work).strip() != head  # an annotated tag object
    run("push", "-q", "origin", "main:feature", cwd=work)
    run("push", "-q", "origin", ":feature", cwd=work)  # deleting a branch is ignored

    assert [a[0] for a in endpoint.answers] == [202, 202, 202, 202]
    assert endpoint.answers[-1][1] == "ignored: git push deletes refs/heads/feature"
    got = [(e.type, e.project, e.ref, e.sha, e.author) for e in endpoint.events]
    assert got == [
        ("merged", "citoid", "refs/heads/main", head, "alice"),
        # The hook peels the annotated tag: chute builds the commit, not the tag object.
        ("tag", "citoid", "refs/tags/v1.0", head, "alice"),
        ("merged", "citoid", "refs/heads/feature", head, "alice"),
    ]


def test_a_wrong_secret_is_refused_but_the_push_still_succeeds(tmp_path: Path, endpoint: Endpoint) -> None:
    _, work = make_repo(tmp_path, endpoint.url, "not-the-secret")
    output = run("push", "origin", "main", cwd=work)
    assert endpoint.answers == [(401, "bad secret")]
    assert endpoint.events == []
    assert "chute: could not report refs/heads/main" in output
    assert "not-the-secret" not in output
