"""Access: log in for a token, who am I, users, roles per project, API tokens.

Every change here is checked by ``access.require`` and written to the ledger with who did
it (``user.created``, ``user.updated``, ``role.granted``, ``role.revoked``,
``token.created``, ``token.revoked``, ``user.login``). Secrets are never echoed back,
except a new token's text, once, in the answer that creates it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Token, User

from .. import access, services
from ..access import Identity
from ..auth import create_token, find_token, revoke_token, token_out
from .deps import caller, get_state, identity
from .schemas import errors

router = APIRouter(prefix="/api/v1", tags=["access"], responses=errors(400, 401, 403, 404, 409, 422, 429))


# ------------------------------------------------------------------ bodies
class LoginIn(BaseModel):
    user: str = Field(..., max_length=200)
    password: str = Field(..., max_length=access.MAX_PASSWORD)
    token_name: str = Field("", max_length=100, description="Name of the token to create (default: `login`)")
    expires: str = Field("30d", description="How long the token lives: 30d, 12h, 2w, ... or `never`")


class TokenIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=lambda: ["read"],
                              description="read, run, deploy, admin, agent (intersected with the user's roles)")
    expires: str = Field("90d", description="30d, 12h, 2w, 1y, ... or `never`")
    user: str | None = Field(None, description="Whose token (server admins only; default: yours)")


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    hint: str = Field(description="How the token starts: chute_<prefix>_…")
    user: str
    scopes: list[str]
    status: str = Field(description="active | expired | revoked")
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself: shown this once, only its hash is kept")


class UserIn(BaseModel):
    name: str = Field(..., max_length=200)
    password: str | None = Field(None, max_length=access.MAX_PASSWORD,
                                 description="None: the user cannot log in with a password (tokens or SSO only)")
    server_admin: bool = False
    display_name: str = Field("", max_length=200)
    email: str = Field("", max_length=300)


class UserPatch(BaseModel):
    password: str | None = Field(None, max_length=access.MAX_PASSWORD)
    server_admin: bool | None = None
    disabled: bool | None = Field(None, description="A disabled user cannot log in; their tokens stop working")


class PasswordIn(BaseModel):
    current_password: str = Field(..., max_length=access.MAX_PASSWORD)
    new_password: str = Field(..., max_length=access.MAX_PASSWORD)


class UserOut(BaseModel):
    name: str
    display_name: str
    email: str
    server_admin: bool
    source: str
    has_password: bool
    disabled: bool
    created_at: datetime
    created_by: str
    last_login_at: datetime | None
    roles: list[dict[str, Any]] = Field(default_factory=list, description="project, role, environments")


class RoleIn(BaseModel):
    user: str
    role: str = Field(description="viewer | developer | deployer | admin")
    environments: list[str] = Field(default_factory=list,
                                    description="deployer only: these environments (none: every environment)")


class RoleOut(BaseModel):
    user: str
    role: str
    environments: list[str]
    granted_by: str
    granted_at: datetime
    disabled: bool = Field(description="The user is disabled (the binding stays, but does nothing)")


class WhoAmI(BaseModel):
    user: str
    authenticated: bool
    server_admin: bool
    scopes: list[str]
    token: dict[str, Any] | None
    roles: list[dict[str, Any]]
    anonymous_read: bool
    self_service: bool


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _user_out(s: Session, u: User) -> UserOut:
    grants = access.grants_of(s, u.id)
    return UserOut(**access.user_out(u), roles=[{"project": g.project, "role": g.role,
                                                 "environments": list(g.environments)} for g in grants])


# ------------------------------------------------------------------ login, whoami
@router.post("/login", response_model=TokenCreated, status_code=201,
             responses={401: {"description": "Wrong user name or password"},
                        429: {"description": "Too many failed logins: wait (Retry-After)"}})
def login(body: LoginIn, request: Request, state=Depends(get_state)) -> TokenCreated:  # type: ignore[no-untyped-def]
    """Log in with a user name and password; answers with a new API token (what `chute login` stores).
    Repeated failures for a user from one address are slowed down."""
    expires_at = access.expiry(body.expires)
    with state.db.session() as s:
        result = access.password_login(s, state, body.user, body.password, address=_address(request), via="api")
        if result.user is not None:
            tok, text = create_token(s, body.token_name.strip() or "login", user=result.user.name,
                                     scopes=list(access.ALL_USER_SCOPES), expires_at=expires_at,
                                     actor=result.user.name)
            out = TokenCreated(**token_out(tok), token=text)
    if result.error is not None:  # after the commit: the failure stays in the ledger
        headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
        raise HTTPException(result.error.status, result.error.message, headers=headers)
    return out


@router.post("/logout", status_code=204)
def logout(who: Identity = Depends(identity), state=Depends(get_state)) -> Response:
    """Revoke the token this call came with."""
    with state.db.session() as s:
        if who.token_id is not None:
            tok = s.get(Token, who.token_id)
            if tok is not None:
                revoke_token(s, tok, actor=who.actor)
        return Response(status_code=204)


@router.get("/whoami", response_model=WhoAmI)
def whoami(who: Identity = Depends(caller)) -> WhoAmI:
    """Who the token (or no token) stands for: user, scopes, server admin, roles per project."""
    return WhoAmI(user=who.user, authenticated=who.authenticated, server_admin=who.server_admin,
                  scopes=list(who.scopes),
                  token={"id": who.token_id, "name": who.token_name} if who.token_id is not None else None,
                  roles=[{"project": g.project, "role": g.role, "environments": list(g.environments)}
                         for g in who.grants],
                  anonymous_read=who.policy.anonymous_read, self_service=who.policy.self_service)


# ------------------------------------------------------------------ users
@router.get("/users", response_model=list[UserOut])
def list_users(who: Identity = Depends(identity), state=Depends(get_state)) -> list[UserOut]:
    with state.db.session() as s:
        access.require(who, access.MANAGE_USERS, session=s)
        return [_user_out(s, u) for u in s.scalars(select(User).order_by(User.name))]


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserIn, who: Identity = Depends(identity), state=Depends(get_state)) -> UserOut:
    """Create a user (server admins). Without a password the user logs in only with SSO or tokens."""
    with state.db.session() as s:
        access.require(who, access.MANAGE_USERS, session=s)
        u = access.create_user(s, body.name, password=body.password, server_admin=body.server_admin, actor=who.actor,
                               display_name=body.display_name, email=body.email)
        return _user_out(s, u)


@router.get("/users/{name}", response_model=UserOut)
def get_user(name: str, who: Identity = Depends(identity), state=Depends(get_state)) -> UserOut:
    """A user and their roles: yourself, or anyone for server admins."""
    with state.db.session() as s:
        if access.normalise_name(name) not in (who.user, "me"):
            access.require(who, access.MANAGE_USERS, session=s)
        return _user_out(s, access.user_or_404(s, who.user if name == "me" else name))


@router.patch("/users/{name}", response_model=UserOut)
def change_user(name: str, body: UserPatch, who: Identity = Depends(identity),
                state=Depends(get_state)) -> UserOut:
    """Set a password, make or unmake a server admin, disable or enable (server admins)."""
    with state.db.session() as s:
        access.require(who, access.MANAGE_USERS, session=s)
        u = access.user_or_404(s, name)
        if u.name == who.user and (body.server_admin is False or body.disabled):
            raise services.ServiceError("you cannot demote or disable yourself", 400, "ask another server admin")
        access.update_user(s, u, actor=who.actor, password=body.password, server_admin=body.server_admin,
                           disabled=body.disabled)
        return _user_out(s, u)


@router.post("/users/me/password", status_code=204)
def change_own_password(body: PasswordIn, request: Request, who: Identity = Depends(identity),
                        state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    """Change your own password (needs the current one); ends your other browser sessions."""
    with state.db.session() as s:
        access.require(who, access.OWN_TOKENS, session=s)
        result = access.password_login(s, state, who.user, body.current_password, address=_address(request),
                                       via="password-change")
        if result.user is not None:
            access.update_user(s, result.user, actor=who.actor, password=body.new_password)
    if result.error is not None:
        raise HTTPException(result.error.status if result.error.status == 429 else 403,
                            "the current password is not right" if result.error.status == 401
                            else result.error.message)
    return Response(status_code=204)


# ------------------------------------------------------------------ roles
@router.get("/projects/{name}/roles", response_model=list[RoleOut])
def list_roles(name: str, who: Identity = Depends(caller), state=Depends(get_state)) -> list[RoleOut]:
    """Who holds which role on the project (anyone who may read the project may see it)."""
    with state.db.session() as s:
        access.require(who, access.READ, name, session=s)
        services.get_project(s, name)
        return [RoleOut(**access.binding_out(b)) for b in access.bindings(s, name)]


@router.post("/projects/{name}/roles", response_model=RoleOut, status_code=201)
def grant(name: str, body: RoleIn, who: Identity = Depends(identity), state=Depends(get_state)) -> RoleOut:
    """Grant a role (project admins and server admins); a deployer may be limited to environments."""
    with state.db.session() as s:
        access.require(who, access.PROJECT_ADMIN, name, session=s)
        p = services.get_project(s, name)
        b = access.grant_role(s, p, access.user_or_404(s, body.user), body.role, body.environments, actor=who.actor)
        return RoleOut(**access.binding_out(b))


@router.delete("/projects/{name}/roles/{user}/{role}", response_model=RoleOut | None)
def revoke(name: str, user: str, role: str, environment: list[str] = Query(default_factory=list),
           who: Identity = Depends(identity), state=Depends(get_state)) -> RoleOut | None:
    """Revoke a role, or (``?environment=E``) some environments of a deployer; answers what remains."""
    with state.db.session() as s:
        access.require(who, access.PROJECT_ADMIN, name, session=s)
        p = services.get_project(s, name)
        b = access.revoke_role(s, p, access.user_or_404(s, user), role, environment, actor=who.actor)
        return RoleOut(**access.binding_out(b)) if b is not None else None


# ------------------------------------------------------------------ tokens
@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(user: str | None = None, all: bool = False, who: Identity = Depends(identity),
                state=Depends(get_state)) -> list[TokenOut]:
    """Your tokens (never their text); server admins: ``?user=NAME`` or ``?all=true``."""
    with state.db.session() as s:
        access.require(who, access.OWN_TOKENS, session=s)
        q = select(Token).order_by(Token.id)
        if all or (user and access.normalise_name(user) != who.user):
            access.require(who, access.MANAGE_USERS, session=s)
            if user:
                q = q.where(Token.user == access.normalise_name(user))
        else:
            q = q.where(Token.user == who.user)
        return [TokenOut(**token_out(t)) for t in s.scalars(q)]


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def new_token(body: TokenIn, who: Identity = Depends(identity), state=Depends(get_state)) -> TokenCreated:
    """Create a token (its text is in this answer only). Server admins may create one for another user."""
    with state.db.session() as s:
        access.require(who, access.OWN_TOKENS, session=s)
        owner = who.user
        if body.user and access.normalise_name(body.user) != who.user:
            access.require(who, access.MANAGE_USERS, session=s)
            owner = access.normalise_name(body.user)
        tok, text = create_token(s, body.name, user=owner, scopes=body.scopes, expires_at=access.expiry(body.expires),
                                 actor=who.actor)
        return TokenCreated(**token_out(tok), token=text)


@router.delete("/tokens/{key}", response_model=TokenOut)
def delete_token(key: str, who: Identity = Depends(identity), state=Depends(get_state)) -> TokenOut:
    """Revoke a token by id or prefix: your own, or anyone's for server admins."""
    with state.db.session() as s:
        access.require(who, access.OWN_TOKENS, session=s)
        tok = find_token(s, key)
        if tok is not None and tok.user != who.user and not who.allows(access.MANAGE_USERS):
            tok = None  # someone else's: not even whether it exists
        if tok is None:
            raise services.ServiceError(f"you have no token {key!r}", 404, "`chute token list` shows your tokens")
        revoke_token(s, tok, actor=who.actor)
        return TokenOut(**token_out(tok))
