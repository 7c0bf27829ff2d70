"""Single sign-on (OpenID Connect) against a fake provider that checks the protocol's request shapes:
the authorize redirect, the token endpoint POST (client_secret_basic, PKCE) and the ID token checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chute.store import Event, User

from .conftest import World, build_world
from .fake_idp import FakeIdP


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    p = FakeIdP(redirect_uri="http://testserver/login/oidc/callback")
    yield p
    p.close()


def sso_world(idp: FakeIdP, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("CHUTE_OIDC_ISSUER", idp.issuer)
    monkeypatch.setenv("CHUTE_OIDC_CLIENT_ID", idp.client_id)
    monkeypatch.setenv("CHUTE_OIDC_CLIENT_SECRET", idp.client_secret)
    monkeypatch.setenv("CHUTE_OIDC_TITLE", "Example SSO")
    yield from build_world(url, tmp_path)


@pytest.fixture
def sso(idp: FakeIdP, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Users made by single sign-on are stored: SQLite and PostgreSQL."""
    yield from sso_world(idp, db_url, tmp_path, monkeypatch)


@pytest.fixture
def sso_sqlite(idp: FakeIdP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """For the protocol's refusals (nothing stored): SQLite only."""
    yield from sso_world(idp, f"sqlite:///{tmp_path / 'chute.db'}", tmp_path, monkeypatch)


def sign_on(w: World, browser: TestClient, next_path: str = "/") -> httpx.Response:
    """The browser's part: chute → provider (which logs in ``next_user``) → chute's callback."""
    start = browser.get(f"/login/oidc/start?next={next_path}", follow_redirects=False)
    assert start.status_code == 303, start.text
    to_idp = start.headers["location"]
    back = httpx.get(to_idp, follow_redirects=False)  # the provider is a real server
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith("http://testserver/login/oidc/callback?")
    return browser.get(callback.removeprefix("http://testserver"), follow_redirects=False)


def test_sign_on_creates_the_user_once_and_logs_in(sso: World, idp: FakeIdP) -> None:
    w = sso
    b = TestClient(w.app)
    assert "Log in with Example SSO" in b.get("/login").text
    r = sign_on(w, b, "/projects/svc")
    assert r.status_code == 303 and r.headers["location"] == "/projects/svc", r.text
    assert "Logged in as <strong>erin</strong>" in b.get("/").text
    assert idp.errors == []
    assert [p for _, p in idp.requests] == ["/.well-known/openid-configuration", "/authorize", "/token", "/jwks"]
    start = TestClient(w.app).get("/login/oidc/start", follow_redirects=False).headers["location"]
    q = {k: v[0] for k, v in parse_qs(urlparse(start).query).items()}
    assert q["scope"] == "openid profile email" and q["code_challenge_method"] == "S256"
    with w.state.db.session() as s:
        u = s.scalars(select(User).where(User.name == "erin")).one()
        assert (u.source, u.external_id, u.email, u.display_name, u.password_hash) == (
            "oidc:oidc", "u-1001", "erin@example.org", "Erin", None)
        kinds = [(e.kind, e.actor, e.data.get("method")) for e in s.scalars(
            select(Event).where(Event.kind.in_(["user.created", "user.login"])).order_by(Event.id))
            if e.data.get("user") == "erin" or e.actor == "erin"]
        assert kinds == [("user.created", "server (oidc:oidc)", None), ("user.login", "erin", "oidc:oidc")]
    # Roles work as for anyone; a second sign-on is the same user.
    w.admin("POST", "/api/v1/projects/svc/roles", {"user": "erin", "role": "developer"})
    run = w.finished_run()
    page = b.get(f"/runs/{run}").text
    assert f'action="/runs/{run}/rerun"' in page
    b2 = TestClient(w.app)
    assert sign_on(w, b2).status_code == 303
    with w.state.db.session() as s:
        assert len(list(s.scalars(select(User).where(User.source == "oidc:oidc")))) == 1
    # Disabling the user ends their sessions.
    w.admin("PATCH", "/api/v1/users/erin", {"disabled": True})
    assert "Logged in as" not in b.get("/").text
    assert "your chute user is disabled" in sign_on(w, TestClient(w.app)).text


BAD_TOKENS = [
    ("wrong-nonce", "nonce is not the one this login sent"),
    ("wrong-aud", "Audience doesn"),
    ("wrong-iss", "Invalid issuer"),
    ("expired", "Signature has expired"),
    ("other-key", "Signature verification failed"),
]


def test_a_bad_id_token_logs_nobody_in(sso_sqlite: World, idp: FakeIdP) -> None:
    sso = sso_sqlite
    for mode, says in BAD_TOKENS:
        idp.mode = mode
        b = TestClient(sso.app)
        r = sign_on(sso, b)
        assert r.status_code == 401 and "single sign-on failed" in r.text and says in r.text, (mode, r.text)
        assert "Logged in as" not in b.get("/").text
    assert idp.errors == []  # chute's requests were right; the provider's answers were not
    with sso.state.db.session() as s:
        assert s.scalars(select(User).where(User.name == "erin")).first() is None
        logins = [(e.actor, e.outcome, e.data["method"]) for e in s.scalars(
            select(Event).where(Event.kind == "user.login").order_by(Event.id))]
        assert logins == [("", "failed", "oidc:oidc")] * len(BAD_TOKENS)


def test_the_callback_must_come_back_to_the_browser_that_started(sso_sqlite: World, idp: FakeIdP) -> None:
    sso = sso_sqlite
    attacker = TestClient(sso.app)
    start = attacker.get("/login/oidc/start", follow_redirects=False).headers["location"]
    callback = httpx.get(start, follow_redirects=False).headers["location"]
    victim = TestClient(sso.app)  # login CSRF: the attacker's code in the victim's browser
    r = victim.get(callback.removeprefix("http://testserver"), follow_redirects=False)
    assert r.status_code == 400 and "does not belong to a login started in this browser" in r.text
    assert "Logged in as" not in victim.get("/").text
    r = victim.get("/login/oidc/callback?error=access_denied&state=x")
    assert r.status_code == 400


def test_a_local_user_is_never_taken_over(sso_sqlite: World, idp: FakeIdP) -> None:
    sso = sso_sqlite
    idp.next_user = {"sub": "u-2002", "preferred_username": "pat"}  # pat is a local project admin
    r = sign_on(sso, TestClient(sso.app))
    assert r.status_code == 401 and "a chute user named &#39;pat&#39; already exists" in r.text
    idp.next_user = {"sub": "u-3003", "preferred_username": "a b c"}
    assert "cannot be a chute user name" in sign_on(sso, TestClient(sso.app)).text
