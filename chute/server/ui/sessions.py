"""Browser sessions for the UI: a signed cookie naming a server-side session, CSRF tokens, login methods.

The cookie (``chute_session``: HttpOnly, SameSite=Lax, Secure behind https) holds only
a random session id, signed with a server key (itsdangerous). Once logged in, the
session is a row in ``login_sessions`` (the id's SHA-256, the user, how they proved it,
when it started and was last seen). It ends at logout, after ``session_idle`` seconds
without a request, ``session_max_age`` seconds after login, or as soon as its proof
fails (the API token it was opened with is revoked, the user is disabled or gets a new
password). Every request rebuilds the user's identity, so a role granted or revoked
applies at once.

CSRF: every form carries ``HMAC(key, session id)``; a POST is accepted only if the
token matches the session the cookie names. Logging in starts a new session id, so a
token planted before login is useless after it.

Login methods (see docs/security.md, "Plugging in a login method"):

- :class:`LoginMethod`: a form (local users with passwords, API tokens);
- :class:`RedirectLoginMethod`: a login at an identity provider, e.g. OpenID Connect's
  authorization-code flow: ``start`` gives the provider's URL to send the browser to,
  ``finish`` turns the callback's parameters into a chute user.

Both map the person to a chute user and re-check them on every request (``identity``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from chute.store import LoginSession, Token, ledger, utcnow

from .. import access
from ..access import Identity, Policy
from ..auth import token_identity, valid_token_row

SESSION_COOKIE = "chute_session"
KEY_FILE = "ui-session-key"
TOUCH_EVERY = timedelta(seconds=60)  # "last seen" is written at most this often (or a quarter of the idle time)


def session_key(home: Path) -> bytes:
    """``$CHUTE_SESSION_KEY``, else a random key kept in ``$CHUTE_HOME/ui-session-key`` (0600).

    Servers that share a database behind one address must share this key.
    """
    env = os.environ.get("CHUTE_SESSION_KEY")
    if env:
        return env.encode()
    home.mkdir(parents=True, exist_ok=True)
    path = home / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


# ------------------------------------------------------------------ login methods
@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: str = "text"  # the <input type>
    help: str = ""
    autocomplete: str = "off"


@dataclass(frozen=True)
class Proof:
    """Who logged in, and what to re-check on each request (e.g. the token's id)."""

    user: str
    ref: str = ""  # method-specific: the token id for "token"


@dataclass
class LoginFailed:
    """Why a login did not work (returned, not raised, so that its ledger event is committed)."""

    message: str
    status: int = 401
    retry_after: int = 0


@dataclass
class LoginContext:
    state: Any  # the server's State (database, settings, the failed-login throttle)
    address: str  # the client's address, for slowing down guessing


class LoginMethod(Protocol):
    """A login form: ``fields`` are shown; ``authenticate`` checks what was typed."""

    key: str
    title: str
    fields: tuple[FormField, ...]

    def authenticate(self, s: Session, form: Mapping[str, str], ctx: LoginContext) -> Proof | LoginFailed: ...

    def identity(self, s: Session, proof: Proof, policy: Policy) -> Identity | None:
        """Who the proof stands for now; None ends the session."""
        ...


class RedirectLoginMethod(Protocol):
    """A login at an identity provider (OpenID Connect authorization-code flow, or similar).

    ``start`` returns the provider's authorization URL for the browser (with ``state``,
    ``nonce`` and the PKCE challenge of ``code_verifier``); the provider sends the browser
    back to ``redirect_uri`` (``/login/<key>/callback``), where the UI checks ``state``
    and calls ``finish`` with the query parameters; ``finish`` exchanges the code, checks
    the ID token (signature, issuer, audience, expiry, nonce) and maps its claims to a
    chute user (creating one on first login if the method allows).
    """

    key: str
    title: str

    def start(self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str: ...

    def finish(self, s: Session, params: Mapping[str, str], *, redirect_uri: str, nonce: str,
               code_verifier: str, address: str = "") -> Proof | LoginFailed: ...

    def identity(self, s: Session, proof: Proof, policy: Policy) -> Identity | None: ...


class PasswordLogin:
    """Local users with passwords (argon2id), slowed down after failed attempts."""

    key = "password"
    title = "User name and password"
    fields = (FormField("user", "User name", "text", autocomplete="username"),
              FormField("password", "Password", "password", autocomplete="current-password"))

    def authenticate(self, s: Session, form: Mapping[str, str], ctx: LoginContext) -> Proof | LoginFailed:
        name = (form.get("user") or "").strip()
        result = access.password_login(s, ctx.state, name, form.get("password") or "", address=ctx.address, via="ui")
        if result.user is None:
            assert result.error is not None
            return LoginFailed(result.error.message, result.error.status, result.retry_after)
        return Proof(result.user.name)

    def identity(self, s: Session, proof: Proof, policy: Policy) -> Identity | None:
        u = access.get_user(s, proof.user)
        return access.identity_for(s, u, access.ALL_USER_SCOPES, policy) if u is not None else None


class TokenLogin:
    """Log in with a chute API token (e.g. the admin token in ``$CHUTE_HOME/admin-token``)."""

    key = "token"
    title = "API token"
    fields = (FormField("token", "API token", "password",
                        "A chute API token (chute_…). The admin token is in $CHUTE_HOME/admin-token."),)

    def authenticate(self, s: Session, form: Mapping[str, str], ctx: LoginContext) -> Proof | LoginFailed:
        throttle = access.throttle_of(ctx.state)
        wait = throttle.wait("", ctx.address)
        if wait > 0:
            return LoginFailed(f"too many failed logins from {ctx.address}; try again in {int(wait) + 1} s", 429,
                               int(wait) + 1)
        tok = valid_token_row(s, (form.get("token") or "").strip())
        who = token_identity(s, tok) if tok is not None else None
        if tok is None or who is None:
            throttle.failed("", ctx.address)
            access.record_login(s, user=None, method=self.key, via="ui", ok=False, address=ctx.address)
            return LoginFailed("That token is not valid (unknown, revoked or expired). "
                               "Check that you pasted the whole token, starting with chute_.")
        access.record_login(s, user=access.get_user(s, tok.user), method=self.key, via="ui", ok=True,
                            address=ctx.address)
        return Proof(tok.user, str(tok.id))

    def identity(self, s: Session, proof: Proof, policy: Policy) -> Identity | None:
        if not proof.ref.isdigit():
            return None
        tok = s.get(Token, int(proof.ref))
        if tok is None or tok.user != proof.user:
            return None
        return token_identity(s, tok, policy)


# The defaults; each app's SessionManager holds its own (install() adds OIDC when configured).
LOGIN_METHODS: dict[str, LoginMethod] = {m.key: m for m in (PasswordLogin(), TokenLogin())}
REDIRECT_METHODS: dict[str, RedirectLoginMethod] = {}


# ------------------------------------------------------------------ sessions
@dataclass
class UISession:
    sid: str
    key: bytes
    identity: Identity | None = None
    method: str = ""
    policy: Policy = field(default_factory=Policy)
    new: bool = False  # no valid cookie came with the request
    needs_cookie: bool = False  # a form was rendered for a session the browser does not hold yet
    expired: str = ""  # why the session the cookie named has ended (idle, expired, ...)
    pending: dict[str, Any] = field(default_factory=dict)  # a redirect login under way (state, nonce, ...)

    @property
    def logged_in(self) -> bool:
        return self.identity is not None

    @property
    def user(self) -> str:
        """The ledger's actor for what this session does: the user (the session is the credential)."""
        return self.identity.user if self.identity else ""

    @property
    def who(self) -> Identity:
        return self.identity if self.identity is not None else access.anonymous(self.policy)

    def can(self, permission: str, project: str | None = None, environment: str | None = None) -> bool:
        return access.check(self.who, permission, project, environment) is None

    def needs(self, permission: str, project: str | None = None, environment: str | None = None) -> str:
        """A few words on why a button is disabled ("" when it is not)."""
        denial = access.check(self.who, permission, project, environment)
        return denial.short() if denial is not None else ""

    def csrf(self) -> str:
        """The CSRF token for forms on this page (binds them to this session)."""
        if self.new:
            self.needs_cookie = True
        return hmac.new(self.key, b"csrf:" + self.sid.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, token: str | None) -> bool:
        if self.new or not token:
            return False
        return hmac.compare_digest(self.csrf(), token)


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionManager:
    def __init__(self, key: bytes, *, secure: bool = False, idle: float = 2 * 3600.0,
                 max_age: float = 12 * 3600.0, policy: Policy | None = None,
                 methods: dict[str, LoginMethod] | None = None,
                 redirects: dict[str, RedirectLoginMethod] | None = None) -> None:
        self.key = key
        self.methods = dict(LOGIN_METHODS if methods is None else methods)
        self.redirects = dict(REDIRECT_METHODS if redirects is None else redirects)
        self.secure = secure
        self.idle = timedelta(seconds=idle)
        self.max_age = timedelta(seconds=max_age)
        self.policy = policy or Policy()
        self.touch_every = min(TOUCH_EVERY, self.idle / 4)
        self.serializer = URLSafeTimedSerializer(key, salt="chute.ui.session")

    def method_for(self, key: str) -> LoginMethod | RedirectLoginMethod | None:
        return self.methods.get(key) or self.redirects.get(key)

    def anonymous(self, expired: str = "") -> UISession:
        sess = UISession(secrets.token_urlsafe(18), self.key, policy=self.policy, new=True, expired=expired)
        sess.needs_cookie = bool(expired)  # replace the cookie of the session that ended
        return sess

    def load(self, request: Request, db_session_factory: Any) -> UISession:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return self.anonymous()
        try:
            data = self.serializer.loads(raw, max_age=int(self.max_age.total_seconds()) + 60)
        except BadSignature:  # also SignatureExpired
            return self.anonymous()
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return self.anonymous()
        pending = data.get("p") if isinstance(data.get("p"), dict) else {}
        if not data.get("li"):
            return UISession(data["sid"], self.key, policy=self.policy, pending=pending)
        with db_session_factory() as s:
            return self._logged_in(s, data["sid"])

    def _logged_in(self, s: Session, sid: str) -> UISession:
        row = s.scalars(select(LoginSession).where(LoginSession.sid_hash == _sid_hash(sid))).first()
        if row is None:
            return self.anonymous("ended")
        if row.ended_at is not None:
            return self.anonymous(row.end_reason or "ended")
        now = utcnow()
        reason = ("expired" if now - row.created_at > self.max_age
                  else "idle" if now - row.last_seen_at > self.idle else "")
        method = self.method_for(row.method)
        who = method.identity(s, Proof(row.user, row.proof_ref), self.policy) if method and not reason else None
        if who is None:
            row.ended_at, row.end_reason = now, reason or "revoked"
            return self.anonymous(row.end_reason)
        if now - row.last_seen_at > self.touch_every:
            row.last_seen_at = now
        return UISession(sid, self.key, identity=who, method=row.method, policy=self.policy)

    def login(self, s: Session, method_key: str, proof: Proof, address: str) -> UISession:
        """A fresh session (new id, so CSRF tokens from before the login are void), stored in ``s``."""
        sid = secrets.token_urlsafe(24)
        s.add(LoginSession(sid_hash=_sid_hash(sid), user=proof.user, method=method_key, proof_ref=proof.ref,
                           address=address[:100]))
        method = self.method_for(method_key)
        who = method.identity(s, proof, self.policy) if method else None
        return UISession(sid, self.key, identity=who, method=method_key, policy=self.policy, new=False,
                         needs_cookie=True)

    def logout(self, s: Session, sess: UISession) -> None:
        row = s.scalars(select(LoginSession).where(LoginSession.sid_hash == _sid_hash(sess.sid))).first()
        if row is not None and row.ended_at is None:
            row.ended_at, row.end_reason = utcnow(), "logout"
            ledger.record(s, "user.logout", actor=row.user, data={"method": row.method})

    def dump(self, sess: UISession) -> str:
        data: dict[str, Any] = {"sid": sess.sid}
        if sess.identity is not None:
            data["li"] = 1
        elif sess.pending:
            data["p"] = sess.pending
        return self.serializer.dumps(data)

    def set_cookie(self, response: Response, sess: UISession) -> None:
        response.set_cookie(SESSION_COOKIE, self.dump(sess), max_age=int(self.max_age.total_seconds()), path="/",
                            httponly=True, samesite="lax", secure=self.secure)

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure)
