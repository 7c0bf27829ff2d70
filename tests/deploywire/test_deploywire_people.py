"""Deploy and roll back by hand: the CLI bodies and the web UI against a live server, with real podman.

Every mutating call needs the bearer token (or a logged-in session with its CSRF token) and is
written to the ledger with who asked, why, and the command.
"""

from __future__ import annotations

import io
import json
import re

import httpx
import pytest

from chute.client import Client, ClientError
from chute.deploy.cli import deploy_command, environments_command, history_command, rollback_command

from .conftest import body, config_yaml, env_yaml, make_repo, next_port, wait_for

pytestmark = [pytest.mark.podman, pytest.mark.slow]

API_ADMIN = "admin (token bootstrap)"  # the ledger's actor for calls with the admin token


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_people_deploy_roll_back_and_read_the_history(live, images, tmp_path):
    port = next_port()
    repo = tmp_path / "greeter"
    make_repo(repo, config_yaml(env_yaml("staging", port)))  # deployed by hand only
    live.add_project(repo)
    api = f"{live.url}/api/v1/projects/greeter/environments/staging"

    # No token: refused, nothing queued, nothing in the ledger.
    r = httpx.post(f"{api}/deploy", json={"image": images["v1"]})
    assert r.status_code == 401
    r = httpx.post(f"{api}/deploy", json={"image": images["v1"]}, headers={"Authorization": "Bearer chute_x_y"})
    assert r.status_code == 401
    assert live.events("deploy.queued") == []
    r = live.http.post("/api/v1/projects/greeter/environments/prod/deploy", json={"image": images["v1"]})
    assert r.status_code == 404 and "known: staging" in r.json()["detail"]
    r = live.http.post(f"{api}/deploy", json={"image": images["v1"], "run": 1})
    assert r.status_code == 400 and "exactly one" in r.json()["detail"]

    client = Client(live.url, live.token)
    out = io.StringIO()
    argv = ["deploy", "staging", "--project", "greeter", "--image", images["v1"], "--reason", "first release"]
    assert deploy_command(client, "greeter", "staging", image=images["v1"], reason="first release", argv=argv,
                          out=out) == 0, out.getvalue()
    assert "revision 1 of staging: healthy" in out.getvalue()
    assert body(port) == "v1"
    out = io.StringIO()
    assert deploy_command(client, "greeter", "staging", image=images["v2"], reason="second release",
                          out=out) == 0, out.getvalue()
    assert body(port) == "v2"

    out = io.StringIO()
    assert rollback_command(client, "greeter", "staging", reason="v2 is slow",
                            argv=["rollback", "staging", "--project", "greeter", "--reason", "v2 is slow"],
                            out=out) == 0, out.getvalue()
    assert "revision 3 of staging: healthy" in out.getvalue()
    assert body(port) == "v1"

    out = io.StringIO()
    assert history_command(client, "greeter", "staging", as_json=True, out=out) == 0
    rows = json.loads(out.getvalue())
    assert [(d["revision"], d["kind"], d["status"]) for d in rows] == [
        (3, "rollback", "healthy"), (2, "deploy", "rolled-back"), (1, "deploy", "superseded")]
    assert rows[0]["actor"] == API_ADMIN and rows[0]["reason"] == "v2 is slow" and rows[0]["rollback_of"] == 2
    assert rows[1]["time_to_restore"] > 0 and rows[2]["reason"] == "first release"
    assert rows[0]["image_digest"] == rows[2]["image_digest"] != rows[1]["image_digest"]
    out = io.StringIO()
    history_command(client, "greeter", "staging", out=out)
    text = out.getvalue()
    assert re.search(r"^\s+3  rollback\s+healthy", text, re.M) and "rolled-back" in text
    assert "time to restore" in text and "v2 is slow" in text

    # The ledger has who, why and the command for each request and the rollback's own events.
    queued = live.events("deploy.queued")
    assert [(e.actor, e.data["kind"], e.data["reason"]) for e in queued] == [
        (API_ADMIN, "deploy", "first release"), (API_ADMIN, "deploy", "second release"),
        (API_ADMIN, "rollback", "v2 is slow")]
    assert queued[0].command.startswith("chute deploy staging --project greeter --image")
    assert queued[0].command.endswith("(POST /api/v1/projects/greeter/environments/staging/deploy)")
    assert queued[1].command == "POST /api/v1/projects/greeter/environments/staging/deploy"
    rb = live.events("rollback.started", "rollback.finished")
    assert [(e.kind, e.outcome, e.revision, e.actor) for e in rb] == [
        ("rollback.started", "", 3, API_ADMIN), ("rollback.finished", "restored", 3, API_ADMIN)]
    assert rb[0].data["from_revision"] == 2 and rb[0].data["to_revision"] == 1 and not rb[0].data["automatic"]
    assert rb[1].data["time_to_restore"] > 0 and rb[0].command.startswith("chute rollback staging")
    started = live.events("deploy.started", environment="staging")
    assert [e.data["kind"] for e in started] == ["deploy", "deploy", "rollback"]

    # The environments listing (API and CLI body).
    out = io.StringIO()
    assert environments_command(client, "greeter", out=out) == 0
    assert "staging: revision 3" in out.getvalue()

    # The web UI: the environment page, and its Rollback form (login + CSRF).
    web = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    page = web.get("/projects/greeter/environments/staging")
    assert page.status_code == 200
    html = page.text
    assert "revision <strong>3</strong>" in html and 'id="revision-2"' in html
    assert "rolled back" in html and "time to restore" in html and "v2 is slow" in html
    assert 'class="button danger" href="/login?next=' in html  # logged out: the button asks to log in
    r = web.post("/projects/greeter/environments/staging/rollback", data={"csrf": "x", "reason": "r"})
    assert r.status_code == 403  # not logged in
    login = web.get("/login")
    r = web.post("/login", data={"csrf": csrf_of(login.text), "token": live.token, "method": "token", "next": "/"})
    assert r.status_code == 303
    page = web.get("/projects/greeter/environments/staging")
    assert 'action="/projects/greeter/environments/staging/rollback"' in page.text
    r = web.post("/projects/greeter/environments/staging/rollback",
                 data={"csrf": "0" * 64, "reason": "from the UI", "to_revision": "2"})
    assert r.status_code == 403  # a forged form
    r = web.post("/projects/greeter/environments/staging/rollback",
                 data={"csrf": csrf_of(page.text), "reason": "v2 after all", "to_revision": "2"})
    assert r.status_code == 303 and r.headers["location"] == "/projects/greeter/environments/staging"
    hist = wait_for("revision 4", lambda: (h := live.history("staging"))[0]["revision"] == 4
                    and h[0]["status"] in ("healthy", "failed") and h, timeout=60)
    assert hist[0]["status"] == "healthy" and hist[0]["kind"] == "rollback" and hist[0]["reason"] == "v2 after all"
    assert body(port) == "v2"
    ui_queued = live.events("deploy.queued")[-1]
    assert ui_queued.actor == "admin" and ui_queued.command.endswith("(web UI)")

    # A release that crashes fails, leaves v2 serving, and the CLI says so with exit code 1.
    out = io.StringIO()
    assert deploy_command(client, "greeter", "staging", image=images["crash"], reason="oops", out=out) == 1
    assert "revision 5 of staging: failed" in out.getvalue()
    assert body(port) == "v2"
    # A run that does not exist: a clear error from the server.
    with pytest.raises(ClientError, match="no run 999"):
        deploy_command(client, "greeter", "staging", run=999, out=io.StringIO())
