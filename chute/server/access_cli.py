"""Bodies of ``chute login/logout/whoami``, ``chute user …``, ``chute role …`` and ``chute token …``.

They talk to a chute server through :class:`chute.client.Client`, i.e. the same API (and
the same permission checks and ledger events) as the UI; ``chute/cli.py`` only parses
options and calls these. Each returns the exit code (0: done). Nothing here imports the
server: only the HTTP client and the standard library.

Passwords are read from standard input (``--password-stdin``: the first line) or asked
for on the terminal, never taken from the command line (where ``ps`` and shell
histories would keep them).
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import quote

from chute import credentials
from chute.client import Client, ClientError, server_url

Prompt = Callable[[str], str]


def _read_password(*, from_stdin: bool, stdin: TextIO | None, prompt: Prompt | None, confirm: bool,
                   what: str = "Password") -> str | None:
    """The password: the first line of stdin, or asked twice on a terminal; None when neither is possible."""
    if from_stdin:
        line = (stdin or sys.stdin).readline()
        return line.rstrip("\r\n")
    ask = prompt
    if ask is None:
        if not sys.stdin.isatty():
            return None
        ask = getpass.getpass
    first = ask(f"{what}: ")
    if confirm and first and ask(f"{what} again: ") != first:
        raise ClientError("the two passwords differ; nothing was changed")
    return first


def _when(value: str | None) -> str:
    if not value:
        return "never"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


def _out(out: TextIO | None) -> TextIO:
    return out or sys.stdout


# ------------------------------------------------------------------ login, logout, whoami
def login_command(server: str | None, user: str | None, *, password_stdin: bool = False, token_stdin: bool = False,
                  expires: str = "30d", token_name: str | None = None, stdin: TextIO | None = None,
                  prompt: Prompt | None = None, out: TextIO | None = None) -> int:
    """Log in with a password (a new token is made), or save a token you have (``--token-stdin``, e.g. one
    made on the Account page after a single sign-on); later commands use it (credentials file, mode 0600)."""
    import httpx

    url = server_url(server)
    if token_stdin:
        return _save_token(url, (stdin or sys.stdin).readline().strip(), _out(out))
    if not user:
        raise ClientError("give --user NAME (or --token-stdin to save a token you already have)")
    password = _read_password(from_stdin=password_stdin, stdin=stdin, prompt=prompt, confirm=False)
    if password is None:
        raise ClientError("no password: pass --password-stdin (and the password on standard input) or run "
                          "`chute login` in a terminal")
    name = token_name or f"login from {socket.gethostname()[:60]}"
    body = {"user": user, "password": password, "token_name": name, "expires": expires}
    try:
        r = httpx.post(f"{url}/api/v1/login", json=body, timeout=60)
    except httpx.TransportError as exc:
        raise ClientError(f"cannot reach the chute server at {url} ({exc})") from None
    if r.status_code != 201:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text[:300]
        wait = f" (retry after {r.headers['retry-after']} s)" if "retry-after" in r.headers else ""
        raise ClientError(f"login to {url} failed: {detail}{wait}")
    tok = r.json()
    path = credentials.remember(url, user=tok["user"], token=tok["token"], token_id=tok["id"],
                                token_name=tok["name"], expires_at=tok["expires_at"])
    _out(out).write(f"logged in to {url} as {tok['user']}; token {tok['hint']} saved in {path} "
                    f"(expires {_when(tok['expires_at'])})\n")
    return 0


def _save_token(url: str, token: str, out: TextIO) -> int:
    if not token:
        raise ClientError("no token on standard input")
    me = Client(url, token).get("/api/v1/whoami")
    if not me.get("authenticated"):
        raise ClientError(f"the server at {url} does not know that token")
    tok = me.get("token") or {}
    path = credentials.remember(url, user=me["user"], token=token, token_id=tok.get("id"),
                                token_name=tok.get("name"), expires_at=None)
    out.write(f"logged in to {url} as {me['user']} with the token {tok.get('name')!r}; saved in {path}\n")
    return 0


def logout_command(server: str | None, *, out: TextIO | None = None) -> int:
    """Revoke the saved token of ``server`` on the server and forget it here."""
    url = server_url(server)
    saved = credentials.token_for(url)
    if saved is None:
        _out(out).write(f"not logged in to {url}\n")
        return 0
    try:
        Client(url, saved).post("/api/v1/logout")
    except ClientError as err:  # already revoked or expired: forget it anyway
        _out(out).write(f"(the server did not take the logout: {err})\n")
    credentials.forget(url)
    _out(out).write(f"logged out of {url}; the token is revoked and removed from {credentials.path()}\n")
    return 0


def whoami_command(client: Client, *, as_json: bool = False, out: TextIO | None = None) -> int:
    me = client.get("/api/v1/whoami")
    o = _out(out)
    if as_json:
        o.write(json.dumps(me, indent=2) + "\n")
        return 0
    if not me["authenticated"]:
        o.write(f"not logged in to {client.server} (anonymous read: {'on' if me['anonymous_read'] else 'off'})\n")
        return 1
    via = f", token {me['token']['name']!r}" if me.get("token") else ""
    o.write(f"{me['user']} on {client.server}{' (server admin)' if me['server_admin'] else ''}{via}; "
            f"scopes: {', '.join(me['scopes'])}\n")
    for g in me["roles"]:
        envs = f" ({', '.join(g['environments'])})" if g["environments"] else ""
        o.write(f"  {g['project']}: {g['role']}{envs}\n")
    return 0


# ------------------------------------------------------------------ users
def user_add_command(client: Client, name: str, *, password_stdin: bool = False, admin: bool = False,
                     display_name: str = "", stdin: TextIO | None = None, prompt: Prompt | None = None,
                     out: TextIO | None = None) -> int:
    """Create a user (server admins); the password from stdin or the terminal, or none."""
    password = _read_password(from_stdin=password_stdin, stdin=stdin, prompt=prompt, confirm=True)
    body = {"name": name, "password": password or None, "server_admin": admin, "display_name": display_name}
    u = client.post("/api/v1/users", body)
    o = _out(out)
    o.write(f"user {u['name']} created{' (server admin)' if u['server_admin'] else ''}\n")
    if not u["has_password"]:
        o.write(f"no password set: {u['name']} signs in with single sign-on or a token "
                f"(`chute token create NAME --user {u['name']}`), or set one with "
                f"`chute user passwd {u['name']} --password-stdin`\n")
    o.write(f"give roles with `chute role grant {u['name']} ROLE --project P`\n")
    return 0


def user_passwd_command(client: Client, name: str, *, password_stdin: bool = False, stdin: TextIO | None = None,
                        prompt: Prompt | None = None, out: TextIO | None = None) -> int:
    """Set a user's password (server admins); ends their browser sessions."""
    password = _read_password(from_stdin=password_stdin, stdin=stdin, prompt=prompt, confirm=True,
                              what=f"New password for {name}")
    if not password:
        raise ClientError("no password given; nothing was changed")
    client.request("PATCH", f"/api/v1/users/{quote(name, safe='')}", json={"password": password})
    _out(out).write(f"password of {name} changed; their browser sessions have ended\n")
    return 0


