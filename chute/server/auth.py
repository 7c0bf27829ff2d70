"""Bearer tokens for the API.

Tokens look like ``chute_<prefix>_<secret>``. Only a SHA-256 of the secret is
stored (tokens are random 256-bit values, so a slow password hash adds nothing);
the prefix finds the row. A token belongs to a user, has scopes (``read``, ``run``,
``deploy``, ``admin``, ``agent``), may expire and may be revoked; what it may do is
its scopes intersected with its user's roles (see access.py). On first start the
server writes a token of the bootstrap admin to ``$CHUTE_HOME/admin-token`` (mode
0600), which the CLI on that machine picks up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Database, Token, ledger, utcnow

from .access import ANONYMOUS, SCOPES, Identity, Policy, ensure_bootstrap_admin, get_user, identity_for
from .services import ServiceError

ADMIN_TOKEN_FILE = "admin-token"
ADMIN_TOKEN_NAME = "bootstrap"  # the one in $CHUTE_HOME/admin-token
TOKEN_RE = re.compile(r"^chute_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")
NAME_RE = re.compile(r"^[^\x00-\x1f()\x7f]{1,100}$")

__all__ = ["ANONYMOUS", "Identity", "check_token", "create_token", "ensure_admin_token", "find_token",
           "new_token", "read_admin_token", "revoke_token", "token_out"]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    wanted = {s.strip() for s in scopes if s.strip()}
    bad = sorted(wanted - set(SCOPES))
    if bad or not wanted:
        raise ServiceError(f"unknown token scope {', '.join(bad)}" if bad else "a token needs at least one scope",
                           400, f"scopes: {', '.join(SCOPES)} (run: trigger, rerun, cancel; deploy: deploy, "
                                "roll back, override; admin: all you may do; agent: the agent protocol only)")
    return [s for s in SCOPES if s in wanted]


def create_token(s: Session, name: str, *, user: str, scopes: list[str], expires_at: datetime | None,
                 actor: str) -> tuple[Token, str]:
    """A new token for ``user``; returns the row and the full text (shown once: only the hash is kept)."""
    if not NAME_RE.match(name.strip()):
        raise ServiceError(f"{name!r} cannot be a token name", 400,
                           "1 to 100 printable characters, no parentheses (it is shown in the ledger)")
    scopes = check_scopes(scopes)
    owner = get_user(s, user)
    if owner is None:
        raise ServiceError(f"there is no user {user!r}", 404, "create the user first: `chute user add NAME`")
    if "agent" in scopes and not owner.server_admin:
        raise ServiceError(f"the agent scope works only in a server admin's tokens ({owner.name} is not one)", 400,
                           "agents receive every project's jobs: a server admin creates their token with "
                           "`chute token create NAME --scope agent`")
    if expires_at is not None and expires_at <= utcnow():
        raise ServiceError("the expiry is in the past", 400)
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    tok = Token(name=name.strip(), prefix=prefix, hash=_hash(secret), user=owner.name, scopes=scopes,
                expires_at=expires_at, created_by=actor)
    s.add(tok)
    s.flush()
    ledger.record(s, "token.created", actor=actor, data={"id": tok.id, "name": tok.name, "prefix": prefix,
                                                         "user": owner.name, "scopes": scopes,
                                                         "expires_at": expires_at.isoformat() if expires_at else None})
    return tok, f"chute_{prefix}_{secret}"


def new_token(session: Session, name: str, *, user: str = "admin", scopes: list[str] | None = None,
              expires_at: datetime | None = None, actor: str = "server") -> str:
    """Create a token and return its full text (shown once; only the hash is kept)."""
    return create_token(session, name, user=user, scopes=scopes or ["admin"], expires_at=expires_at,
                        actor=actor)[1]


def valid_token_row(session: Session, text: str) -> Token | None:
    m = TOKEN_RE.match(text.strip())
    if not m:
        return None
    prefix, secret = m.groups()
    digest = _hash(secret)
    now = utcnow()
    for tok in session.scalars(select(Token).where(Token.prefix == prefix)):
        if not hmac.compare_digest(tok.hash, digest):
            continue
        if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= now):
            return None
        return tok
    return None


def token_identity(session: Session, tok: Token, policy: Policy | None = None) -> Identity | None:
    """What ``tok`` may do now (None once it is revoked or expired, or its user is disabled or gone)."""
    if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= utcnow()):
        return None
    owner = get_user(session, tok.user)
    if owner is None:
        return None
    return identity_for(session, owner, tok.scopes or [], policy or Policy(), token_id=tok.id, token_name=tok.name)


def check_token(session: Session, text: str, policy: Policy | None = None) -> Identity | None:
    """The caller a token stands for; None when it is unknown, revoked, expired or its user is disabled."""
    tok = valid_token_row(session, text)
    if tok is None:
        return None
    who = token_identity(session, tok, policy)
    if who is not None:
        now = utcnow()
        # A write per call would serialise every read on SQLite: once a minute is enough for "last used".
        if tok.last_used_at is None or now - tok.last_used_at > timedelta(seconds=60):
            tok.last_used_at = now
    return who


def token_out(tok: Token) -> dict[str, Any]:
    now = utcnow()
    status = ("revoked" if tok.revoked_at is not None
              else "expired" if tok.expires_at is not None and tok.expires_at <= now else "active")
    return {"id": tok.id, "name": tok.name, "prefix": tok.prefix, "hint": f"chute_{tok.prefix}_…", "user": tok.user,
            "scopes": list(tok.scopes or []), "status": status, "created_at": tok.created_at,
            "created_by": tok.created_by, "expires_at": tok.expires_at, "last_used_at": tok.last_used_at,
            "revoked_at": tok.revoked_at}


def find_token(session: Session, key: str) -> Token | None:
    """A token by id, by prefix, or by its displayed form ``chute_<prefix>_…``."""
    k = key.strip().removeprefix("chute_").split("_", 1)[0].rstrip("…")
    if k.isdigit() and len(k) != 8:
        return session.get(Token, int(k))
    rows = list(session.scalars(select(Token).where(Token.prefix == k.lower())))
    if len(rows) > 1:
        raise ServiceError(f"more than one token has the prefix {k}", 409, "revoke it by id (`chute token list`)")
    if rows:
        return rows[0]
    return session.get(Token, int(k)) if k.isdigit() else None


def revoke_token(session: Session, tok: Token, *, actor: str) -> None:
    if tok.revoked_at is not None:
        return
    tok.revoked_at = utcnow()
    ledger.record(session, "token.revoked", actor=actor, data={"id": tok.id, "name": tok.name, "prefix": tok.prefix,
                                                               "user": tok.user})


def ensure_admin_token(db: Database, home: Path) -> str:
    """Create the bootstrap admin and its token on first start; return the token's text."""
    path = home / ADMIN_TOKEN_FILE
    with db.session() as s:
        ensure_bootstrap_admin(s)
    if path.exists():
        text = path.read_text().strip()
        with db.session() as s:
            if check_token(s, text) is not None:
                return text
    with db.session() as s:
        _tok, text = create_token(s, ADMIN_TOKEN_NAME, user="admin", scopes=["admin", "agent"], expires_at=None,
                                  actor="server")
    # Write with 0600 from the start: never a moment where others can read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)
    return text


def read_admin_token(home: Path) -> str | None:
    path = home / ADMIN_TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
