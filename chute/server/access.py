"""Who may do what: users and passwords, roles per project, token scopes, and the one permission check.

Every caller is an :class:`Identity`: a user, the scopes of the token (or session) they
came with, whether they are a server admin, and their role bindings per project. The API,
the UI and (through the API) the CLI all ask :func:`require` before they change
anything, so there is one place where a permission is decided and one wording of why not.

A permission is allowed when **both** the token's scopes and the user's roles allow it:
a token never does more than its user, and a narrow token (``--scope run``) does less.

Roles per project (additive; a user may hold several):

========== ==========================================================================
viewer     read the project (only matters with ``CHUTE_ANONYMOUS_READ=false``)
developer  viewer + trigger, rerun, cancel runs
deployer   viewer + deploy, roll back, override a freeze — on the environments the
           binding names, or on every environment when it names none
admin      everything on the project: the above on every environment, its settings,
           roles and secrets
========== ==========================================================================

Server admins may do everything, everywhere. See docs/security.md.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chute.store import LoginSession, Project, RoleBinding, User, ledger, utcnow

from .services import ServiceError

# ------------------------------------------------------------------ roles, scopes, permissions
ROLES = ("viewer", "developer", "deployer", "admin")
SCOPES = ("read", "run", "deploy", "admin", "agent")
ALL_USER_SCOPES = ("read", "run", "deploy", "admin")  # a password login: all a user may do (agents aside)

READ = "project.read"
TRIGGER = "run.trigger"
RERUN = "run.rerun"
CANCEL = "run.cancel"
DEPLOY = "deploy"  # deploy, roll back, override a freeze (per environment)
PROJECT_ADMIN = "project.admin"  # project settings, roles, secrets, the webhook secret
ADD_PROJECT = "project.add"
OWN_TOKENS = "token.manage"  # create, list and revoke one's own tokens
MANAGE_USERS = "user.manage"
AGENT = "agent"  # the agent protocol (claim, heartbeat, logs, complete)


@dataclass(frozen=True)
class Permission:
    name: str
    doing: str  # "... to <doing>" in messages
    role: str | None  # the least project role that grants it; None: not granted by a project role
    scope: str  # the narrowest token scope that allows it


PERMISSIONS: dict[str, Permission] = {p.name: p for p in (
    Permission(READ, "read this project", "viewer", "read"),
    Permission(TRIGGER, "trigger runs", "developer", "run"),
    Permission(RERUN, "rerun runs", "developer", "run"),
    Permission(CANCEL, "cancel runs", "developer", "run"),
    Permission(DEPLOY, "deploy, roll back or override a freeze", "deployer", "deploy"),
    Permission(PROJECT_ADMIN, "change the project's settings and roles", "admin", "admin"),
    Permission(ADD_PROJECT, "register repositories", None, "admin"),
    Permission(OWN_TOKENS, "manage API tokens", None, "admin"),
    Permission(MANAGE_USERS, "manage users", None, "admin"),
    Permission(AGENT, "use the agent protocol", None, "agent"),
)}

_RUN = frozenset({READ, TRIGGER, RERUN, CANCEL})
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({READ}),
    "run": _RUN,
    "deploy": frozenset({READ, DEPLOY}),
    "admin": frozenset(PERMISSIONS) - {AGENT},  # everything the user may do, except being an agent
    "agent": frozenset({AGENT}),
}
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ}),
    "developer": _RUN,
    "deployer": frozenset({READ, DEPLOY}),
    "admin": _RUN | {DEPLOY, PROJECT_ADMIN},
}


@dataclass(frozen=True)
class Policy:
    """The server's access settings (from Settings: CHUTE_ANONYMOUS_READ, CHUTE_SELF_SERVICE)."""

    anonymous_read: bool = True
    self_service: bool = True


@dataclass(frozen=True)
class Grant:
    project: str
    role: str
    environments: tuple[str, ...] = ()  # deployer only; empty: every environment

    def describe(self) -> str:
        return self.role + (f" ({', '.join(self.environments)})" if self.environments else "")