def user_list_command(client: Client, *, as_json: bool = False, out: TextIO | None = None) -> int:
    users = client.get("/api/v1/users")
    o = _out(out)
    if as_json:
        o.write(json.dumps(users, indent=2) + "\n")
        return 0
    for u in users:
        flags = [f for f, on in (("server admin", u["server_admin"]), ("disabled", u["disabled"]),
                                 ("password", u["has_password"])) if on]
        roles = "; ".join(f"{g['project']}: {g['role']}" + (f" ({', '.join(g['environments'])})"
                                                             if g["environments"] else "") for g in u["roles"])
        o.write(f"{u['name']:24} {', '.join(flags) or '-':36} {roles or 'no roles'}\n")
    return 0


def user_set_command(client: Client, name: str, *, admin: bool | None = None, disabled: bool | None = None,
                     out: TextIO | None = None) -> int:
    """Make or unmake a server admin, disable or enable a user (server admins)."""
    body = {k: v for k, v in (("server_admin", admin), ("disabled", disabled)) if v is not None}
    if not body:
        raise ClientError("nothing to change: give --admin/--no-admin or --disable/--enable")
    u = client.request("PATCH", f"/api/v1/users/{quote(name, safe='')}", json=body)
    _out(out).write(f"{u['name']}: server admin {'yes' if u['server_admin'] else 'no'}, "
                    f"{'disabled' if u['disabled'] else 'enabled'}\n")
    return 0


