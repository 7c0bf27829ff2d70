"""The web UI against a real app: real SQLite database, real agent protocol, real forms.

Runs are set up with rows in the store plus ``services.queue_run`` (what the API's
trigger does after parsing the pipeline config), then driven through the agent
HTTP protocol with chute's own AgentClient, exactly as an agent would.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chute.agent.client import AgentClient
from chute.server import services
from chute.server.app import create_app
from chute.server.settings import Settings
from chute.store import Change, Event, Job, LogChunk, Project, Run, Token, utcnow

# AgentClient passes per-request timeouts, which Starlette's TestClient only warns about.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

CONFIG = """\
pipelines:
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: test
      - name: production
        build: production
        publish:
          image:
            tags: [latest]
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org", "GIT_COMMITTER_NAME": "Ada",
           "GIT_COMMITTER_EMAIL": "ada@example.org"}


def make_repo(path: Path, *, pipeline: bool) -> str:
    """A git repository with one commit on main; returns the commit sha."""
    path.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    (path / "app.py").write_text("print('hello')\n")
    if pipeline:
        (path / ".pipeline").mkdir()
        (path / ".pipeline" / "config.yaml").write_text(CONFIG)
        (path / ".pipeline" / "blubber.yaml").write_text("version: v4\nvariants:\n  test: {}\n  production: {}\n")
    git("add", "-A")
    git("commit", "-q", "-m", "first commit")
    return git("rev-parse", "HEAD")


@dataclass
class Env:
    app: Any
    client: TestClient
    settings: Settings
    token: str
    repo: Path
    commit: str
    tmp: Path

    @property
    def state(self) -> Any:
        return self.app.state.chute

    def agent(self, name: str = "test-agent") -> AgentClient:
        """chute's AgentClient, talking to the app in-process."""
        ac = AgentClient("http://testserver", self.token, name)
        ac.http.close()
        ac.http = TestClient(self.app, headers={"Authorization": f"Bearer {self.token}"})
        return ac

    def login(self) -> None:
        page = self.client.get("/login")
        r = self.client.post("/login", data={"csrf": csrf_of(page.text), "token": self.token, "method": "token",
                                              "next": "/"}, follow_redirects=False)
        assert r.status_code == 303, r.text

    def csrf(self, path: str = "/") -> str:
        return csrf_of(self.client.get(path).text)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


@pytest.fixture
def env(tmp_path: Path) -> Any:
    repo = tmp_path / "greeter"
    commit = make_repo(repo, pipeline=True)
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'chute.db'}",
                        embedded_agent=False, base_url="http://testserver")
    app = create_app(settings, start_background=False)
    with TestClient(app) as client:
        yield Env(app, client, settings, app.state.chute.admin_token, repo, commit, tmp_path)


def seed_run(env: Env, *, project: str = "greeter", pipeline: str = "publish", branch: str = "main",
             number: str = "", patchset: int = 0, title: str = "Add a greeting", url: str = "",
             has_pipeline: bool = True) -> int:
    with env.state.db.session() as s:
        p = s.scalars(select(Project).where(Project.name == project)).first()
        if p is None:
            p = Project(name=project, repo_url=str(env.repo), default_branch="main", webhook_secret="s3cret-hook",
                        has_pipeline=has_pipeline, settings={"poll": False})
            s.add(p)
            s.flush()
        kind = "patchset" if number else "push"
        # Another branch is another commit (the UI never reads it from git).
        commit = env.commit if branch == "main" else hashlib.sha1(branch.encode()).hexdigest()
        ch = s.scalars(select(Change).where(Change.project_id == p.id, Change.number == number,
                                            Change.patchset == patchset, Change.branch == branch)).first()
        if ch is None:
            ch = Change(project=p, kind=kind, number=number, patchset=patchset, commit=commit,
                        ref=f"refs/changes/{number}/{patchset}" if number else f"refs/heads/{branch}",
                        branch=branch, author="Ada <ada@example.org>", title=title, url=url)
            s.add(ch)
            s.flush()
        run = services.queue_run(s, env.settings, p, ch, pipeline, trigger="manual", actor="tester",
                                 trusted=not number)
        s.flush()
        return run.id