@dataclass(frozen=True)
class Identity:
    """Who is calling: a user, the scopes they came with, server admin or not, their roles."""

    user: str
    scopes: tuple[str, ...]
    token_id: int | None = None
    token_name: str = ""  # set when the call came with an API token
    server_admin: bool = False
    grants: tuple[Grant, ...] = ()
    policy: Policy = field(default_factory=Policy)
    authenticated: bool = True

    @property
    def actor(self) -> str:
        """The ledger's ``actor``: the user, and the token when one was used."""
        return f"{self.user} (token {self.token_name})" if self.token_name else self.user

    def can(self, scope: str) -> bool:
        """Whether the token's scopes include ``scope`` (or admin, which covers all but agent)."""
        return scope in self.scopes or ("admin" in self.scopes and scope != "agent")

    def allows(self, permission: str, project: str | None = None, environment: str | None = None) -> bool:
        return check(self, permission, project, environment) is None

    def roles_on(self, project: str) -> list[Grant]:
        return [g for g in self.grants if g.project == project]


def anonymous(policy: Policy | None = None) -> Identity:
    return Identity("anonymous", (), policy=policy or Policy(), authenticated=False)


ANONYMOUS = anonymous()


# ------------------------------------------------------------------ the check
@dataclass(frozen=True)
class Denial:
    """Why ``who`` may not: ``login`` (nobody is logged in), ``scope`` (the token is too narrow),
    ``server-admin`` (only server admins may), ``role`` (a project role is missing)."""

    kind: str
    permission: Permission
    project: str | None
    environment: str | None
    who: Identity

    @property
    def status(self) -> int:
        return 401 if self.kind == "login" else 403

    @property
    def role_needed(self) -> str:
        return self.permission.role or "server admin"

    def short(self) -> str:
        """A few words for a disabled button's hint."""
        if self.kind == "login":
            return "log in first"
        if self.kind == "scope":
            return f"your token lacks the {self.permission.scope} scope"
        if self.kind == "server-admin":
            return "server admins only"
        if self.permission.name == DEPLOY and self.environment:
            return f"needs the deployer role on {self.environment}"
        return f"needs the {self.permission.role} role"

    def message(self, admins: list[str] | None = None, server_admins: list[str] | None = None) -> tuple[str, str]:
        """(what is wrong, what to do); ``admins``: who could grant the missing role, when known."""
        who, p = self.who, self.permission
        doing = p.doing
        if self.permission.name == DEPLOY and self.environment:
            doing = f"deploy to, roll back or override a freeze on {self.environment}"
        if self.kind == "login":
            return (f"you need to log in to {doing}",
                    "pass an API token (Authorization: Bearer chute_..., `chute login`, --token or CHUTE_TOKEN)")
        if self.kind == "scope":
            have = ", ".join(who.scopes) or "none"
            return (f"the token {who.token_name!r} of {who.user} has the scopes {have}; to {doing} it needs the "
                    f"{p.scope} scope",
                    f"use a token that has it: `chute token create NAME --scope {p.scope}` (a token never does "
                    "more than its user's roles allow)")
        names = _names(server_admins)
        if self.kind == "server-admin":
            if p.name == ADD_PROJECT:
                return (f"{who.user} may not {doing}: self-service registration is off (CHUTE_SELF_SERVICE=false) "
                        "and only server admins may",
                        f"ask a server admin{names} to register it (`chute project add`)")
            return (f"{who.user} may not {doing}: only server admins may", f"ask a server admin{names}")
        project = self.project or "?"
        held = who.roles_on(project)
        grantors = _names((admins or []) + [n for n in (server_admins or []) if n not in (admins or [])])
        if p.name == DEPLOY and self.environment and any(g.role == "deployer" for g in held):
            envs = ", ".join(e for g in held if g.role == "deployer" for e in g.environments)
            return (f"{who.user} is deployer on {project} only for {envs}; to {doing} needs the deployer role on "
                    f"{self.environment}",
                    f"a project admin or a server admin{grantors} can grant it: "
                    f"`chute role grant {who.user} deployer --project {project} --environment {self.environment}`")
        has = ", ".join(g.describe() for g in held) or "no role"
        env = f" --environment {self.environment}" if p.name == DEPLOY and self.environment else ""
        return (f"{who.user} needs the {p.role} role on project {project} to {doing} (has: {has})",
                f"a project admin or a server admin{grantors} can grant it: "
                f"`chute role grant {who.user} {p.role} --project {project}{env}`")


