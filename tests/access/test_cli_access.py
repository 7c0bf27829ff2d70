"""The CLI bodies against a live server (uvicorn on a free port): login stores a private credentials file,
later commands use it, and every refusal comes from the server's one permission check."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from chute import credentials
from chute.agent.client import AgentClient
from chute.client import Client, ClientError
from chute.deploy.cli import deploy_command
from chute.server import access_cli as cli

from .conftest import IMAGE, Live

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    assert fn(*args, out=out, **kw) == 0
    return out.getvalue()


def test_login_then_commands_use_the_saved_token(live: Live) -> None:
    admin = Client(live.url, live.world.admin_token)
    said = run(cli.user_add_command, admin, "carol", password_stdin=True, stdin=io.StringIO("carol's passphrase\n"))
    assert "user carol created" in said
    run(cli.role_grant_command, admin, "carol", "developer", "svc")

    said = run(cli.login_command, live.url, "carol", password_stdin=True, stdin=io.StringIO("carol's passphrase\n"))
    path = credentials.path()
    assert f"logged in to {live.url} as carol" in said and str(path) in said
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert saved["default"] == live.url and saved["servers"][live.url]["user"] == "carol"

    me = Client()  # no --server, no --token: both from the credentials file
    assert me.server == live.url and me.token == saved["servers"][live.url]["token"]
    assert run(cli.whoami_command, me).startswith(f"carol on {live.url}")
    runs = me.post("/api/v1/projects/svc/trigger", {"pipelines": ["test"]})
    assert runs[0]["actor"].startswith("carol (token login from ")
    with pytest.raises(ClientError) as err:  # chute deploy, as carol: refused by the server
        deploy_command(me, "svc", "staging", image=IMAGE, wait=False, out=io.StringIO())
    assert str(err.value) == (
        "not allowed: carol needs the deployer role on project svc to deploy to, roll back or override a freeze on "
        "staging (has: developer) (hint: a project admin or a server admin (pat, admin, sam) can grant it: "
        "`chute role grant carol deployer --project svc --environment staging`)")

    assert "logged out" in run(cli.logout_command, None)
    assert credentials.token_for(live.url) is None
    with pytest.raises(ClientError, match="refused the token"):
        Client(live.url, saved["servers"][live.url]["token"]).get("/api/v1/whoami")


def test_saving_a_token_made_elsewhere(live: Live) -> None:
    """Single-sign-on users make a token on the Account page and give it to `chute login --token-stdin`."""
    said = run(cli.login_command, live.url, None, token_stdin=True, stdin=io.StringIO(live.world.tokens["dora"] + "\n"))
    assert said.startswith(f"logged in to {live.url} as dora with the token 'login'")
    assert Client().get("/api/v1/whoami")["user"] == "dora"
    with pytest.raises(ClientError, match="refused the token"):
        cli.login_command(live.url, None, token_stdin=True, stdin=io.StringIO("chute_00000000_" + "x" * 43 + "\n"))


def test_a_wrong_password_and_no_password(live: Live) -> None:
    with pytest.raises(ClientError, match=r"login to .* failed: wrong user name or password"):
        cli.login_command(live.url, "dev", password_stdin=True, stdin=io.StringIO("nope nope nope\n"))
    assert not credentials.path().exists()
    with pytest.raises(ClientError, match="no password: pass --password-stdin"):
        cli.login_command(live.url, "dev", prompt=None)  # stdin is not a terminal under pytest


def test_roles_and_tokens_from_the_command_line(live: Live) -> None:
    w = live.world
    pat = Client(live.url, w.tokens["pat"])
    dev = Client(live.url, w.tokens["dev"])
    said = run(cli.role_grant_command, pat, "dev", "deployer", "svc", environments=["staging"])
    assert said == "dev is deployer of svc on staging\n"
    listed = run(cli.role_list_command, dev, "svc")
    assert any(line.split()[:3] == ["dev", "deployer", "staging"] for line in listed.splitlines())
    with pytest.raises(ClientError, match="not allowed: dev needs the admin role on project svc"):
        cli.role_grant_command(dev, "dev", "admin", "svc", out=io.StringIO())
    assert run(cli.role_revoke_command, pat, "dev", "deployer", "svc") == "dev is no longer deployer of svc\n"

    out, err = io.StringIO(), io.StringIO()
    assert cli.token_create_command(dev, "ci", scopes=["run"], expires="30d", out=out, err=err) == 0
    token = out.getvalue().strip()  # stdout: the token alone, for T=$(chute token create ...)
    assert token.startswith("chute_") and "\n" not in token and token not in err.getvalue()
    assert "scopes run" in err.getvalue() and "not shown again" in err.getvalue()
    listing = run(cli.token_list_command, dev)
    prefix = token.split("_")[1]
    assert f"chute_{prefix}_…" in listing and token not in listing
    ci = Client(live.url, token)
    assert ci.post("/api/v1/projects/svc/trigger", {"pipelines": ["test"]})[0]["actor"] == "dev (token ci)"
    with pytest.raises(ClientError, match="has the scopes run; to register repositories it needs the admin"):
        ci.post("/api/v1/projects", {"repo": "https://example.org/x.git"})
    assert f"({'chute_' + prefix + '_…'}) of dev revoked" in run(cli.token_revoke_command, dev, prefix)
    with pytest.raises(ClientError, match="refused the token"):
        ci.get("/api/v1/whoami")


def test_an_agent_token_runs_the_agent_protocol_only(live: Live) -> None:
    admin = Client(live.url, live.world.admin_token)
    out = io.StringIO()
    cli.token_create_command(admin, "agent-1", scopes=["agent"], expires="never", user="sam", out=out,
                             err=io.StringIO())
    token = out.getvalue().strip()
    live.world.queued_run()
    agent = AgentClient(live.url, token, "agent-1")
    try:
        job = agent.claim(wait=0)
        assert job is not None and job["run_id"]
    finally:
        agent.close()
    with pytest.raises(ClientError, match="has the scopes agent; to trigger runs it needs the run scope"):
        Client(live.url, token).post("/api/v1/projects/svc/trigger", {})
    with pytest.raises(ClientError, match="agent scope works only in a server admin's tokens"):
        cli.token_create_command(admin, "agent-2", scopes=["agent"], user="dev", out=io.StringIO())


def test_users_from_the_command_line(live: Live) -> None:
    admin = Client(live.url, live.world.admin_token)
    said = run(cli.user_add_command, admin, "robot", password_stdin=False, prompt=None)  # not a terminal: none
    assert "no password set: robot signs in with single sign-on or a token" in said
    prompts = iter(["first choice pw", "first choice pw"])
    run(cli.user_passwd_command, admin, "robot", prompt=lambda _q: next(prompts))
    assert live.world.login("robot", "first choice pw").status_code == 201
    mismatch = iter(["one password", "another one"])
    with pytest.raises(ClientError, match="the two passwords differ"):
        cli.user_passwd_command(admin, "robot", prompt=lambda _q: next(mismatch), out=io.StringIO())
    assert run(cli.user_set_command, admin, "robot", disabled=True) == "robot: server admin no, disabled\n"
    listing = run(cli.user_list_command, admin)
    assert any(line.split()[0] == "robot" and "disabled" in line for line in listing.splitlines())
    with pytest.raises(ClientError, match="not allowed: pat may not manage users"):
        cli.user_add_command(Client(live.url, live.world.tokens["pat"]), "x2", prompt=None, out=io.StringIO())