IMAGE = {"stage": "production", "name": "registry.example.org/greeter", "tags": ["2026-11-26-120000-production",
                                                                            "latest"],
         "digest": "sha256:" + "ab" * 32}


def drive(agent: AgentClient, *, outcome: dict[str, str] | None = None, logs: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, images: list[dict[str, Any]] | None = None,
          reason: str = "", graph: dict[str, Any] | None = None) -> dict[str, Any]:
    """Claim the next job and play a whole run through the agent protocol."""
    outcome = outcome or {"test": "success", "production": "success"}
    logs = logs if logs is not None else {"test": "ok 1 - greets\n", "production": "pushed\n"}
    errors = errors or {}
    job = agent.claim(wait=0)
    assert job is not None, "no job to claim"
    jid = job["job_id"]
    names = list(outcome)
    agent.graph(jid, graph or {"stages": names, "edges": [list(p) for p in itertools.pairwise(names)]})
    seq = 0
    for name, status in outcome.items():
        agent.stage(jid, name, "running")
        if name in logs:
            seq += 1
            agent.logs(jid, [{"seq": seq, "stage": name, "text": logs[name]}])
        agent.stage(jid, name, status, error=errors.get(name, ""))
    final = "success" if all(v in ("success", "reused", "skipped") for v in outcome.values()) else "failure"
    agent.complete(jid, {"status": final, "error": reason,
                         "stages": [{"name": n, "status": st, "error": errors.get(n, "")} for n, st in outcome.items()],
                         "images": images if images is not None else ([IMAGE] if final == "success" else []),
                         "duration": 1.5})
    return job


# ------------------------------------------------------------------ pages
def test_empty_dashboard_says_how_to_start(env: Env) -> None:
    r = env.client.get("/")
    assert r.status_code == 200
    assert "No repositories yet" in r.text
    assert 'href="/add-repository"' in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert "script-src 'self';" in r.headers["content-security-policy"]


def test_dashboard_shows_last_status_per_pipeline_and_latest_image(env: Env) -> None:
    agent = env.agent()
    seed_run(env, pipeline="publish")
    drive(agent)
    seed_run(env, pipeline="test")
    drive(agent, outcome={"test": "failure"}, reason="stage test failed")
    seed_run(env, pipeline="publish")  # queued: the newest publish run
    r = env.client.get("/")
    assert r.status_code == 200
    html = r.text
    row = html[html.index('class="project-name"'):html.index("</tr>", html.index('class="project-name"'))]
    # The newest run of each pipeline: publish #3 (queued), test #2 (failed).
    assert re.search(r'href="/runs/3"><span class="badge st-queued">.*?queued</span> <span class="pipeline">publish',
                     row)
    assert re.search(r'href="/runs/2"><span class="badge st-failure">.*?failed</span> <span class="pipeline">test', row)
    assert "/runs/1\"><span" not in row  # superseded by run 3
    assert "registry.example.org/greeter:2026-11-26-120000-production" in row
    assert "1 running or queued" in row
    assert "Running and queued" in html


def test_project_page_filters_by_pipeline_branch_and_status(env: Env) -> None:
    agent = env.agent()
    seed_run(env, pipeline="publish")                       # 1 success, main
    drive(agent)
    seed_run(env, pipeline="test", branch="feature")        # 2 failure, feature
    drive(agent, outcome={"test": "failure"})
    seed_run(env, pipeline="test", branch="main")           # 3 queued, main

    def ids(query: str) -> list[int]:
        r = env.client.get(f"/projects/greeter{query}")
        assert r.status_code == 200
        table = r.text[r.text.index('<table class="runs">'):]
        return [int(x) for x in re.findall(r'<td><a href="/runs/(\d+)">#', table)]

    assert ids("") == [3, 2, 1]
    assert ids("?pipeline=test") == [3, 2]
    assert ids("?branch=feature") == [2]
    assert ids("?status=success") == [1]
    assert ids("?pipeline=test&status=queued&branch=main") == [3]
    page = env.client.get("/projects/greeter?pipeline=test").text
    assert '<option value="test" selected>' in page
    assert '<option value="feature"' in page  # the branch choices come from the project's changes
    assert "No run matches these filters." in env.client.get("/projects/greeter?status=cancelled").text


