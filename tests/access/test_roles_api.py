"""Every role × every mutating action, end to end through the real API, on SQLite and PostgreSQL.

One table says who may do what. For every cell the test makes the call with that person's
token and checks the status (2xx, 401 or 403) and the ledger: an allowed call writes its
event with the actor ``<user> (token <name>)``; a refused call writes nothing at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chute.store import Token, utcnow

from .conftest import IMAGE, World

ACTIONS = ("trigger", "rerun", "cancel", "deploy_staging", "deploy_production", "rollback_staging",
           "rollback_production", "override_staging", "override_production", "grant", "revoke", "add_project",
           "add_user", "create_token", "agent_claim")
RUNS = {"trigger", "rerun", "cancel"}
DEPLOY_ALL = {"deploy_staging", "deploy_production", "rollback_staging", "rollback_production",
              "override_staging", "override_production"}
DEPLOY_STAGING = {"deploy_staging", "rollback_staging", "override_staging"}
PROJECT_ADMIN = RUNS | DEPLOY_ALL | {"grant", "revoke"}
EVERYTHING = set(ACTIONS)

# who -> (what they may do, the status of everything else)
ALLOWED: dict[str | None, tuple[set[str], int]] = {
    None: (set(), 401),  # no token at all
    "olga": ({"create_token"}, 403),  # no role
    "vic": ({"create_token"}, 403),  # viewer
    "dev": (RUNS | {"create_token"}, 403),  # developer
    "dora": (DEPLOY_STAGING | {"create_token"}, 403),  # deployer on staging only
    "pat": (PROJECT_ADMIN | {"create_token"}, 403),  # project admin
    "sam": (EVERYTHING - {"agent_claim"}, 403),  # server admin; a login token has no agent scope
    "admin": (EVERYTHING, 403),  # the bootstrap admin token (scopes admin, agent)
    "dev-read": (set(), 403),  # dev's token with the read scope only
    "pat-run": (RUNS, 403),  # pat's token with the run scope only: pat's deploy and admin rights do not apply
    "dora-all": (DEPLOY_STAGING | {"create_token"}, 403),  # scoped deploy+admin: still only her role's rights
    "sam-agent": ({"agent_claim"}, 403),  # an agent token: the agent protocol and nothing else
    "dev-expired": (set(), 401),
    "dev-revoked": (set(), 401),
}

# The event each allowed action writes (None: checked another way).
EVENT = {"trigger": "run.queued", "rerun": "run.rerun", "cancel": "run.cancelled", "deploy_staging": "deploy.queued",
         "deploy_production": "deploy.queued", "rollback_staging": "deploy.queued",
         "rollback_production": "deploy.queued", "override_staging": None, "override_production": None,
         "grant": "role.granted", "revoke": "role.revoked", "add_project": "project.added",
         "add_user": "user.created", "create_token": "token.created", "agent_claim": None}


@dataclass
class Targets:
    """What the actions act on, made (by the bootstrap admin) once and again only when used up."""

    w: World
    counter: itertools.count = itertools.count(1)  # type: ignore[assignment]  # noqa: RUF009

    def __post_init__(self) -> None:
        self.cache: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def used(self, key: str) -> None:
        self.cache.pop(key, None)

    def n(self) -> int:
        return next(self.counter)


def make_tokens(w: World) -> None:
    def token(owner: str, name: str, scopes: list[str]) -> str:
        return w.admin("POST", "/api/v1/tokens", {"name": name, "scopes": scopes, "user": owner})["token"]

    w.admin("POST", "/api/v1/users", {"name": "rita"})  # whose roles the grant and revoke actions change
    w.tokens["dev-read"] = token("dev", "dev-read", ["read"])
    w.tokens["pat-run"] = token("pat", "pat-run", ["run"])
    w.tokens["dora-all"] = token("dora", "dora-all", ["deploy", "admin"])
    w.tokens["sam-agent"] = token("sam", "sam-agent", ["agent"])
    w.tokens["dev-expired"] = token("dev", "dev-expired", ["run"])
    w.tokens["dev-revoked"] = token("dev", "dev-revoked", ["run"])
    with w.state.db.session() as s:  # an hour ago, this token expired
        tok = s.query(Token).filter(Token.name == "dev-expired").one()
        tok.expires_at = utcnow() - timedelta(hours=1)
    w.admin("DELETE", "/api/v1/tokens/" + w.tokens["dev-revoked"].split("_")[1])


Call = Callable[[], Any]


def prepare(w: World, t: Targets, action: str, who: str | None) -> tuple[Call, Callable[[], None]]:
    """Make what the action acts on (before the ledger is looked at); returns the call and what to do once
    it succeeded (targets used up)."""
    nothing: Callable[[], None] = lambda: None  # noqa: E731
    if action == "trigger":
        return lambda: w.call("POST", "/api/v1/projects/svc/trigger", who, {"pipelines": ["test"]}), nothing
    if action == "rerun":
        run = t.get("finished", w.finished_run)
        return lambda: w.call("POST", f"/api/v1/runs/{run}/rerun", who, {}), nothing
    if action == "cancel":
        queued = t.get("queued", w.queued_run)
        return lambda: w.call("POST", f"/api/v1/runs/{queued}/cancel", who), lambda: t.used("queued")
    if action.startswith("deploy_"):
        env = action.removeprefix("deploy_")
        return lambda: w.call("POST", f"/api/v1/projects/svc/environments/{env}/deploy", who,
                              {"image": IMAGE, "reason": f"test {who}"}), nothing
    if action.startswith("rollback_"):
        env = action.removeprefix("rollback_")
        return lambda: w.call("POST", f"/api/v1/projects/svc/environments/{env}/rollback", who,
                              {"reason": "test"}), nothing
    if action.startswith("override_"):
        env = action.removeprefix("override_")
        req = t.get(f"request-{env}", lambda: w.deploy_request(env))
        return lambda: w.call("POST", f"/api/v1/deploy-requests/{req}/override", who,
                              {"reason": f"override by {who}"}), nothing
    if action == "grant":
        return lambda: w.call("POST", "/api/v1/projects/svc/roles", who, {"user": "rita", "role": "viewer"}), \
            lambda: w.admin("DELETE", "/api/v1/projects/svc/roles/rita/viewer")
    if action == "revoke":
        t.get("binding", lambda: w.admin("POST", "/api/v1/projects/svc/roles", {"user": "rita", "role": "developer"}))
        return lambda: w.call("DELETE", "/api/v1/projects/svc/roles/rita/developer", who), lambda: t.used("binding")
    if action == "add_project":
        n = t.n()
        return lambda: w.call("POST", "/api/v1/projects", who, {"repo": str(w.repo), "name": f"p{n}"}), nothing
    if action == "add_user":
        n = t.n()
        return lambda: w.call("POST", "/api/v1/users", who, {"name": f"newcomer{n}"}), nothing
    if action == "create_token":
        n = t.n()
        return lambda: w.call("POST", "/api/v1/tokens", who, {"name": f"t{n}", "scopes": ["read"]}), nothing
    if action == "agent_claim":
        return lambda: w.call("POST", "/api/v1/agents/claim", who, {"agent": f"agent-{who}", "wait": 0}), nothing
    raise AssertionError(action)


def actor_of(w: World, who: str) -> str:
    if who == "admin":
        return "admin (token bootstrap)"
    base = who.split("-")[0]
    return f"{base} (token {'login' if who == base else who})"


def test_every_role_and_every_mutating_action(world: World) -> None:
    w = world
    make_tokens(w)
    t = Targets(w)
    wrong: list[str] = []
    for who, (allowed, refused) in ALLOWED.items():
        for action in ACTIONS:
            call, on_success = prepare(w, t, action, who)
            before = w.last_event_id()
            r = call()
            ok = action in allowed
            if ok and r.status_code >= 300:
                wrong.append(f"{who} {action}: expected success, got {r.status_code} {r.text[:300]}")
                continue
            if not ok:
                if r.status_code != refused:
                    wrong.append(f"{who} {action}: expected {refused}, got {r.status_code} {r.text[:200]}")
                elif w.events_after(before):
                    wrong.append(f"{who} {action}: refused but wrote {[e.kind for e in w.events_after(before)]}")
                continue
            on_success()
            kind = EVENT[action]
            if kind is not None:
                mine = [e for e in w.events_after(before, kind) if e.actor == actor_of(w, who)]
                if not mine:
                    got = [(e.kind, e.actor) for e in w.events_after(before)]
                    wrong.append(f"{who} {action}: no {kind} event by {actor_of(w, who)!r} (got {got})")
            elif action.startswith("override_"):
                req = r.json()
                if req["actor"] != actor_of(w, who) or req["override_freeze"] is not True:
                    wrong.append(f"{who} {action}: the request says {req['actor']!r}, {req['override_freeze']}")
    assert not wrong, "\n".join(wrong)


def test_refusals_say_which_role_is_missing_and_who_can_grant_it(world: World) -> None:
    w = world
    make_tokens(w)
    r = w.call("POST", "/api/v1/projects/svc/environments/staging/deploy", "dev", {"image": IMAGE})
    assert r.status_code == 403
    body = r.json()
    assert body["detail"] == ("dev needs the deployer role on project svc to deploy to, roll back or override a "
                              "freeze on staging (has: developer)")
    # The people to ask: the project's admins and the server admins.
    assert "(pat, admin, sam)" in body["hint"]
    assert "`chute role grant dev deployer --project svc --environment staging`" in body["hint"]

    r = w.call("POST", "/api/v1/projects/svc/environments/production/rollback", "dora", {})
    assert r.status_code == 403
    assert r.json()["detail"].startswith("dora is deployer on svc only for staging; to deploy to, roll back or "
                                         "override a freeze on production needs the deployer role on production")

    r = w.call("POST", "/api/v1/projects/svc/trigger", "dev-read", {})
    assert r.status_code == 403
    assert r.json()["detail"] == ("the token 'dev-read' of dev has the scopes read; to trigger runs it needs the run "
                                  "scope")
    assert "chute token create NAME --scope run" in r.json()["hint"]

    r = w.call("POST", "/api/v1/users", "pat", {"name": "x1"})
    assert r.status_code == 403 and r.json()["detail"] == "pat may not manage users: only server admins may"

    # Someone else's token is not even said to exist.
    other = w.admin("GET", "/api/v1/tokens", params={"user": "dev"})[0]
    r = w.call("DELETE", f"/api/v1/tokens/{other['id']}", "vic")
    assert r.status_code == 404 and r.json()["detail"] == f"you have no token '{other['id']}'"
    assert w.call("GET", "/api/v1/tokens", "vic", params={"all": "true"}).status_code == 403


def test_deployer_environments_grow_and_shrink(world: World) -> None:
    w = world
    grant = w.call("POST", "/api/v1/projects/svc/roles", "pat",
                   {"user": "dora", "role": "deployer", "environments": ["production"]})
    assert grant.status_code == 201 and grant.json()["environments"] == ["production", "staging"]
    r = w.call("POST", "/api/v1/projects/svc/environments/production/deploy", "dora", {"image": IMAGE})
    assert r.status_code == 202, r.text
    left = w.call("DELETE", "/api/v1/projects/svc/roles/dora/deployer", "pat", params={"environment": "staging"})
    assert left.status_code == 200 and left.json()["environments"] == ["production"]
    r = w.call("POST", "/api/v1/projects/svc/environments/staging/deploy", "dora", {"image": IMAGE})
    assert r.status_code == 403  # the revoke applies to the token at once
    # Only a deployer is given per environment.
    bad = w.call("POST", "/api/v1/projects/svc/roles", "pat", {"user": "vic", "role": "developer",
                                                              "environments": ["staging"]})
    assert bad.status_code == 400 and "only the deployer role" in bad.json()["detail"]
    roles = w.call("GET", "/api/v1/projects/svc/roles", None).json()
    assert {(b["user"], b["role"], tuple(b["environments"])) for b in roles} == {
        ("vic", "viewer", ()), ("dev", "developer", ()), ("dora", "deployer", ("production",)), ("pat", "admin", ())}
    kinds = [(e.kind, e.actor, e.data["user"], e.data["environments"])
             for e in w.events_after(0, "role.granted", "role.revoked") if e.data["user"] == "dora"]
    assert kinds[-2:] == [("role.granted", "pat (token login)", "dora", ["production"]),
                          ("role.revoked", "pat (token login)", "dora", ["staging"])]


def test_a_disabled_user_and_a_deleted_role_stop_their_tokens(world: World) -> None:
    w = world
    assert w.call("POST", "/api/v1/projects/svc/trigger", "dev", {"pipelines": ["test"]}).status_code == 201
    w.admin("PATCH", "/api/v1/users/dev", {"disabled": True})
    r = w.call("POST", "/api/v1/projects/svc/trigger", "dev", {"pipelines": ["test"]})
    assert r.status_code == 401 and "disabled" in r.json()["detail"]
    assert w.login("dev").status_code == 401  # nor a password login
    w.admin("PATCH", "/api/v1/users/dev", {"disabled": False})
    assert w.call("POST", "/api/v1/projects/svc/trigger", "dev", {"pipelines": ["test"]}).status_code == 201
    ev = w.events_after(0, "user.updated")
    assert [(e.actor, e.data["changed"]) for e in ev] == [("admin (token bootstrap)", ["disabled"]),
                                                          ("admin (token bootstrap)", ["enabled"])]
    # The bootstrap admin cannot be demoted (its token file is how the server is recovered).
    r = w.call("PATCH", "/api/v1/users/admin", "sam", {"server_admin": False})
    assert r.status_code == 400 and "bootstrap admin" in r.json()["detail"]


def test_self_service_registration_makes_the_owner_admin_of_their_project(world: World, tmp_path) -> None:
    """Any user may register a repository by URL (here a real git daemon) and becomes its admin;
    paths on the server are for server admins."""
    import subprocess
    import time

    from .conftest import free_port

    w = world
    r = w.call("POST", "/api/v1/projects", "olga", {"repo": str(w.repo), "name": "mine"})
    assert r.status_code == 403 and "only server admins may register a repository by a path" in r.json()["detail"]
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={tmp_path}", f"--port={port}",
                               "--listen=127.0.0.1", "--reuseaddr", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"git://127.0.0.1:{port}/svc"
        deadline = time.monotonic() + 20
        while subprocess.run(["git", "ls-remote", url], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.1)
        r = w.call("POST", "/api/v1/projects", "olga", {"repo": url, "name": "mine"})
        assert r.status_code == 201, r.text
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    roles = w.call("GET", "/api/v1/projects/mine/roles", "olga").json()
    assert [(b["user"], b["role"], b["granted_by"]) for b in roles] == [
        ("olga", "admin", "server (self-service registration)")]
    granted = w.call("POST", "/api/v1/projects/mine/roles", "olga", {"user": "vic", "role": "developer"})
    assert granted.status_code == 201
    (added,) = [e for e in w.events_after(0, "project.added") if e.project == "mine"]
    assert added.actor == "olga (token login)"


def test_self_service_off_leaves_registration_to_server_admins(db_url: str, tmp_path) -> None:
    from .conftest import build_world

    gen = build_world(db_url, tmp_path, self_service=False)
    w = next(gen)
    try:
        r = w.call("POST", "/api/v1/projects", "olga", {"repo": "https://git.example.org/x.git"})
        assert r.status_code == 403
        assert "self-service registration is off (CHUTE_SELF_SERVICE=false)" in r.json()["detail"]
        assert "(admin, sam)" in r.json()["hint"]
        r = w.call("POST", "/api/v1/projects", "sam", {"repo": str(w.repo), "name": "svc2"})
        assert r.status_code == 201, r.text
    finally:
        gen.close()
