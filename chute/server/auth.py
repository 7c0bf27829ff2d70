"""Bearer tokens for the API.

Tokens look like ``chute_<prefix>_<secret>``. Only a SHA-256 of the secret is
stored (tokens are random 256-bit values, so a slow password hash adds nothing);
the prefix finds the row. On first start the server writes an admin token to
``$CHUTE_HOME/admin-token`` (mode 0600), which the CLI picks up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Database, Token, ledger, utcnow

ADMIN_TOKEN_FILE = "admin-token"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # how exactly a token's last use is recorded


@dataclass(frozen=True)
class Identity:
    """Who is calling: a user name and the scopes of the token they used."""

    user: str
    scopes: tuple[str, ...]
    token_id: int | None = None

    def can(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Identity("anonymous", ())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(session: Session, name: str, *, user: str = "admin", scopes: list[str] | None = None,
              expires_at: datetime | None = None, actor: str = "server") -> str:
    """Create a token and return its full text (shown once; only the hash is kept)."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    session.add(Token(name=name, prefix=prefix, hash=_hash(secret), user=user,
                      scopes=scopes or ["admin"], expires_at=expires_at))
    ledger.record(session, "token.created", actor=actor, data={"name": name, "user": user,
                                                                "scopes": scopes or ["admin"]})
    return f"chute_{prefix}_{secret}"


def check_token(session: Session, text: str) -> Identity | None:
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != "chute":
        return None
    _, prefix, secret = parts
    digest = _hash(secret)
    now = utcnow()
    for tok in session.scalars(select(Token).where(Token.prefix == prefix)):
        if not hmac.compare_digest(tok.hash, digest):
            continue
        if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= now):
            return None
        if tok.last_used_at is None or now - tok.last_used_at > LAST_USED_RESOLUTION:
            tok.last_used_at = now  # not on every call: that would make every request a write
        return Identity(tok.user, tuple(tok.scopes), tok.id)
    return None


def ensure_admin_token(db: Database, home: Path) -> str:
    """Create the admin token on first start; return its text."""
    path = home / ADMIN_TOKEN_FILE
    if path.exists():
        text = path.read_text().strip()
        with db.session() as s:
            if check_token(s, text) is not None:
                return text
    with db.session() as s:
        text = new_token(s, "admin (created on first start)", actor="server")
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