def test_project_without_pipeline_says_what_to_add(env: Env) -> None:
    seed_run(env, project="bare", has_pipeline=False)
    html = env.client.get("/projects/bare").text
    assert "This repository has no pipeline yet" in html
    assert "<code>chute init</code>" in html
    assert "<code>.pipeline/config.yaml</code>" in html
    assert "no pipeline yet" in env.client.get("/").text


def test_project_with_config_error_shows_it(env: Env) -> None:
    seed_run(env)
    with env.state.db.session() as s:
        p = s.scalars(select(Project)).one()
        p.config_error = ".pipeline/config.yaml:3:5: error: pipelines.publish.stages: must be a list"
    html = env.client.get("/projects/greeter").text
    assert "The pipeline config has errors" in html
    assert ".pipeline/config.yaml:3:5: error: pipelines.publish.stages: must be a list" in html


def test_unknown_pages_are_html_404s(env: Env) -> None:
    r = env.client.get("/runs/999")
    assert r.status_code == 404 and "There is no run 999." in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert env.client.get("/projects/nope").status_code == 404
    page = env.client.get("/no/such/page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "There is no page at /no/such/page." in page.text
    api = env.client.get("/api/v1/nothing", headers={"Accept": "text/html"})  # the API keeps answering JSON
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    assert env.client.get("/api/v1/projects/nope").json()["detail"] == "no project named 'nope'"
    assert env.client.post("/api/v1/projects", json={"repo": "/x"}).status_code == 401


def test_run_page_puts_image_tag_and_rerun_first(env: Env) -> None:
    seed_run(env)
    drive(env.agent(), logs={"test": "collected 3 items\n", "production": "Successfully pushed\n"})
    r = env.client.get("/runs/1")
    assert r.status_code == 200
    html = r.text
    main = html[html.index('<main id="main">'):]
    tag = "registry.example.org/greeter:2026-11-26-120000-production"
    assert tag in main and "registry.example.org/greeter:latest" in main
    assert f"registry.example.org/greeter@sha256:{'ab' * 32}" in main
    assert f'data-copy="{tag}"' in main
    # First things on the page: the status, the image references, then the Rerun button; graph and logs after.
    assert main.index(tag) < main.index(">Rerun<") < main.index('id="run-graph"') < main.index('id="run-logs"')
    assert '<a class="button primary" href="/login?next=/runs/1">Rerun</a>' in main  # anonymous: log in first
    assert "(log in first)" in main
    assert "Rerun failed stages" not in main  # nothing failed
    assert "sse-connect" not in main  # finished: nothing live
    # The stage graph: one box per stage with status and duration, an edge test -> production.
    svg = main[main.index("<svg"):main.index("</svg>")]
    assert svg.count('class="node st-success"') == 2
    assert re.search(r'class="state">✓ passed · \d+\.\ds</text>', svg)
    assert svg.count('class="edge st-success"') == 1
    assert "collected 3 items" in main and "Successfully pushed" in main


def test_run_page_explains_failure_at_the_top(env: Env) -> None:
    seed_run(env)
    drive(env.agent(), outcome={"test": "success", "production": "failure"},
          logs={"test": "fine\n", "production": "step 1\nstep 2\nERROR: npm ci exited 1\n"},
          errors={"production": "command `npm ci` exited with status 1"}, reason="stage production failed")
    html = env.client.get("/runs/1").text
    why = html[html.index('<div class="why"'):html.index('id="run-graph"')]
    assert "Why it failed" in why
    assert "stage production failed" in why
    assert "command `npm ci` exited with status 1" in why
    assert "ERROR: npm ci exited 1" in why  # the failing stage's last log lines
    assert "This run published no images." in html
    assert "Rerun failed stages" in html
    assert 'class="node st-failure"' in html


def test_live_stream_of_a_finished_run_sends_everything_then_end(env: Env) -> None:
    seed_run(env)
    drive(env.agent())
    r = env.client.get("/runs/1/live?after=-1&v=stale")
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e.strip() and not e.startswith(":")]
    assert events[0].startswith("event: update\n")
    first = "\n".join(line[len("data: "):] for line in events[0].splitlines() if line.startswith("data: "))
    for part in ('id="run-head" class="run-head st-border-success" hx-swap-oob="true"',
                 'id="run-graph" class="graph" aria-labelledby="graph-h" hx-swap-oob="true"',
                 'id="run-logs" class="logs" aria-labelledby="logs-h" hx-swap-oob="true"'):
        assert part in first
    assert events[-1] == "event: end\ndata: finished"


