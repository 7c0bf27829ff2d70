"""The same permissions through the UI's forms: password login, CSRF, 403 pages, disabled buttons,
the roles, account and users pages, and sessions that end (logout, idle, age, revoked proof)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chute.server import access
from chute.store import Event, LoginSession, Run

from .conftest import IMAGE, World, build_world, password_of


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def browser(w: World, address: str = "testclient") -> TestClient:
    """Another browser (its own cookies) from ``address``."""
    return TestClient(w.app, client=(address, 50000))


def ui_login(c: TestClient, user: str, password: str | None = None, next_path: str = "/") -> object:
    page = c.get("/login")
    return c.post("/login", data={"csrf": csrf_of(page.text), "method": "password", "user": user,
                                  "password": password or password_of(user), "next": next_path},
                  follow_redirects=False)


def test_password_login_records_success_and_failure_never_the_password(world: World) -> None:
    c = browser(world)
    r = ui_login(c, "dev", next_path="/projects/svc")
    assert r.status_code == 303 and r.headers["location"] == "/projects/svc"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and password_of("dev") not in cookie
    assert "Logged in as <strong>dev</strong>" in c.get("/").text

    bad = browser(world)
    r = ui_login(bad, "dev", "not-the-password")
    assert r.status_code == 401 and "wrong user name or password" in r.text and "Logged in as" not in r.text
    r = ui_login(bad, "not-a-user", "s3cret-typed-in-the-wrong-box")
    assert r.status_code == 401
    with world.state.db.session() as s:
        logins = list(s.scalars(select(Event).where(Event.kind == "user.login").order_by(Event.id)))
        ui = [(e.actor, e.outcome, e.data["method"], e.data["via"]) for e in logins if e.data["via"] == "ui"]
        assert ui == [("dev", "success", "password", "ui"), ("dev", "failed", "password", "ui"),
                      ("", "failed", "password", "ui")]
        assert logins[-1].data["user_known"] is False
        everything = " ".join(f"{e.actor} {e.data}" for e in s.scalars(select(Event)))
        assert "not-the-password" not in everything and "s3cret-typed" not in everything
        assert "not-a-user" not in everything  # what was typed as a name is not kept either
        assert password_of("dev") not in everything
        (row,) = s.scalars(select(LoginSession).where(LoginSession.user == "dev"))
        assert row.method == "password" and row.ended_at is None


def test_failed_logins_are_slowed_down_per_user_and_address(sqlite_world: World) -> None:
    world = sqlite_world
    # The server's own throttle, with a first wait long enough for a busy test machine
    # (test_passwords.py checks the doubling with a clock of its own).
    world.state.login_throttle = access.LoginThrottle(first_delay=60)
    c = browser(world, "10.0.0.7")
    for _ in range(5):
        assert ui_login(c, "pat", "wrong-password-1").status_code == 401
    r = ui_login(c, "pat")  # the right password, but too soon
    assert r.status_code == 429 and "too many failed logins for &#39;pat&#39; from 10.0.0.7" in r.text
    assert 50 <= int(r.headers["retry-after"]) <= 61
    assert "Logged in as" not in c.get("/").text
    # Another address is not held back, nor another user from this one.
    assert ui_login(browser(world, "10.0.0.8"), "pat").status_code == 303
    assert ui_login(browser(world, "10.0.0.7"), "dev").status_code == 303
    # The API counts with the same throttle: pat from the API's address is still free, and
    # five failures there hold the API back too.
    for _ in range(5):
        assert world.login("pat", "wrong-password-2").status_code == 401
    r = world.login("pat")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 50


def test_csrf_is_required_for_login_and_every_action(sqlite_world: World) -> None:
    world = sqlite_world
    c = browser(world)
    page = c.get("/login")
    assert c.post("/login", data={"method": "password", "user": "dev", "password": password_of("dev")}
                  ).status_code == 403
    assert ui_login(c, "dev").status_code == 303
    run = world.finished_run()
    before = world.last_event_id()
    assert c.post(f"/runs/{run}/rerun", data={"csrf": csrf_of(page.text)}).status_code == 403  # pre-login token
    other = browser(world)
    assert c.post(f"/runs/{run}/rerun", data={"csrf": csrf_of(other.get("/login").text)}).status_code == 403
    assert world.events_after(before) == []
    r = c.post(f"/runs/{run}/rerun", data={"csrf": csrf_of(c.get(f"/runs/{run}").text)}, follow_redirects=False)
    assert r.status_code == 303
    (ev,) = world.events_after(before, "run.rerun")
    assert ev.actor == "dev"  # through the UI the actor is the user


def test_roles_are_enforced_on_the_forms_and_shown_on_the_pages(world: World) -> None:
    run = world.finished_run()
    vic = browser(world)
    ui_login(vic, "vic")
    page = vic.get(f"/runs/{run}").text
    assert '<button type="button" class="primary" disabled title="needs the developer role">Rerun</button>' in page
    before = world.last_event_id()
    r = vic.post(f"/runs/{run}/rerun", data={"csrf": csrf_of(page)})
    assert r.status_code == 403 and "Not allowed" in r.text
    assert "vic needs the developer role on project svc to rerun runs (has: viewer)" in r.text
    assert "chute role grant vic developer --project svc" in r.text
    with world.state.db.session() as s:
        assert s.scalars(select(Run).where(Run.rerun_of == run)).first() is None
    assert world.events_after(before) == []

    dev = browser(world)
    ui_login(dev, "dev")
    page = dev.get(f"/runs/{run}").text
    assert f'action="/runs/{run}/rerun"' in page and "disabled" not in page.split('class="actions"')[1][:400]

    # dora: deployer on staging only. Rollback needs an earlier healthy revision, so check the freeze override
    # of a queued request, and a rollback post for production.
    req = world.deploy_request("staging")
    prod = world.deploy_request("production")
    with world.state.db.session() as s:  # hold both behind a freeze, as the deploy worker would
        from chute.store import DeployRequest, utcnow

        for rid in (req, prod):
            s.get(DeployRequest, rid).status = "held"
            s.get(DeployRequest, rid).not_before = utcnow().replace(year=utcnow().year + 1)
    dora = browser(world)
    ui_login(dora, "dora")
    staging = dora.get("/projects/svc/environments/staging").text
    production = dora.get("/projects/svc/environments/production").text
    assert f'/requests/{req}/override"' in staging
    assert f'/requests/{prod}/override"' not in production
    assert "(needs the deployer role on production)" in production
    r = dora.post("/projects/svc/environments/production/rollback",
                  data={"csrf": csrf_of(production), "reason": "bad release"})
    assert r.status_code == 403
    assert "dora is deployer on svc only for staging" in r.text
    r = dora.post(f"/projects/svc/environments/staging/requests/{req}/override",
                  data={"csrf": csrf_of(staging), "reason": "hotfix"}, follow_redirects=False)
    assert r.status_code == 303
    assert world.admin("GET", f"/api/v1/deploy-requests/{req}")["actor"] == "dora"


def test_project_admins_grant_and_revoke_on_the_roles_page(world: World) -> None:
    vic = browser(world)
    ui_login(vic, "vic")
    page = vic.get("/projects/svc/access").text
    assert "<fieldset disabled>" in page and "(needs the admin role)" in page
    r = vic.post("/projects/svc/access/grant", data={"csrf": csrf_of(page), "user": "vic", "role": "admin"})
    assert r.status_code == 403 and "vic needs the admin role on project svc" in r.text

    pat = browser(world)
    ui_login(pat, "pat")
    page = pat.get("/projects/svc/access").text
    assert 'value="staging"' in page and 'value="production"' in page  # environments to tick
    r = pat.post("/projects/svc/access/grant", data={"csrf": csrf_of(page), "user": "dev", "role": "deployer",
                                                     "environments": ["staging"]}, follow_redirects=False)
    assert r.status_code == 303
    assert world.call("POST", "/api/v1/projects/svc/environments/staging/deploy", "dev",
                      {"image": IMAGE}).status_code == 202
    page = pat.get("/projects/svc/access").text
    r = pat.post("/projects/svc/access/revoke", data={"csrf": csrf_of(page), "user": "dev", "role": "deployer"},
                 follow_redirects=False)
    assert r.status_code == 303
    assert world.call("POST", "/api/v1/projects/svc/environments/staging/deploy", "dev",
                      {"image": IMAGE}).status_code == 403
    ev = world.events_after(0, "role.granted", "role.revoked")[-2:]
    assert [(e.kind, e.actor, e.data["user"], e.data["role"]) for e in ev] == [
        ("role.granted", "pat", "dev", "deployer"), ("role.revoked", "pat", "dev", "deployer")]
    r = pat.post("/projects/svc/access/grant", data={"csrf": csrf_of(page), "user": "nobody", "role": "viewer"})
    assert r.status_code == 404 and "there is no user &#39;nobody&#39;" in r.text


def test_tokens_page_shows_a_new_token_once(world: World) -> None:
    c = browser(world)
    ui_login(c, "dev")
    page = c.get("/account").text
    r = c.post("/account/tokens", data={"csrf": csrf_of(page), "name": "laptop", "scopes": ["read", "run"],
                                        "expires": "30d"})
    assert r.status_code == 201
    token = re.search(r'<code id="new-token">(chute_[^<]+)</code>', r.text).group(1)
    assert token not in c.get("/account").text  # never again
    assert "chute_" + token.split("_")[1] + "_…" in c.get("/account").text
    api = world.client.post("/api/v1/projects/svc/trigger", json={"pipelines": ["test"]},
                            headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 201 and api.json()[0]["actor"] == "dev (token laptop)"
    tid = world.call("GET", "/api/v1/tokens", "dev").json()[-1]["id"]
    page = c.get("/account").text
    assert c.post(f"/account/tokens/{tid}/revoke", data={"csrf": csrf_of(page)}, follow_redirects=False
                  ).status_code == 303
    assert world.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    r = c.post("/account/tokens", data={"csrf": csrf_of(page), "name": "robot", "scopes": ["agent"]})
    assert r.status_code == 400 and "agent scope works only in a server admin" in r.text


def test_logout_and_a_new_password_end_sessions_on_the_server(world: World) -> None:
    c = browser(world)
    ui_login(c, "dev")
    stolen = c.cookies.get("chute_session")
    page = c.get("/").text
    assert c.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False).status_code == 303
    thief = browser(world)
    thief.cookies.set("chute_session", stolen)
    assert "Logged in as" not in thief.get("/").text  # the cookie alone is worth nothing after logout
    (ev,) = world.events_after(0, "user.logout")
    assert ev.actor == "dev"

    one, two = browser(world), browser(world)
    ui_login(one, "pat")
    ui_login(two, "pat")
    page = one.get("/account").text
    r = one.post("/account/password", data={"csrf": csrf_of(page), "current_password": password_of("pat"),
                                            "new_password": "a brand new passphrase",
                                            "repeat_password": "a brand new passphrase"}, follow_redirects=False)
    assert r.status_code == 303
    assert "Logged in as" not in two.get("/").text
    assert world.login("pat").status_code == 401
    assert world.login("pat", "a brand new passphrase").status_code == 201


@pytest.fixture
def short_sessions(db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from build_world(db_url, tmp_path, session_idle=2.0, session_max_age=4.0)


def test_sessions_expire_when_idle_and_when_old(short_sessions: World) -> None:
    w = short_sessions
    idle = browser(w)
    ui_login(idle, "dev")
    assert "Logged in as" in idle.get("/").text
    time.sleep(2.5)
    page = idle.get("/login")
    assert "Logged in as" not in page.text and "Your session ended (it was idle too long)" in page.text

    # Activity does not keep a session beyond its maximum age (idle time raised so only age counts).
    w.app.state.chute_ui.sessions.idle = timedelta(seconds=60)
    busy = browser(w)
    ui_login(busy, "dev")
    started = time.monotonic()
    assert "Logged in as" in busy.get("/").text
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
    assert "Logged in as" in busy.get("/").text
    cookie = busy.cookies.get("chute_session")
    time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
    assert "Logged in as" not in busy.get("/").text  # the browser dropped the cookie (its max-age is the same)
    busy.cookies.set("chute_session", cookie)  # and a replayed cookie does not work either
    assert "Logged in as" not in busy.get("/").text
    with w.state.db.session() as s:
        reasons = sorted(r.end_reason for r in s.scalars(select(LoginSession)))
    assert reasons == ["expired", "idle"]


def test_revoking_the_token_of_a_token_login_ends_the_session(sqlite_world: World) -> None:
    world = sqlite_world
    c = browser(world)
    page = c.get("/login")
    r = c.post("/login", data={"csrf": csrf_of(page.text), "method": "token", "token": world.tokens["dev"]},
               follow_redirects=False)
    assert r.status_code == 303 and "Logged in as <strong>dev</strong>" in c.get("/").text
    world.call("POST", "/api/v1/logout", "dev")
    assert "Logged in as" not in c.get("/").text


def test_users_page_is_for_server_admins(world: World) -> None:
    pat = browser(world)
    ui_login(pat, "pat")
    assert "Users</a>" not in pat.get("/").text
    r = pat.get("/users")
    assert r.status_code == 403 and "pat may not manage users: only server admins may" in r.text
    sam = browser(world)
    ui_login(sam, "sam")
    page = sam.get("/users").text
    r = sam.post("/users", data={"csrf": csrf_of(page), "name": "Newbie", "password": "long enough pw"})
    assert r.status_code == 201 and "User newbie created." in r.text
    r = sam.post("/users/newbie", data={"csrf": csrf_of(page), "action": "disable"}, follow_redirects=False)
    assert r.status_code == 303
    assert world.login("newbie", "long enough pw").status_code == 401
    ev = world.events_after(0, "user.created", "user.updated")[-2:]
    assert [(e.kind, e.actor, e.data["user"]) for e in ev] == [("user.created", "sam", "newbie"),
                                                              ("user.updated", "sam", "newbie")]


@pytest.fixture
def private(db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from build_world(db_url, tmp_path, anonymous_read=False)


def test_without_anonymous_read_pages_and_api_need_a_role(private: World) -> None:
    w = private
    run = w.queued_run()
    anon = browser(w)
    for path in ("/", "/projects/svc", f"/runs/{run}", f"/runs/{run}/log.txt", "/projects/svc/environments/staging"):
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    for path in ("/api/v1/projects", f"/api/v1/runs/{run}", "/api/v1/runs", "/api/v1/projects/svc/environments",
                 "/api/v1/runs/999999"):
        assert w.client.get(path).status_code == 401, path
    olga = browser(w)
    ui_login(olga, "olga")
    assert "svc" not in olga.get("/").text.split("<main", 1)[1]
    r = olga.get(f"/runs/{run}")
    assert r.status_code == 403 and "olga needs the viewer role on project svc" in r.text
    assert "(pat" not in r.text  # people who may not see the project are not told who runs it
    assert w.call("GET", "/api/v1/projects", "olga").json() == []
    assert w.call("GET", "/api/v1/runs", "olga").json() == []
    vic = browser(w)
    ui_login(vic, "vic")
    assert 'href="/projects/svc"' in vic.get("/").text
    assert vic.get(f"/runs/{run}").status_code == 200
    assert [p["name"] for p in w.call("GET", "/api/v1/projects", "vic").json()] == ["svc"]
    assert w.call("GET", f"/api/v1/runs/{run}/logs", "vic").status_code == 200