# ------------------------------------------------------------------ roles
def _roles_path(project: str) -> str:
    return f"/api/v1/projects/{quote(project, safe='')}/roles"


def role_grant_command(client: Client, user: str, role: str, project: str, *, environments: list[str] | None = None,
                       out: TextIO | None = None) -> int:
    b = client.post(_roles_path(project), {"user": user, "role": role, "environments": environments or []})
    envs = f" on {', '.join(b['environments'])}" if b["environments"] else (
        " on every environment" if b["role"] == "deployer" else "")
    _out(out).write(f"{b['user']} is {b['role']} of {project}{envs}\n")
    return 0


def role_revoke_command(client: Client, user: str, role: str, project: str, *,
                        environments: list[str] | None = None, out: TextIO | None = None) -> int:
    path = f"{_roles_path(project)}/{quote(user, safe='')}/{quote(role, safe='')}"
    left = client.request("DELETE", path, params=[("environment", e) for e in environments or []])
    if left:
        _out(out).write(f"{user} stays {role} of {project} on {', '.join(left['environments'])}\n")
    else:
        _out(out).write(f"{user} is no longer {role} of {project}\n")
    return 0


def role_list_command(client: Client, project: str, *, as_json: bool = False, out: TextIO | None = None) -> int:
    rows = client.get(_roles_path(project))
    o = _out(out)
    if as_json:
        o.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        o.write(f"nobody has a role on {project} (server admins may do everything)\n")
    for b in rows:
        envs = ", ".join(b["environments"]) if b["environments"] else ("all" if b["role"] == "deployer" else "")
        o.write(f"{b['user']:24} {b['role']:10} {envs:20} granted by {b['granted_by']} {_when(b['granted_at'])}"
                f"{'  (user disabled)' if b['disabled'] else ''}\n")
    return 0


# ------------------------------------------------------------------ tokens
def token_create_command(client: Client, name: str, *, scopes: list[str] | None = None, expires: str = "90d",
                         user: str | None = None, as_json: bool = False, out: TextIO | None = None,
                         err: TextIO | None = None) -> int:
    """Create a token; prints the token alone on stdout (``T=$(chute token create ci --scope run)``) and
    what it is on stderr. It is shown this once."""
    tok = client.post("/api/v1/tokens", {"name": name, "scopes": scopes or ["read"], "expires": expires,
                                         "user": user})
    o, e = _out(out), err or sys.stderr
    if as_json:
        o.write(json.dumps(tok, indent=2) + "\n")
        return 0
    o.write(tok["token"] + "\n")
    e.write(f"token {tok['name']!r} ({tok['hint']}) of {tok['user']}: scopes {', '.join(tok['scopes'])}, "
            f"expires {_when(tok['expires_at'])}. Keep it now: it is not shown again.\n")
    return 0


def token_list_command(client: Client, *, all_users: bool = False, user: str | None = None, as_json: bool = False,
                       out: TextIO | None = None) -> int:
    params: dict[str, Any] = {}
    if all_users:
        params["all"] = "true"
    if user:
        params["user"] = user
    rows = client.get("/api/v1/tokens", params=params)
    o = _out(out)
    if as_json:
        o.write(json.dumps(rows, indent=2) + "\n")
        return 0
    for t in rows:
        o.write(f"{t['id']:>5}  {t['hint']:18} {t['name'][:30]:30} {t['user'][:16]:16} {','.join(t['scopes']):22} "
                f"{t['status']:8} expires {_when(t['expires_at']):20} last used {_when(t['last_used_at'])}\n")
    if not rows:
        o.write("no tokens\n")
    return 0


def token_revoke_command(client: Client, key: str, *, out: TextIO | None = None) -> int:
    """Revoke a token by id or prefix (``chute_<prefix>_…`` as `chute token list` shows it)."""
    t = client.request("DELETE", f"/api/v1/tokens/{quote(key, safe='')}")
    _out(out).write(f"token {t['id']} {t['name']!r} ({t['hint']}) of {t['user']} revoked\n")
    return 0