def test_live_ticks_append_new_log_lines_and_swap_state(env: Env) -> None:
    from starlette.requests import Request

    from chute.server.ui import live
    from chute.server.ui.render import dom_id

    seed_run(env)
    agent = env.agent()
    job = agent.claim(wait=0)
    jid = job["job_id"]
    agent.graph(jid, {"stages": ["build", "test"], "edges": [["build", "test"]]})
    agent.stage(jid, "build", "running")
    agent.logs(jid, [{"seq": 1, "stage": "build", "text": "step 1\n"}])
    page = env.client.get("/runs/1").text
    m = re.search(r'sse-connect="/runs/1/live\?after=(\d+)&amp;v=([0-9a-f]+)"', page)
    assert m, "a running run's page connects to its live stream"
    client = live.Client(m.group(2), int(m.group(1)))
    request = Request({"type": "http", "app": env.app, "headers": [], "method": "GET", "path": "/runs/1/live",
                       "query_string": b""})

    events, finished, _ = live.tick(request, 1, client, env.app.state.chute_ui.sessions.anonymous())
    assert events == [] and not finished  # the page is current: nothing to resend

    agent.logs(jid, [{"seq": 2, "stage": "build", "text": "step 2 <b>bold</b>\n"}])
    events, _, _ = live.tick(request, 1, client, env.app.state.chute_ui.sessions.anonymous())
    body = events[0].decode()
    assert 'hx-swap-oob="beforeend:#log-' in body
    assert "step 2 &lt;b&gt;bold&lt;/b&gt;" in body
    assert "step 1" not in body  # only what is new
    assert 'id="run-head"' not in body  # the state did not change

    agent.stage(jid, "build", "success")
    agent.stage(jid, "test", "running")
    events, _, _ = live.tick(request, 1, client, env.app.state.chute_ui.sessions.anonymous())
    body = events[0].decode()
    assert 'id="run-graph" class="graph" aria-labelledby="graph-h" hx-swap-oob="true"' in body
    assert 'class="node st-running"' in body and 'class="node st-success"' in body
    assert 'id="logst-log-' in body  # log section badges follow the stage status

    agent.logs(jid, [{"seq": 3, "stage": "test", "text": "testing\n"}])  # the section exists: append
    events, _, _ = live.tick(request, 1, client, env.app.state.chute_ui.sessions.anonymous())
    body = events[0].decode()
    assert f'hx-swap-oob="beforeend:#{dom_id("log", "test")}">testing' in body

    agent.logs(jid, [{"seq": 4, "stage": "", "text": "agent note\n"}])  # a new log section: resend the logs
    events, _, _ = live.tick(request, 1, client, env.app.state.chute_ui.sessions.anonymous())
    body = events[0].decode()
    assert 'id="run-logs" class="logs" aria-labelledby="logs-h" hx-swap-oob="true"' in body
    assert "agent note" in body and "step 1" in body and "testing" in body

    agent.complete(jid, {"status": "success", "stages": [], "images": []})
    events, finished, _ = live.tick(request, 1, client, env.app.state.chute_ui.sessions.anonymous())
    assert finished and "badge st-success" in events[0].decode()


