"""Browser sessions for the UI: a signed cookie, CSRF tokens bound to it, and login methods.

The cookie (``chute_session``: HttpOnly, SameSite=Lax, Secure behind https) holds
a random session id and, once logged in, who the user is and how they proved it;
it is signed with a server key (itsdangerous) and expires after
``SESSION_MAX_AGE``. Every request re-checks the proof (today: the API token is
still valid), so revoking a token also ends the sessions opened with it.

CSRF: every form carries ``HMAC(key, session id)``; a POST is accepted only if
the token matches the session the cookie names. Logging in starts a new session
id, so a token planted before login is useless after it.

Login methods sit behind :class:`LoginMethod`: today an API token; local users
with passwords or OIDC are further implementations added to ``LOGIN_METHODS``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from chute.store import Token, utcnow

from ..auth import Identity, check_token

SESSION_COOKIE = "chute_session"
SESSION_MAX_AGE = 12 * 3600
KEY_FILE = "ui-session-key"


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
    """Who logged in, and what to re-check on each request (e.g. the token row)."""

    identity: Identity
    ref: str = ""  # method-specific: the token id for "token"


class LoginMethod(Protocol):
    key: str
    title: str
    fields: tuple[FormField, ...]

    def authenticate(self, s: Session, form: Mapping[str, str]) -> Proof | None: ...

    def still_valid(self, s: Session, proof: Proof) -> Identity | None: ...


class TokenLogin:
    """Log in with a chute API token (e.g. the admin token in ``$CHUTE_HOME/admin-token``)."""

    key = "token"
    title = "API token"
    fields = (FormField("token", "API token", "password",
                        "A chute API token (chute_…). The admin token is in $CHUTE_HOME/admin-token."),)

    def authenticate(self, s: Session, form: Mapping[str, str]) -> Proof | None:
        who = check_token(s, (form.get("token") or "").strip())
        if who is None:
            return None
        return Proof(who, str(who.token_id or ""))

    def still_valid(self, s: Session, proof: Proof) -> Identity | None:
        if not proof.ref.isdigit():
            return None
        tok = s.get(Token, int(proof.ref))
        if tok is None or tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= utcnow()):
            return None
        return Identity(tok.user, tuple(tok.scopes), tok.id)


LOGIN_METHODS: dict[str, LoginMethod] = {m.key: m for m in (TokenLogin(),)}


# ------------------------------------------------------------------ sessions
@dataclass
class UISession:
    sid: str
    key: bytes
    identity: Identity | None = None
    method: str = ""
    proof_ref: str = ""
    new: bool = False  # no valid cookie came with the request
    needs_cookie: bool = False  # a form was rendered for a session the browser does not hold yet

    @property
    def logged_in(self) -> bool:
        return self.identity is not None

    @property
    def user(self) -> str:
        return self.identity.user if self.identity else ""

    def csrf(self) -> str:
        """The CSRF token for forms on this page (binds them to this session)."""
        if self.new:
            self.needs_cookie = True
        return hmac.new(self.key, b"csrf:" + self.sid.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, token: str | None) -> bool:
        if self.new or not token:
            return False
        return hmac.compare_digest(self.csrf(), token)


class SessionManager:
    def __init__(self, key: bytes, *, secure: bool = False) -> None:
        self.key = key
        self.secure = secure
        self.serializer = URLSafeTimedSerializer(key, salt="chute.ui.session")

    def anonymous(self) -> UISession:
        return UISession(secrets.token_urlsafe(18), self.key, new=True)

    def load(self, request: Request, db_session_factory: Any) -> UISession:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return self.anonymous()
        try:
            data = self.serializer.loads(raw, max_age=SESSION_MAX_AGE)
        except BadSignature:  # also SignatureExpired
            return self.anonymous()
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return self.anonymous()
        sess = UISession(data["sid"], self.key)
        method = LOGIN_METHODS.get(str(data.get("m", "")))
        if method is not None and data.get("u"):
            proof = Proof(Identity(str(data["u"]), tuple(data.get("sc") or ())), str(data.get("r", "")))
            with db_session_factory() as s:
                who = method.still_valid(s, proof)
            if who is not None:
                sess.identity, sess.method, sess.proof_ref = who, method.key, proof.ref
            else:  # the proof was revoked: the session is over, start an anonymous one
                return self.anonymous()
        return sess

    def login(self, method: LoginMethod, proof: Proof) -> UISession:
        """A fresh session (new id, so CSRF tokens from before the login are void)."""
        return UISession(secrets.token_urlsafe(18), self.key, identity=proof.identity, method=method.key,
                         proof_ref=proof.ref, new=False, needs_cookie=True)

    def dump(self, sess: UISession) -> str:
        data: dict[str, Any] = {"sid": sess.sid}
        if sess.identity is not None:
            data.update(u=sess.identity.user, sc=list(sess.identity.scopes), m=sess.method, r=sess.proof_ref)
        return self.serializer.dumps(data)

    def set_cookie(self, response: Response, sess: UISession) -> None:
        response.set_cookie(SESSION_COOKIE, self.dump(sess), max_age=SESSION_MAX_AGE, path="/",
                            httponly=True, samesite="lax", secure=self.secure)

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure)
