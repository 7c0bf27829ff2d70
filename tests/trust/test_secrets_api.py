"""The secrets API on SQLite and PostgreSQL: write-only values, admin only, ledger with names only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from chute.secrets import SecretStore
from chute.secrets.crypto import KEY_ENV, new_key
from chute.store import Event, Project, Secret

from .conftest import PEM, SECRET, gerrit_project, scan_database, token


def test_set_list_replace_delete_never_show_the_value(server, tmp_path: Path) -> None:
    gerrit_project(server, tmp_path)
    url = "/api/v1/projects/svc/secrets"
    r = server.put(f"{url}/API_TOKEN", json={"value": SECRET}, headers=server.admin)
    assert r.status_code == 200, r.text
    assert r.json()["created"] is True and r.json()["scope"] == "project" and r.json()["updated_by"] == "admin"
    r = server.put(f"{url}/TLS_KEY", json={"value": PEM}, headers=server.admin)
    assert r.status_code == 200
    r = server.put(f"{url}/DB_PASSWORD", json={"value": "staging-password", "environment": "staging"},
                   headers=server.admin)
    assert r.json()["scope"] == "environment" and r.json()["environment"] == "staging"
    replaced = server.put(f"{url}/API_TOKEN", json={"value": SECRET + "-2"}, headers=server.admin).json()
    assert replaced["created"] is False
    listed = server.get(url, headers=server.admin).json()
    assert [(x["name"], x["scope"], x["environment"]) for x in listed] == [
        ("API_TOKEN", "project", None), ("TLS_KEY", "project", None), ("DB_PASSWORD", "environment", "staging")]
    assert [x["name"] for x in server.get(url, params={"environment": "staging"}, headers=server.admin).json()] == \
        ["DB_PASSWORD"]
    r = server.delete(f"{url}/DB_PASSWORD", headers=server.admin)
    assert r.status_code == 404 and "no secret 'DB_PASSWORD' for the project" in r.json()["detail"]
    assert server.delete(f"{url}/DB_PASSWORD", params={"environment": "staging"},
                         headers=server.admin).status_code == 204

    # The values are in no response, no ledger event and no column of any table (only ciphertext).
    bodies = [r.text for r in (server.get(url, headers=server.admin), server.get("/openapi.json"))]
    assert not any(SECRET in b for b in bodies)
    assert scan_database(server.db_url, [SECRET, SECRET + "-2", PEM, "staging-password"]) == []
    with server.app_state.db.session() as s:
        events = [(e.kind, e.environment, e.outcome, e.data) for e in
                  s.scalars(select(Event).where(Event.kind.like("secret.%")).order_by(Event.id))]
        rows = s.scalars(select(Secret)).all()
        assert all(r.value.startswith("v1:") for r in rows)
        # and they decrypt back, with the key file the server made on first use
        project = s.scalars(select(Project)).one()
        store = SecretStore(Path(server.app_state.settings.home))
        assert store.values(s, project, ["API_TOKEN", "TLS_KEY", "NOPE"]) == {"API_TOKEN": SECRET + "-2",
                                                                             "TLS_KEY": PEM}
    assert events == [
        ("secret.set", "", "created", {"name": "API_TOKEN", "scope": "project"}),
        ("secret.set", "", "created", {"name": "TLS_KEY", "scope": "project"}),
        ("secret.set", "staging", "created", {"name": "DB_PASSWORD", "scope": "environment"}),
        ("secret.set", "", "replaced", {"name": "API_TOKEN", "scope": "project"}),
        ("secret.deleted", "staging", "", {"name": "DB_PASSWORD", "scope": "environment"}),
    ]
    assert (Path(server.app_state.settings.home) / "secret.key").stat().st_mode & 0o777 == 0o600


def test_only_admins_manage_secrets_and_bad_input_is_explained(server, tmp_path: Path) -> None:
    gerrit_project(server, tmp_path)
    url = "/api/v1/projects/svc/secrets"
    reader = token(server, ["read"])
    assert server.get(url).status_code == 401
    r = server.put(f"{url}/X_TOKEN", json={"value": SECRET}, headers=reader)
    assert r.status_code == 403 and "needs the admin scope" in r.json()["detail"]
    assert server.get(url, headers=reader).status_code == 403
    assert server.delete(f"{url}/X_TOKEN", headers=reader).status_code == 403
    short = server.put(f"{url}/X_TOKEN", json={"value": "abc1234"}, headers=server.admin)
    assert short.status_code == 400 and "7 characters long; at least 8" in short.json()["detail"]
    assert "abc1234" not in short.text  # the value is never echoed, not even when it is refused
    bad = server.put(f"{url}/-lead", json={"value": SECRET}, headers=server.admin)
    assert bad.status_code == 400 and "is not a valid secret name" in bad.json()["detail"]
    env = server.put(f"{url}/X_TOKEN", json={"value": SECRET, "environment": "Prod!"}, headers=server.admin)
    assert env.status_code == 400 and "not a valid environment name" in env.json()["detail"]
    typed = server.put(f"{url}/X_TOKEN", json={"value": 12345678901}, headers=server.admin)
    assert typed.status_code == 400 and "must be a string" in typed.json()["detail"]
    assert server.put("/api/v1/projects/nope/secrets/X_TOKEN", json={"value": SECRET},
                      headers=server.admin).status_code == 404
    assert server.get(url, headers=server.admin).json() == []  # nothing was stored by the refused calls


def test_rotation_re_encrypts_every_value_under_the_new_key(server, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    gerrit_project(server, tmp_path)
    home = Path(server.app_state.settings.home)
    old, new = new_key(), new_key()
    with server.app_state.db.session() as s:
        project = s.scalars(select(Project)).one()
        SecretStore(home, {KEY_ENV: old}).set(s, project, "A_TOKEN", SECRET, actor="ada")
        SecretStore(home, {KEY_ENV: old}).set(s, project, "B_TOKEN", PEM, environment="staging", actor="ada")
    with server.app_state.db.session() as s:
        rotating = SecretStore(home, {KEY_ENV: f"{new},{old}"})
        assert rotating.rotate(s) == 2 and rotating.rotate(s) == 0
    with server.app_state.db.session() as s:
        project = s.scalars(select(Project)).one()
        only_new = SecretStore(home, {KEY_ENV: new})
        assert only_new.values(s, project, ["A_TOKEN"]) == {"A_TOKEN": SECRET}
        assert only_new.values(s, project, ["B_TOKEN"], environment="staging") == {"B_TOKEN": PEM}
        assert {r.key_id for r in s.scalars(select(Secret))} == {only_new.keyring().current_id}


def strings(doc: object) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [x for k, v in doc.items() for x in (*strings(k), *strings(v))]
    if isinstance(doc, list):
        return [x for v in doc for x in strings(v)]
    return []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fuzz_secret_input_never_breaks_the_server_or_leaks(server, tmp_path: Path) -> None:
    gerrit_project(server, tmp_path)
    names = st.one_of(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
                      st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
                              min_size=1, max_size=30))
    values = st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.integers(), max_size=2))
    envs = st.one_of(st.just(""), st.from_regex(r"[a-z0-9][-a-z0-9]{0,10}", fullmatch=True), st.text(max_size=12))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=names, value=values, environment=envs)
    def check(name: str, value: object, environment: str) -> None:
        body = {"value": value, "environment": environment}
        r = server.put(f"/api/v1/projects/svc/secrets/{quote(name, safe='')}", json=body, headers=server.admin)
        assert r.status_code in (200, 400, 404, 405, 422), (r.status_code, r.text)
        if isinstance(value, str) and value not in (name, environment):
            assert value not in strings(r.json())  # never echoed, whatever the answer
        listing = server.get("/api/v1/projects/svc/secrets", headers=server.admin)
        assert listing.status_code == 200
        if r.status_code == 200:
            assert any(x["name"] == name for x in listing.json())

    check()