def test_hostile_names_and_log_text_are_escaped(env: Env) -> None:
    evil = '<img src=x onerror="alert(1)">'
    seed_run(env, project="evil<img src=x onerror=alert(1)>", title=f"title {evil}", url="javascript:alert(1)",
             pipeline=f"pipe{evil}")
    agent = env.agent()
    drive(agent, outcome={f"stage{evil}": "failure"},
          logs={f"stage{evil}": ("\x1b[31mred <script>alert('log')</script>\x1b[0m plain"
                                 "\x1b]0;title\x07 \x1b[2Kdone\r\n")},
          errors={f"stage{evil}": f"error {evil}"}, reason=f"reason {evil}")
    for path in ("/", "/runs/1", "/projects/evil%3Cimg%20src=x%20onerror=alert(1)%3E"):
        r = env.client.get(path)
        assert r.status_code == 200, path
        assert "<script>alert" not in r.text, path
        assert "<img src=x" not in r.text, path
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in r.text or "&lt;script&gt;" in r.text, path
    html = env.client.get("/runs/1").text
    assert '<span class="ansi-fg-red">red &lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;</span> plain done' in html
    assert "\x1b" not in html and "]0;title" not in html
    assert "javascript:" not in html  # the change's URL is not a link unless it is http(s)
    r = env.client.get("/runs/1/log.txt")
    assert r.headers["content-type"].startswith("text/plain")
    assert "red <script>alert('log')</script> plain done" in r.text and "\x1b" not in r.text


def test_change_page_lists_every_run_of_every_patchset(env: Env) -> None:
    agent = env.agent()
    seed_run(env, pipeline="test", number="4711", patchset=1, title="Greet in French")
    drive(agent, outcome={"test": "failure"})
    seed_run(env, pipeline="test", number="4711", patchset=2, title="Greet in French")
    drive(agent, outcome={"test": "success"})
    seed_run(env, pipeline="test", number="4711", patchset=2)
    seed_run(env, pipeline="test", number="9999")  # another change: not listed
    html = env.client.get("/projects/greeter/changes/4711").text
    assert "Change 4711" in html and "Greet in French" in html
    assert html.index("patchset 2") < html.index("patchset 1")
    for run_id in (1, 2, 3):
        assert f'href="/runs/{run_id}"' in html
    assert 'href="/runs/4"' not in html
    by_commit = env.client.get(f"/projects/greeter/changes/{env.commit[:10]}").text
    assert 'href="/runs/4"' in by_commit
    assert env.client.get("/projects/greeter/changes/1234").status_code == 404
    assert 'href="/projects/greeter/changes/4711"' in env.client.get("/runs/1").text