def _names(names: list[str] | None) -> str:
    if not names:
        return ""
    shown = names[:5]
    return f" ({', '.join(shown)}{', …' if len(names) > 5 else ''})"


class AccessDenied(ServiceError):
    """401/403 with the missing role and who can grant it (answered like any ServiceError)."""

    def __init__(self, denial: Denial, message: str, hint: str) -> None:
        super().__init__(message, denial.status, hint)
        self.denial = denial


def check(who: Identity, permission: str, project: str | None = None,
          environment: str | None = None) -> Denial | None:
    """None when ``who`` may; else why not. ``environment=None`` for a deploy means every environment."""
    p = PERMISSIONS[permission]

    def no(kind: str) -> Denial:
        return Denial(kind, p, project, environment, who)

    if permission == READ and who.policy.anonymous_read:
        return None
    if not who.authenticated:
        return no("login")
    if not any(permission in SCOPE_PERMISSIONS.get(s, ()) for s in who.scopes):
        return no("scope")
    if who.server_admin or permission == OWN_TOKENS:
        return None
    if permission == ADD_PROJECT:
        return None if who.policy.self_service else no("server-admin")
    if p.role is None:
        return no("server-admin")
    if project is None:
        raise ValueError(f"the permission {permission} needs a project")
    for g in who.roles_on(project):
        if permission not in ROLE_PERMISSIONS.get(g.role, ()):
            continue
        if permission == DEPLOY and g.role == "deployer" and g.environments \
                and (environment is None or environment not in g.environments):
            continue
        return None
    return no("role")


def require(who: Identity, permission: str, project: str | None = None, environment: str | None = None, *,
            session: Session | None = None) -> None:
    """Raise :class:`AccessDenied` (401/403) unless ``who`` may; with a ``session`` the message names
    who can grant the missing role."""
    denial = check(who, permission, project, environment)
    if denial is None:
        return
    admins: list[str] | None = None
    server_admins: list[str] | None = None
    # Name the people to ask only to someone who may see the project anyway.
    if session is not None and denial.kind in ("role", "server-admin") and (
            denial.project is None or who.allows(READ, denial.project)):
        server_admins = list(session.scalars(select(User.name).where(
            User.server_admin.is_(True), User.disabled_at.is_(None))
            .order_by(User.name).limit(6)))
        if denial.project:
            admins = [b.user.name for b in bindings(session, denial.project) if b.role == "admin"]
    message, hint = denial.message(admins, server_admins)
    raise AccessDenied(denial, message, hint)


def visible_projects(who: Identity) -> set[str] | None:
    """Project names ``who`` may read; None: every project."""
    if who.policy.anonymous_read:
        return None
    if not who.authenticated or not any(READ in SCOPE_PERMISSIONS.get(s, ()) for s in who.scopes):
        return set()
    if who.server_admin:
        return None
    return {g.project for g in who.grants}  # every role includes reading


