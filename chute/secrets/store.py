"""Secrets in SQL: set, list (names only), delete, read for a run, re-encrypt.

Every function takes the caller's session, so a change and its ledger event
(``secret.set`` / ``secret.deleted``, with the name and scope, never the value)
commit together. Values are encrypted with the :class:`~.crypto.Keyring`
before they reach the session and decrypted only by :meth:`SecretStore.values`,
which the server calls when a trusted job asks for its credentials.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Project, Secret, ledger, utcnow

from .crypto import Keyring, SecretKeyError, load_keyring
from .masking import MIN_LENGTH

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
"""A secret's name (PipelineLib's credential ``id``): also its file name under /run/secrets."""
ENVIRONMENT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")  # as chute.deploy's environment names
MAX_VALUE = 64 * 1024


class SecretInputError(Exception):
    """A name, scope or value that cannot be stored; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SecretInputError(f"{name!r} is not a valid secret name",
                               "use letters, digits, '_', '.' and '-' (not first), at most 128 characters, "
                               "e.g. SONAR_API_KEY")


def check_environment(environment: str) -> None:
    if environment and (not isinstance(environment, str) or not ENVIRONMENT_RE.match(environment)):
        raise SecretInputError(f"{environment!r} is not a valid environment name",
                               "environment names are lower-case letters, digits and -, at most 40 characters; "
                               "leave it empty for a secret of the whole project")


def check_value(value: str) -> None:
    """Never echoes the value: the message says only what is wrong with it."""
    if not isinstance(value, str):
        raise SecretInputError("the secret value must be a string")
    if len(value) < MIN_LENGTH:
        raise SecretInputError(f"the secret value is {len(value)} characters long; at least {MIN_LENGTH} are needed",
                               "a shorter value could not be masked in logs without hiding ordinary text")
    if len(value) > MAX_VALUE:
        raise SecretInputError(f"the secret value is {len(value)} characters long; at most {MAX_VALUE} are allowed",
                               "store a larger file elsewhere and keep only its access key here")
    if "\0" in value:
        raise SecretInputError("the secret value contains a NUL character",
                               "environment variables and files given to steps cannot carry NUL")


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    project: str
    name: str
    environment: str
    created_at: datetime
    updated_at: datetime
    updated_by: str
    key_id: str

    @property
    def scope(self) -> str:
        return "environment" if self.environment else "project"

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "name": self.name, "scope": self.scope,
                "environment": self.environment or None, "created_at": self.created_at,
                "updated_at": self.updated_at, "updated_by": self.updated_by}


def _context(project_id: int, environment: str, name: str) -> str:
    return f"chute-secret:v1:{project_id}:{environment}:{name}"


def _info(project: Project, row: Secret) -> SecretInfo:
    return SecretInfo(project.name, row.name, row.environment, row.created_at, row.updated_at, row.updated_by,
                      row.key_id)


class SecretStore:
    """Secrets of every project; the keyring is loaded on first use (and created on the first ``set``)."""

    def __init__(self, home: Path, environ: dict[str, str] | None = None, keyring: Keyring | None = None) -> None:
        self.home, self.environ = home, environ
        self._keyring = keyring
        self._lock = threading.Lock()

    def keyring(self, *, create: bool = False) -> Keyring:
        with self._lock:
            if self._keyring is None:
                self._keyring = load_keyring(self.home, self.environ, create=create)
            return self._keyring

    def _row(self, s: Session, project: Project, name: str, environment: str) -> Secret | None:
        return s.scalars(select(Secret).where(Secret.project_id == project.id, Secret.environment == environment,
                                              Secret.name == name)).first()

    def set(self, s: Session, project: Project, name: str, value: str, *, environment: str = "",
            actor: str) -> tuple[SecretInfo, bool]:
        """Store (or replace) a value; returns what may be shown and whether it was new."""
        check_name(name)
        check_environment(environment)
        check_value(value)
        sealed = self.keyring(create=True).encrypt(value, _context(project.id, environment, name))
        now = utcnow()
        row = self._row(s, project, name, environment)
        created = row is None
        if row is None:
            row = Secret(project_id=project.id, environment=environment, name=name, created_at=now)
            s.add(row)
        row.value, row.key_id = sealed, self.keyring().current_id
        row.updated_at, row.updated_by = now, actor
        s.flush()
        ledger.record(s, "secret.set", actor=actor, project=project.name, environment=environment,
                      outcome="created" if created else "replaced",
                      data={"name": name, "scope": "environment" if environment else "project"})
        return _info(project, row), created

    def delete(self, s: Session, project: Project, name: str, *, environment: str = "", actor: str) -> bool:
        row = self._row(s, project, name, environment)
        if row is None:
            return False
        s.delete(row)
        ledger.record(s, "secret.deleted", actor=actor, project=project.name, environment=environment,
                      data={"name": name, "scope": "environment" if environment else "project"})
        return True

    def list(self, s: Session, project: Project, environment: str | None = None) -> list[SecretInfo]:
        """Names and scopes (``environment=None``: every scope), sorted by scope then name."""
        q = select(Secret).where(Secret.project_id == project.id)
        if environment is not None:
            q = q.where(Secret.environment == environment)
        rows = s.scalars(q.order_by(Secret.environment, Secret.name)).all()
        return [_info(project, r) for r in rows]

    def values(self, s: Session, project: Project, names: Iterable[str], *, environment: str = "") -> dict[str, str]:
        """Decrypted values of ``names`` in one scope (``""``: the project's own); missing names are left out."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        rows = s.scalars(select(Secret).where(Secret.project_id == project.id, Secret.environment == environment,
                                              Secret.name.in_(wanted))).all()
        if not rows:
            return {}
        ring = self.keyring()
        return {r.name: ring.decrypt(r.value, _context(project.id, r.environment, r.name)) for r in rows}

    def rotate(self, s: Session) -> int:
        """Re-encrypt every value that is not under the current key; returns how many."""
        ring = self.keyring()
        count = 0
        for row in s.scalars(select(Secret).order_by(Secret.id)):
            if not ring.needs_rotation(row.value):
                continue
            context = _context(row.project_id, row.environment, row.name)
            row.value = ring.encrypt(ring.decrypt(row.value, context), context)
            row.key_id = ring.current_id
            count += 1
        s.flush()
        return count


__all__ = ["SecretInfo", "SecretInputError", "SecretKeyError", "SecretStore", "check_environment", "check_name",
           "check_value"]