# ------------------------------------------------------------------ login and actions
def test_login_sets_a_safe_cookie_and_records_it(env: Env) -> None:
    page = env.client.get("/login?next=/runs/1")
    assert page.status_code == 200
    first = page.cookies.get("chute_session") or env.client.cookies.get("chute_session")
    assert first, "the login form's CSRF token is bound to a session cookie"
    r = env.client.post("/login", data={"csrf": csrf_of(page.text), "token": env.token, "method": "token",
                                        "next": "/runs/1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs/1"
    cookie = r.headers["set-cookie"]
    assert "chute_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert env.token not in cookie  # the token itself never goes into the cookie
    assert env.client.cookies.get("chute_session") != first  # a new session id after login
    assert "Logged in as <strong>admin</strong>" in env.client.get("/").text
    with env.state.db.session() as s:
        ev = s.scalars(select(Event).where(Event.kind == "user.login")).one()
        assert ev.actor == "admin" and ev.data["method"] == "token"


def test_login_rejects_bad_token_missing_csrf_and_foreign_next(env: Env) -> None:
    page = env.client.get("/login")
    token = csrf_of(page.text)
    bad = env.client.post("/login", data={"csrf": token, "token": "chute_dead_beef", "next": "/"})
    assert bad.status_code == 401 and "That token is not valid" in bad.text
    assert "Logged in as" not in bad.text
    no_csrf = env.client.post("/login", data={"token": env.token, "next": "/"})
    assert no_csrf.status_code == 403 and "Logged in as" not in env.client.get("/").text
    r = env.client.post("/login", data={"csrf": token, "token": env.token, "next": "//evil.example/x"},
                        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_actions_need_login_and_csrf(env: Env) -> None:
    seed_run(env)
    drive(env.agent())

    def runs() -> int:
        with env.state.db.session() as s:
            return len(s.scalars(select(Run)).all())

    anon = env.client.post("/runs/1/rerun", data={"csrf": "x"})
    assert anon.status_code == 403 and "Log in first" in anon.text
    seed_run(env)  # queued: something to cancel
    assert env.client.post("/runs/2/cancel", data={"csrf": "x"}).status_code == 403
    env.login()
    assert env.client.post("/runs/2/cancel", data={}).status_code == 403
    assert env.client.post("/logout", data={}).status_code == 403
    assert "Logged in as" in env.client.get("/").text
    assert env.client.post("/runs/1/rerun", data={}).status_code == 403
    assert env.client.post("/runs/1/rerun", data={"csrf": "0" * 64}).status_code == 403
    assert env.client.post("/add-repository", data={"repo": str(env.repo)}).status_code == 403
    assert runs() == 2
    # A CSRF token from another session (another browser) does not work either.
    other = TestClient(env.app)
    other_csrf = csrf_of(other.get("/login").text)
    assert env.client.post("/runs/1/rerun", data={"csrf": other_csrf}).status_code == 403
    assert runs() == 2
    with env.state.db.session() as s:
        assert s.get(Run, 2).status == "queued"  # not cancelled
        assert s.scalars(select(Project)).one().name == "greeter"


def test_rerun_form_creates_a_run_and_redirects_to_it(env: Env) -> None:
    seed_run(env)
    drive(env.agent())
    env.login()
    page = env.client.get("/runs/1").text
    assert 'action="/runs/1/rerun"' in page and "Log in first" not in page
    r = env.client.post("/runs/1/rerun", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs/2"
    with env.state.db.session() as s:
        new = s.get(Run, 2)
        assert new.rerun_of == 1 and new.status == "queued" and new.actor == "admin" and new.trigger == "rerun"
    new_page = env.client.get("/runs/2").text
    assert "sse-connect=\"/runs/2/live" in new_page  # the new run's page is live
    assert "The stage graph appears when an agent starts the run." in new_page
    assert 'action="/runs/2/cancel"' in new_page
    assert 'href="/runs/2"' in env.client.get("/runs/1").text  # the old run lists its rerun


def test_rerun_failed_stages_reuses_what_passed(env: Env) -> None:
    seed_run(env)
    drive(env.agent(), outcome={"test": "success", "production": "failure"})
    env.login()
    with env.state.db.session() as s:
        s.scalars(select(Run)).one()
    page = env.client.get("/runs/1").text
    r = env.client.post("/runs/1/rerun", data={"csrf": csrf_of(page), "failed_only": "1"}, follow_redirects=False)
    assert r.status_code == 303
    with env.state.db.session() as s:
        new = s.get(Run, 2)
        job = s.scalars(select(Job).where(Job.run_id == 2)).one()
        assert new.reuse_from == 1
        assert sorted(job.payload["reuse"]) == ["test"]
        assert job.payload["reuse"]["test"]["run"] == 1


def test_rerun_of_a_running_run_explains_why_not(env: Env) -> None:
    seed_run(env)
    env.login()
    r = env.client.post("/runs/1/rerun", data={"csrf": env.csrf("/runs/1")})
    assert r.status_code == 409
    assert "run 1 is still queued" in r.text and "cancel it first" in r.text


def test_cancel_form_cancels_a_queued_run(env: Env) -> None:
    seed_run(env)
    env.login()
    r = env.client.post("/runs/1/cancel", data={"csrf": env.csrf("/runs/1")}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs/1"
    with env.state.db.session() as s:
        run = s.get(Run, 1)
        assert run.status == "cancelled" and "cancelled by admin" in run.reason
    html = env.client.get("/runs/1").text
    assert "Why it was cancelled" in html and "cancelled by admin before it started" in html
    again = env.client.post("/runs/1/cancel", data={"csrf": env.csrf("/runs/1")})
    assert again.status_code == 409 and "already finished" in again.text


def test_revoking_the_token_ends_the_session(env: Env) -> None:
    seed_run(env)
    drive(env.agent())
    env.login()
    csrf = env.csrf("/runs/1")
    with env.state.db.session() as s:
        for tok in s.scalars(select(Token)):
            tok.revoked_at = utcnow()
    assert "Logged in as" not in env.client.get("/").text
    assert env.client.post("/runs/1/rerun", data={"csrf": csrf}).status_code == 403


def test_logout(env: Env) -> None:
    env.login()
    r = env.client.post("/logout", data={"csrf": env.csrf()}, follow_redirects=False)
    assert r.status_code == 303
    assert "Logged in as" not in env.client.get("/").text


# ------------------------------------------------------------------ add repository
def test_add_repository_page_registers_and_shows_the_webhook(env: Env) -> None:
    bare = env.tmp / "bare-service"
    make_repo(bare, pipeline=False)
    form = env.client.get("/add-repository").text
    assert "<fieldset disabled>" in form and "log in</a> first" in form
    env.login()
    form = env.client.get("/add-repository").text
    assert "<fieldset>" in form
    r = env.client.post("/add-repository", data={"csrf": csrf_of(form), "repo": str(bare), "name": "",
                                                  "review_kind": "gitlab"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/projects/bare-service/setup?new=1"
    setup = env.client.get(r.headers["location"]).text
    with env.state.db.session() as s:
        p = s.scalars(select(Project).where(Project.name == "bare-service")).one()
        secret, kind, has_pipeline = p.webhook_secret, p.review_kind, p.has_pipeline
        ev = s.scalars(select(Event).where(Event.kind == "project.added")).one()
    assert kind == "gitlab" and not has_pipeline and ev.actor == "admin"
    assert "Repository added as" in setup
    assert "http://testserver/webhooks/gitlab?project=bare-service" in setup
    assert secret in setup and f'data-copy="{secret}"' in setup
    assert "GitLab &gt; Settings &gt; Webhooks" in setup
    assert "chute init" in setup
    assert "<code>chute init</code>" in env.client.get("/projects/bare-service").text
    # The secret is only shown to logged-in users.
    anon = TestClient(env.app).get("/projects/bare-service/setup", follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"].startswith("/login?next=/projects/bare-service/setup")


def test_add_repository_errors_keep_the_form(env: Env) -> None:
    bare = env.tmp / "svc"
    make_repo(bare, pipeline=False)
    env.login()
    csrf = env.csrf("/add-repository")
    missing = env.client.post("/add-repository", data={"csrf": csrf, "repo": str(env.tmp / "nothing-here")})
    assert missing.status_code == 400 and "is not a git repository" in missing.text
    assert f'value="{env.tmp / "nothing-here"}"' in missing.text  # what was typed stays in the form
    bad_name = env.client.post("/add-repository", data={"csrf": csrf, "repo": str(bare), "name": "a/b"})
    assert bad_name.status_code == 400 and "cannot be used" in bad_name.text
    ok = env.client.post("/add-repository", data={"csrf": csrf, "repo": str(bare), "name": "svc"},
                         follow_redirects=False)
    assert ok.status_code == 303
    dup = env.client.post("/add-repository", data={"csrf": csrf, "repo": str(bare), "name": "svc"})
    assert dup.status_code == 409 and "already exists" in dup.text
    with env.state.db.session() as s:
        assert len(s.scalars(select(Project)).all()) == 1


def test_static_files_and_log_text(env: Env) -> None:
    js = env.client.get("/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:2000]
    assert env.client.get("/static/htmx-ext-sse.min.js").status_code == 200
    seed_run(env)
    drive(env.agent(), logs={"test": "one\n", "production": "two\n"})
    text = env.client.get("/runs/1/log.txt").text
    assert text.index("===== test =====") < text.index("one") < text.index("===== production =====")
    assert env.client.get("/runs/1/log.txt?stage=production").text == "two\n"
    with env.state.db.session() as s:
        assert len(s.scalars(select(LogChunk)).all()) == 2
