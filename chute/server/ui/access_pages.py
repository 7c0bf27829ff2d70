"""UI pages for access: your account (tokens, password), a project's roles, users (server admins).

Each form action is a POST with the session's CSRF token, checked with the same
``access.require`` as the REST API (``/api/v1/tokens``, ``/api/v1/projects/{p}/roles``,
``/api/v1/users``), and calls the same functions, so the ledger records the same events.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from chute.store import Token, User

from .. import access, deploys, services
from ..auth import create_token, revoke_token, token_out
from .routes import (
    UIError,
    _project,
    _state,
    guard,
    here,
    login_url,
    page,
    redirect,
    require_login,
    service_errors,
    session_of,
)
from .sessions import UISession

router = APIRouter(include_in_schema=False)

EXPIRY_CHOICES = (("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"), ("1y", "1 year"), ("never", "never"))
SCOPE_HELP = {
    "read": "read projects, runs and logs",
    "run": "trigger, rerun and cancel runs",
    "deploy": "deploy, roll back, override freezes",
    "admin": "everything you may do (roles, tokens, settings)",
    "agent": "run jobs as an agent (server admins only)",
}


# ------------------------------------------------------------------ your account
def _account(request: Request, sess: UISession, status: int = 200, *, created: dict[str, Any] | None = None,
             error: str | None = None, notice: str | None = None) -> Response:
    with _state(request).db.session() as s:
        u = access.get_user(s, sess.user)
        tokens = [token_out(t) for t in s.scalars(select(Token).where(Token.user == sess.user)
                                                  .order_by(Token.id.desc()))]
        return page(request, sess, "account.html", status, account=access.user_out(u) if u else None,
                    grants=sess.who.grants, tokens=tokens, created=created, error=error, notice=notice,
                    scopes=[(k, SCOPE_HELP[k]) for k in access.SCOPES], expiries=EXPIRY_CHOICES)


@router.get("/account")
def account_page(request: Request) -> Response:
    """Who you are, your roles, your API tokens (create shows the token once; revoke), your password."""
    sess = session_of(request)
    if not sess.logged_in:
        return redirect(login_url(here(request)))
    return _account(request, sess)


@router.post("/account/tokens")
async def create_token_action(request: Request) -> Response:
    form = await request.form()
    scopes = [v for v in form.getlist("scopes") if isinstance(v, str)]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_create_token, request, fields, scopes)


def _create_token(request: Request, fields: dict[str, str], scopes: list[str]) -> Response:
    sess = require_login(request, fields.get("csrf", ""))
    state = _state(request)
    try:
        with state.db.session() as s:
            guard(request, sess, access.OWN_TOKENS, s=s, back="/account")
            tok, text = create_token(s, fields.get("name", ""), user=sess.user, scopes=scopes,
                                     expires_at=access.expiry(fields.get("expires", "90d")), actor=sess.user)
            created = {**token_out(tok), "token": text}
    except services.ServiceError as err:
        return _account(request, sess, err.status, error=err.message + (f" ({err.hint})" if err.hint else ""))
    return _account(request, sess, 201, created=created)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token_action(request: Request, token_id: int, csrf: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    with service_errors("/account"), _state(request).db.session() as s:
        guard(request, sess, access.OWN_TOKENS, s=s, back="/account")
        tok = s.get(Token, token_id)
        if tok is None or tok.user != sess.user:
            raise services.ServiceError(f"you have no token {token_id}", 404)
        revoke_token(s, tok, actor=sess.user)
    return redirect("/account")


@router.post("/account/password")
def password_action(request: Request, csrf: str = Form(""), current_password: str = Form(""),
                    new_password: str = Form(""), repeat_password: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    state = _state(request)
    if new_password != repeat_password:
        return _account(request, sess, 400, error="The new passwords differ; nothing was changed.")
    error: services.ServiceError | None = None
    with state.db.session() as s:
        guard(request, sess, access.OWN_TOKENS, s=s, back="/account")
        result = access.password_login(s, state, sess.user, current_password,
                                       address=request.client.host if request.client else "unknown",
                                       via="password-change")
        if result.user is None:
            error = result.error
        else:
            try:
                access.update_user(s, result.user, actor=sess.user, password=new_password)
            except services.ServiceError as err:
                error = err
    if error is not None:
        msg = "The current password is not right." if error.status == 401 else error.message
        return _account(request, sess, 403 if error.status == 401 else error.status, error=msg)
    # A new password ends every session of the user, this one too.
    resp = redirect(login_url("/account"))
    _ui_sessions(request).clear_cookie(resp)
    return resp


def _ui_sessions(request: Request) -> Any:
    return request.app.state.chute_ui.sessions


# ------------------------------------------------------------------ a project's roles
def _roles_page(request: Request, sess: UISession, name: str, status: int = 200, error: str | None = None) -> Response:
    state = _state(request)
    with state.db.session() as s:
        guard(request, sess, access.READ, name, s=s)
        p = _project(s, name)
        envs = [r.name for r in deploys.environment_rows(s, p.id)]
        rows = [access.binding_out(b) for b in access.bindings(s, p.name)]
        users = list(s.scalars(select(User.name).where(User.disabled_at.is_(None)).order_by(User.name))) \
            if sess.can(access.PROJECT_ADMIN, p.name) else []
        return page(request, sess, "access.html", status, project=p, bindings=rows, environments=envs,
                    roles=access.ROLES, users=users, error=error)


@router.get("/projects/{name}/access")
def roles_page(request: Request, name: str) -> Response:
    """Who holds which role on the project; project admins grant and revoke here."""
    return _roles_page(request, session_of(request), name)


@router.post("/projects/{name}/access/grant")
async def grant_action(request: Request, name: str) -> Response:
    form = await request.form()
    envs = [v for v in form.getlist("environments") if isinstance(v, str)]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_grant, request, name, fields, envs)


def _grant(request: Request, name: str, fields: dict[str, str], envs: list[str]) -> Response:
    sess = require_login(request, fields.get("csrf", ""))
    back = f"/projects/{quote(name, safe='')}/access"
    try:
        with _state(request).db.session() as s:
            guard(request, sess, access.PROJECT_ADMIN, name, s=s, back=back)
            p = _project(s, name)
            access.grant_role(s, p, access.user_or_404(s, fields.get("user", "")), fields.get("role", ""), envs,
                              actor=sess.user)
    except services.ServiceError as err:
        return _roles_page(request, sess, name, err.status, error=err.message + (f" ({err.hint})" if err.hint else ""))
    return redirect(back)


@router.post("/projects/{name}/access/revoke")
async def revoke_action(request: Request, name: str) -> Response:
    form = await request.form()
    envs = [v for v in form.getlist("environments") if isinstance(v, str)]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_revoke, request, name, fields, envs)


def _revoke(request: Request, name: str, fields: dict[str, str], envs: list[str]) -> Response:
    sess = require_login(request, fields.get("csrf", ""))
    back = f"/projects/{quote(name, safe='')}/access"
    with service_errors(back), _state(request).db.session() as s:
        guard(request, sess, access.PROJECT_ADMIN, name, s=s, back=back)
        p = _project(s, name)
        access.revoke_role(s, p, access.user_or_404(s, fields.get("user", "")), fields.get("role", ""), envs,
                           actor=sess.user)
    return redirect(back)


# ------------------------------------------------------------------ users (server admins)
def _users_page(request: Request, sess: UISession, status: int = 200, error: str | None = None,
                notice: str | None = None) -> Response:
    with _state(request).db.session() as s:
        guard(request, sess, access.MANAGE_USERS, s=s)
        users = [(access.user_out(u), access.grants_of(s, u.id)) for u in s.scalars(select(User).order_by(User.name))]
        return page(request, sess, "users.html", status, users=users, error=error, notice=notice)


@router.get("/users")
def users_page(request: Request) -> Response:
    sess = session_of(request)
    if not sess.logged_in:
        return redirect(login_url(here(request)))
    return _users_page(request, sess)


@router.post("/users")
def add_user_action(request: Request, csrf: str = Form(""), name: str = Form(""), password: str = Form(""),
                    server_admin: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    try:
        with _state(request).db.session() as s:
            guard(request, sess, access.MANAGE_USERS, s=s, back="/users")
            u = access.create_user(s, name, password=password or None, server_admin=server_admin == "1",
                                   actor=sess.user)
            created = u.name
    except services.ServiceError as err:
        return _users_page(request, sess, err.status, error=err.message + (f" ({err.hint})" if err.hint else ""))
    return _users_page(request, sess, 201, notice=f"User {created} created.")


@router.post("/users/{name}")
def change_user_action(request: Request, name: str, csrf: str = Form(""), action: str = Form(""),
                       password: str = Form("")) -> Response:
    """One change per form: admin / unadmin / disable / enable / password."""
    sess = require_login(request, csrf)
    changes: dict[str, Any] = {"admin": {"server_admin": True}, "unadmin": {"server_admin": False},
                               "disable": {"disabled": True}, "enable": {"disabled": False},
                               "password": {"password": password}}.get(action, {})
    if not changes:
        raise UIError(400, "Unknown change", f"{action!r} is not a change this page makes.", "", [("/users", "Users")])
    try:
        with _state(request).db.session() as s:
            guard(request, sess, access.MANAGE_USERS, s=s, back="/users")
            u = access.user_or_404(s, name)
            if u.name == sess.user and action in ("unadmin", "disable"):
                raise services.ServiceError("you cannot demote or disable yourself", 400, "ask another server admin")
            access.update_user(s, u, actor=sess.user, **changes)
    except services.ServiceError as err:
        return _users_page(request, sess, err.status, error=err.message + (f" ({err.hint})" if err.hint else ""))
    return redirect("/users")