# ------------------------------------------------------------------ passwords
# argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): ~40 ms on one core; the
# parameters are stored in each hash, so raising them later rehashes at the next login.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_dummy_hash: str | None = None


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant-time (argon2's compare); spends the same work when there is no stored hash."""
    global _dummy_hash
    if not stored:
        if _dummy_hash is None:
            _dummy_hash = HASHER.hash(secrets.token_urlsafe(16))
        stored, password = _dummy_hash, password + "\0never"
    try:
        return HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ServiceError(f"the password is too short ({len(password)} characters; at least {MIN_PASSWORD})", 400,
                           "a long passphrase is best; no other rules apply")
    if len(password) > MAX_PASSWORD:
        raise ServiceError(f"the password is longer than {MAX_PASSWORD} characters", 400)
    if password.strip().lower() == name.lower():
        raise ServiceError("the password must not be the user name", 400)


# ------------------------------------------------------------------ users
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")
RESERVED = frozenset({"anonymous", "server", "poller", "auto", "agent", "system", "webhook", "chute", "me"})
BOOTSTRAP_ADMIN = "admin"


def normalise_name(name: str) -> str:
    return name.strip().lower()


def check_user_name(name: str) -> str:
    n = normalise_name(name)
    if not NAME_RE.match(n):
        raise ServiceError(f"{name!r} cannot be a user name", 400,
                           "use letters, digits, '.', '_', '-' and '@' (up to 100; it is shown in the ledger)")
    if n in RESERVED:
        raise ServiceError(f"{n!r} is reserved (chute uses it for its own actions)", 400, "choose another name")
    return n


def get_user(s: Session, name: str) -> User | None:
    return s.scalars(select(User).where(User.name == normalise_name(name))).first()


def user_or_404(s: Session, name: str) -> User:
    u = get_user(s, name)
    if u is None:
        raise ServiceError(f"there is no user {name!r}", 404,
                           "a server admin creates users with `chute user add NAME` (or they log in once with "
                           "single sign-on, when configured)")
    return u


def create_user(s: Session, name: str, *, password: str | None = None, server_admin: bool = False,
                actor: str, display_name: str = "", email: str = "", source: str = "local",
                external_id: str | None = None) -> User:
    n = check_user_name(name)
    if get_user(s, n) is not None:
        raise ServiceError(f"a user named {n!r} already exists", 409)
    if password is not None:
        check_password_rules(n, password)
    u = User(name=n, display_name=display_name, email=email, server_admin=server_admin, source=source,
             external_id=external_id, created_by=actor,
             password_hash=hash_password(password) if password is not None else None,
             password_changed_at=utcnow() if password is not None else None)
    s.add(u)
    s.flush()
    ledger.record(s, "user.created", actor=actor, data={"user": n, "server_admin": server_admin,
                                                        "source": source, "password": password is not None})
    return u


def update_user(s: Session, u: User, *, actor: str, password: str | None = None,
                server_admin: bool | None = None, disabled: bool | None = None) -> list[str]:
    """Change a user; returns what changed. A new password or disabling ends the user's UI sessions."""
    changed: list[str] = []
    if u.source == "bootstrap" and (server_admin is False or disabled):
        raise ServiceError("the bootstrap admin (whose token is in $CHUTE_HOME/admin-token) stays a server admin", 400,
                           "revoke its token instead (`chute token revoke PREFIX`); the server makes a new one at "
                           "its next start")
    if password is not None:
        check_password_rules(u.name, password)
        u.password_hash = hash_password(password)
        u.password_changed_at = utcnow()
        changed.append("password")
    if server_admin is not None and server_admin != u.server_admin:
        u.server_admin = server_admin
        changed.append("server_admin")
    if disabled is not None and disabled != (u.disabled_at is not None):
        u.disabled_at = utcnow() if disabled else None
        changed.append("disabled" if disabled else "enabled")
    if changed:
        ledger.record(s, "user.updated", actor=actor, data={"user": u.name, "changed": changed,
                                                            "server_admin": u.server_admin,
                                                            "disabled": u.disabled_at is not None})
    if "password" in changed or "disabled" in changed:
        end_sessions(s, u.name, "password" if "password" in changed else "disabled")
    return changed


def ensure_bootstrap_admin(s: Session) -> User:
    """The server admin that owns the admin token file (created on first start)."""
    u = get_user(s, BOOTSTRAP_ADMIN)
    if u is None:
        u = User(name=BOOTSTRAP_ADMIN, display_name="bootstrap admin", server_admin=True, source="bootstrap",
                 created_by="server")
        s.add(u)
        s.flush()
        ledger.record(s, "user.created", actor="server", data={"user": BOOTSTRAP_ADMIN, "server_admin": True,
                                                               "source": "bootstrap", "password": False})
    return u


def verify_login(s: Session, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs (and they may log in); the same work either way."""
    u = get_user(s, name) if NAME_RE.match(normalise_name(name)) else None
    usable = u is not None and u.disabled_at is None and bool(u.password_hash)
    ok = verify_password(u.password_hash if usable and u is not None else None, password)
    if not (ok and usable and u is not None):
        return None
    assert u.password_hash is not None
    if HASHER.check_needs_rehash(u.password_hash):  # parameters were raised since it was set
        u.password_hash = hash_password(password)
    return u


def end_sessions(s: Session, user: str, reason: str) -> None:
    s.execute(update(LoginSession).where(LoginSession.user == user, LoginSession.ended_at.is_(None))
              .values(ended_at=utcnow(), end_reason=reason))


def user_out(u: User) -> dict[str, Any]:
    return {"name": u.name, "display_name": u.display_name, "email": u.email, "server_admin": u.server_admin,
            "source": u.source, "has_password": bool(u.password_hash), "disabled": u.disabled_at is not None,
            "created_at": u.created_at, "created_by": u.created_by, "last_login_at": u.last_login_at}


# ------------------------------------------------------------------ roles
ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def grants_of(s: Session, user_id: int) -> tuple[Grant, ...]:
    rows = s.execute(select(Project.name, RoleBinding.role, RoleBinding.environments)
                     .join(Project, Project.id == RoleBinding.project_id)
                     .where(RoleBinding.user_id == user_id).order_by(Project.name, RoleBinding.role))
    return tuple(Grant(p, r, tuple(envs or ())) for p, r, envs in rows)


def identity_for(s: Session, u: User, scopes: Iterable[str], policy: Policy, *, token_id: int | None = None,
                 token_name: str = "") -> Identity | None:
    """The identity of ``u`` with ``scopes``; None when the user is disabled."""
    if u.disabled_at is not None:
        return None
    return Identity(u.name, tuple(scopes), token_id=token_id, token_name=token_name,
                    server_admin=u.server_admin, grants=grants_of(s, u.id), policy=policy)


def bindings(s: Session, project: str) -> list[RoleBinding]:
    return list(s.scalars(select(RoleBinding).join(Project, Project.id == RoleBinding.project_id)
                          .join(User, User.id == RoleBinding.user_id)
                          .where(Project.name == project).order_by(User.name, RoleBinding.role)))


def binding_out(b: RoleBinding) -> dict[str, Any]:
    return {"user": b.user.name, "role": b.role, "environments": list(b.environments or []),
            "granted_by": b.granted_by, "granted_at": b.granted_at, "disabled": b.user.disabled_at is not None}


def _check_role(role: str, environments: list[str]) -> list[str]:
    if role not in ROLES:
        raise ServiceError(f"there is no role {role!r}", 400, f"roles: {', '.join(ROLES)}")
    envs = sorted({e.strip() for e in environments if e.strip()})
    if envs and role != "deployer":
        raise ServiceError(f"only the deployer role is given per environment (not {role})", 400,
                           "drop --environment, or grant the deployer role")
    for e in envs:
        if not ENV_RE.match(e):
            raise ServiceError(f"{e!r} is not an environment name", 400)
    return envs


def grant_role(s: Session, project: Project, u: User, role: str, environments: list[str] | None = None, *,
               actor: str) -> RoleBinding:
    """Give ``u`` ``role`` on ``project``; a deployer's environments are added to those they had."""
    envs = _check_role(role, environments or [])
    b = s.scalars(select(RoleBinding).where(RoleBinding.project_id == project.id, RoleBinding.user_id == u.id,
                                            RoleBinding.role == role)).first()
    if b is None:
        b = RoleBinding(project_id=project.id, user_id=u.id, role=role, environments=envs, granted_by=actor,
                        granted_at=utcnow())
        s.add(b)
    elif b.environments and envs:
        b.environments = sorted(set(b.environments) | set(envs))
    elif b.environments and not envs:
        b.environments = []  # now on every environment
    # (already on every environment: granting some changes nothing)
    b.granted_by, b.granted_at = actor, utcnow()
    s.flush()
    s.refresh(b)
    ledger.record(s, "role.granted", actor=actor, project=project.name, environment=",".join(envs),
                  data={"user": u.name, "role": role, "environments": envs,
                        "now": list(b.environments or [])})
    return b


def revoke_role(s: Session, project: Project, u: User, role: str, environments: list[str] | None = None, *,
                actor: str) -> RoleBinding | None:
    """Take ``role`` (or, for a deployer, some environments of it) away; returns what remains."""
    envs = _check_role(role, environments or [])
    b = s.scalars(select(RoleBinding).where(RoleBinding.project_id == project.id, RoleBinding.user_id == u.id,
                                            RoleBinding.role == role)).first()
    if b is None:
        raise ServiceError(f"{u.name} has no {role} role on {project.name}", 404,
                           f"`chute role list --project {project.name}` shows who has which role")
    remaining: list[str] = []
    if envs:
        if not b.environments:
            raise ServiceError(f"{u.name} is deployer on every environment of {project.name}", 400,
                               "revoke the whole role, then grant the environments that stay")
        missing = [e for e in envs if e not in b.environments]
        if missing:
            raise ServiceError(f"{u.name} is not deployer on {', '.join(missing)} of {project.name}", 404)
        remaining = [e for e in b.environments if e not in envs]
    if remaining:
        b.environments = remaining
    else:
        s.delete(b)
    s.flush()
    ledger.record(s, "role.revoked", actor=actor, project=project.name, environment=",".join(envs),
                  data={"user": u.name, "role": role, "environments": envs, "remaining": remaining})
    return b if remaining else None


# ------------------------------------------------------------------ failed logins
class LoginThrottle:
    """Slows down guessing: after ``free`` failures for a user from one address (or ``free_per_address``
    from one address for anyone), each further attempt must wait twice as long as the last
    (up to ``max_delay``). Failures are forgotten after ``window`` seconds without one, or at
    a successful login. At most ``max_entries`` keys are kept (oldest dropped), so memory is
    bounded whatever an attacker sends. Per process: several servers each count their own."""

    def __init__(self, *, free: int = 5, free_per_address: int = 30, first_delay: float = 1.0,
                 max_delay: float = 300.0, window: float = 900.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.free_per_address, self.first_delay = free, free_per_address, first_delay
        self.max_delay, self.window, self.max_entries = max_delay, window, max_entries
        self.clock = clock
        self._fails: OrderedDict[tuple[str, ...], tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, user: str, address: str) -> list[tuple[tuple[str, ...], int]]:
        return [(("user", normalise_name(user)[:100], address), self.free),
                (("address", address), self.free_per_address)]

    def wait(self, user: str, address: str) -> float:
        """Seconds before another attempt for ``user`` from ``address`` is allowed (0: now)."""
        now = self.clock()
        longest = 0.0
        with self._lock:
            for key, free in self._keys(user, address):
                entry = self._fails.get(key)
                if entry is None:
                    continue
                count, last = entry
                if now - last > self.window:
                    del self._fails[key]
                    continue
                if count >= free:
                    delay = min(self.first_delay * 2.0 ** (count - free), self.max_delay)
                    longest = max(longest, last + delay - now)
        return max(0.0, longest)

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key, _free in self._keys(user, address):
                count, last = self._fails.pop(key, (0, now))
                if now - last > self.window:
                    count = 0
                self._fails[key] = (count + 1, now)
            while len(self._fails) > self.max_entries:
                self._fails.popitem(last=False)

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._fails.pop(self._keys(user, address)[0][0], None)

    def __len__(self) -> int:
        return len(self._fails)


# ------------------------------------------------------------------ small helpers
_DURATION = re.compile(r"^(\d+)\s*([mhdwy])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str | None) -> timedelta | None:
    """``30d``, ``12h``, ``90m``, ``2w``, ``1y``; ``never`` (or empty) for no expiry."""
    t = (text or "").strip().lower()
    if t in ("", "never", "none"):
        return None
    m = _DURATION.match(t)
    if not m or int(m.group(1)) == 0:
        raise ServiceError(f"{text!r} is not a duration", 400, "e.g. 30d, 12h, 90m, 2w, 1y, or never")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    d = parse_duration(text)
    return None if d is None else (now or utcnow()) + d


# ------------------------------------------------------------------ used by the API and the UI alike
REMOTE_URL = re.compile(r"^((https?|ssh|git)://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


def readable(who: Identity) -> set[str] | None:
    """Like :func:`visible_projects`, but an anonymous caller where reading needs a login gets the 401."""
    vis = visible_projects(who)
    if vis is not None and not who.authenticated:
        require(who, READ, "")
    return vis


def add_project(s: Session, settings: Any, who: Identity, repo: str, name: str | None, *, review_kind: str = "git",
                review_project: str | None = None, actor: str | None = None) -> tuple[Project, dict[str, Any]]:
    """Register a repository as ``who``: server admins, or anyone when self-service is on (they become
    the project's admin). Only server admins may name a path on the server (or file://).
    ``actor``: the ledger's actor (default ``who.actor``; the UI passes the user)."""
    from . import services

    require(who, ADD_PROJECT, session=s)
    if not who.server_admin and not REMOTE_URL.match(repo.strip()):
        raise ServiceError(f"only server admins may register a repository by a path on the server ({repo})", 403,
                           "give a URL git can fetch (https://, ssh://, git:// or user@host:path), "
                           "or ask a server admin")
    p, info = services.add_project(s, settings, repo, name, actor=actor or who.actor, review_kind=review_kind,
                                   review_project=review_project)
    if not who.server_admin:
        owner = get_user(s, who.user)
        if owner is not None:
            grant_role(s, p, owner, "admin", actor="server (self-service registration)")
    return p, info


def throttle_of(state: Any) -> LoginThrottle:
    """The server's failed-login counter (one per process, shared by the API and the UI)."""
    t = getattr(state, "login_throttle", None)
    if t is None:
        t = state.login_throttle = LoginThrottle()
    return t


def record_login(s: Session, *, user: User | None, method: str, via: str, ok: bool, address: str) -> None:
    """``user.login`` in the ledger. A failure names the user only when one exists by that name (so a
    password typed into the user field is never stored); the password never is."""
    if ok and user is not None:
        user.last_login_at = utcnow()
    ledger.record(s, "user.login", actor=user.name if user is not None else "", outcome="success" if ok else "failed",
                  data={"method": method, "via": via, "address": address,
                        **({} if ok or user is not None else {"user_known": False})})


@dataclass
class LoginResult:
    user: User | None
    error: ServiceError | None = None
    retry_after: int = 0


def password_login(s: Session, state: Any, name: str, password: str, *, address: str, via: str) -> LoginResult:
    """Check a user name and password, slowed down after failures; the ledger gets the outcome.
    The caller commits ``s`` and then answers ``error`` (a failure must stay recorded)."""
    th = throttle_of(state)
    wait = th.wait(name, address)
    if wait > 0:
        secs = int(wait) + 1
        return LoginResult(None, ServiceError(
            f"too many failed logins for {normalise_name(name)[:100]!r} from {address}; try again in {secs} s", 429,
            "each further failure doubles the wait (up to 5 minutes); a server admin can set a new password "
            "with `chute user passwd`"), secs)
    u = verify_login(s, name, password)
    if u is None:
        th.failed(name, address)
        known = get_user(s, name) if NAME_RE.match(normalise_name(name)) else None
        record_login(s, user=known, method="password", via=via, ok=False, address=address)
        return LoginResult(None, ServiceError("wrong user name or password (or the user may not log in with a "
                                              "password)", 401, "check both and try again"))
    th.succeeded(name, address)
    record_login(s, user=u, method="password", via=via, ok=True, address=address)
    return LoginResult(u)
