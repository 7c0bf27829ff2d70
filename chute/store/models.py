"""The SQL schema: projects, changes, runs, jobs, logs, images, deployments, the ledger and access.

One module so that the whole data model can be read in one sitting. Column
types are portable between SQLite and PostgreSQL; JSON columns hold the
structured results the runner produces. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store UTC; always hand back aware datetimes (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    repo_url: Mapped[str] = mapped_column(Text)  # a local path or a git URL
    review_kind: Mapped[str] = mapped_column(String(20), default="git")  # git | gerrit | gitlab | github
    review_project: Mapped[str | None] = mapped_column(String(300))  # the name the review system uses
    default_branch: Mapped[str] = mapped_column(String(200), default="main")
    webhook_secret: Mapped[str] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # reporter URLs, poll interval, ...
    has_pipeline: Mapped[bool] = mapped_column(Boolean, default=False)
    config_error: Mapped[str | None] = mapped_column(Text)
    polled_refs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Change(Base):
    """A patch under review (change + patchset) or a pushed commit."""

    __tablename__ = "changes"
    __table_args__ = (
        UniqueConstraint("project_id", "kind", "number", "patchset", "commit", name="uq_change_identity"),
        Index("ix_changes_project_commit", "project_id", "commit"),
        Index("ix_changes_project_number", "project_id", "number"),
        Index("ix_changes_project_branch", "project_id", "branch"),  # the branch filter's choices
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # patchset | push | tag | manual
    number: Mapped[str] = mapped_column(String(100), default="")  # change / MR / PR number; "" for pushes
    patchset: Mapped[int] = mapped_column(Integer, default=0)
    commit: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(300), default="")
    branch: Mapped[str] = mapped_column(String(200), default="")  # target branch for reviews
    author: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship()


class Run(Base):
    """One pipeline execution for one change."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_project_created", "project_id", "created_at"),
        Index("ix_runs_project_id", "project_id", "id"),  # a project's runs, newest first
        Index("ix_runs_project_pipeline", "project_id", "pipeline", "id"),  # the newest run of each pipeline
        Index("ix_runs_change", "change_id"),
        Index("ix_runs_rerun_of", "rerun_of"),  # a run page lists the run's reruns
        Index("ix_runs_status", "status", "id"),  # runs in a status, newest first (e.g. the few active ones)
        Index("ix_runs_project_status", "project_id", "status", "id"),  # the project page's status filter
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"))
    pipeline: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    # queued | running | success | failure | error | cancelled
    reason: Mapped[str] = mapped_column(Text, default="")  # why it failed / was cancelled
    trigger: Mapped[str] = mapped_column(String(40), default="manual")  # webhook, poll, recheck, rerun, ...
    actor: Mapped[str] = mapped_column(String(200), default="")
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)  # may publish/deploy (merged code)
    rerun_of: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    reuse_from: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the runner's result document
    graph: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stages and edges, for the UI
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    project: Mapped[Project] = relationship()
    change: Mapped[Change] = relationship()
    # StageResult has two keys to runs (run_id, reused_from): the stages are those of run_id.
    stages: Mapped[list[StageResult]] = relationship(
        back_populates="run", order_by="StageResult.id", cascade="all, delete-orphan",
        foreign_keys="StageResult.run_id",
    )
    images: Mapped[list[Image]] = relationship(order_by="Image.id", cascade="all, delete-orphan")


class StageResult(Base):
    __tablename__ = "stage_results"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_stage_per_run"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # pending | running | success | failure | skipped | cancelled | reused
    error: Mapped[str] = mapped_column(Text, default="")
    exports: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    reused_from: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))

    run: Mapped[Run] = relationship(back_populates="stages", foreign_keys=[run_id])


class Image(Base):
    """An image a run published: every pushed reference with its digest."""

    __tablename__ = "images"
    __table_args__ = (Index("ix_images_digest", "digest"), Index("ix_images_run", "run_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(Text)  # registry/name without tag
    tags: Mapped[list[Any]] = mapped_column(default=list)
    digest: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def references(self) -> list[str]:
        return [f"{self.name}:{t}@{self.digest}" for t in self.tags]


class Job(Base):
    """A run's unit of work in the queue, held by an agent under a lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | claimed | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    agent: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column()
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    not_before: Mapped[datetime | None] = mapped_column()  # held (e.g. by a deploy freeze)
    last_error: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship()


class LogChunk(Base):
    __tablename__ = "log_chunks"
    __table_args__ = (Index("ix_log_run_seq", "run_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    # Agent-assigned, per run (attempt * 10**9 + n, so BIGINT): re-sent chunks are ignored.
    seq: Mapped[int] = mapped_column(BigInteger)
    stage: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WebhookDelivery(Base):
    """Delivery ids seen, so that a redelivered webhook is processed once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("project_id", "kind", "delivery_id", name="uq_delivery"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    delivery_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_env_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lock_holder: Mapped[str | None] = mapped_column(String(200))  # one deployment at a time
    lock_until: Mapped[datetime | None] = mapped_column()
    revision_counter: Mapped[int] = mapped_column(Integer, default=0)  # the last revision number handed out


class Deployment(Base):
    """One rollout of one image to one environment."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("environment_id", "revision", name="uq_env_revision"),
        Index("ix_deployments_env_started", "environment_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    image_ref: Mapped[str] = mapped_column(Text)
    image_digest: Mapped[str] = mapped_column(String(100), default="")
    commit: Mapped[str] = mapped_column(String(64), default="")
    order_key: Mapped[str] = mapped_column(String(100), default="")  # newer images sort later
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # pending | deploying | healthy | failed | rolled-back | superseded
    kind: Mapped[str] = mapped_column(String(20), default="deploy")  # deploy | rollback | auto-rollback
    actor: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    serving_at: Mapped[datetime | None] = mapped_column()  # when it began to take traffic
    finished_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str] = mapped_column(Text, default="")
    time_to_restore: Mapped[float | None] = mapped_column(Float)

    environment: Mapped[Environment] = relationship()


class DeployRequest(Base):
    """A deployment asked for (by a pipeline, a promotion or a person) and not yet, or being, carried out.

    The server's deploy worker takes queued requests; a freeze or a closed deploy
    window holds one (``held`` until ``not_before``); the Deployment it produced
    is ``revision``.
    """

    __tablename__ = "deploy_requests"
    __table_args__ = (
        Index("ix_deploy_requests_status", "status", "not_before"),
        Index("ix_deploy_requests_env", "environment_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="deploy")  # deploy | rollback
    trigger: Mapped[str] = mapped_column(String(20), default="person")  # person | auto | promotion | promote-step
    image_ref: Mapped[str] = mapped_column(Text, default="")
    to_revision: Mapped[int | None] = mapped_column(Integer)  # rollback target
    order_key: Mapped[str] = mapped_column(String(100), default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    command: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    override_freeze: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    # queued | held | running | done | blocked | superseded
    hold_reason: Mapped[str] = mapped_column(Text, default="")
    not_before: Mapped[datetime | None] = mapped_column()
    revision: Mapped[int | None] = mapped_column(Integer)  # the deployment it produced
    outcome: Mapped[str] = mapped_column(String(20), default="")  # the deployment's status when done
    error: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    environment: Mapped[Environment] = relationship()


class Event(Base):
    """The ledger: one append-only row per thing that happened (see docs/ledger.md)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_at", "project", "at"),
        Index("ix_events_kind_at", "kind", "at"),
        Index("ix_events_commit", "commit"),
        Index("ix_events_change", "project", "change", "patchset"),
        Index("ix_events_run", "run_id"),
        Index("ix_events_env", "project", "environment", "at"),
        # per-kind reads of one project (metrics, traces); with change and at it also covers
        # "first upload of each change" without touching the table
        Index("ix_events_kind_project_change_at", "kind", "project", "change", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(60))
    project: Mapped[str] = mapped_column(String(200), default="")
    change: Mapped[str] = mapped_column(String(100), default="")
    patchset: Mapped[int] = mapped_column(Integer, default=0)
    commit: Mapped[str] = mapped_column(String(64), default="")
    run_id: Mapped[int | None] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(200), default="")
    image_digest: Mapped[str] = mapped_column(String(100), default="")
    environment: Mapped[str] = mapped_column(String(100), default="")
    revision: Mapped[int | None] = mapped_column(Integer)
    command: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(40), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


# ------------------------------------------------------------------ the ledger's read model
# Derived from the events, never written on their own: ``ledger.record`` adds these rows with
# their event, in the same transaction, and ``derived.rebuild`` recomputes them from the
# events. They are narrow copies of the facts the metrics scan, so that a dashboard reads a
# few small rows per deployment, run or patch instead of wide, scattered event rows. Their
# times are epoch seconds (floats, UTC): the metrics do arithmetic on them, and converting a
# timestamp per row would cost more than the query.


class DeployResult(Base):
    """One row per ``deploy.finished``."""

    __tablename__ = "deploy_results"
    __table_args__ = (
        Index("ix_deploy_results_env_at", "environment", "at"),
        Index("ix_deploy_results_env_project_at", "environment", "project", "at"),
        Index("ix_deploy_results_event", "event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    project: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100))
    revision: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # deploy | rollback | auto-rollback
    outcome: Mapped[str] = mapped_column(String(40))
    commits: Mapped[int] = mapped_column(Integer, default=0)  # how many commits it shipped
    at: Mapped[float] = mapped_column(Float)


class RunResult(Base):
    """One row per ``run.finished``."""

    __tablename__ = "run_results"
    __table_args__ = (
        # flakiness per pipeline, grouped in index order without touching the table
        Index("ix_run_results_pipeline", "project", "pipeline", "at", "outcome", "trigger"),
        Index("ix_run_results_run", "run_id"),
        Index("ix_run_results_event", "event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(Integer)
    project: Mapped[str] = mapped_column(String(200))
    pipeline: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(40))
    commit: Mapped[str] = mapped_column(String(64))
    rerun_of: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)


class PatchDelivery(Base):
    """The first healthy deployment of each patch to each environment (docs/ledger.md, "How the
    pieces link"): written when a healthy ``deploy.finished`` lists one of the patch's commits
    and no earlier healthy deploy of that environment did."""

    __tablename__ = "patch_deliveries"
    __table_args__ = (
        UniqueConstraint("project", "environment", "patch", name="uq_patch_delivery"),
        Index("ix_patch_deliveries_env_at", "environment", "delivered_at"),
        Index("ix_patch_deliveries_env_project_at", "environment", "project", "delivered_at"),
        Index("ix_patch_deliveries_event", "event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))  # the deploy.finished
    project: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100))
    patch: Mapped[str] = mapped_column(String(100))  # the change number, or "@" + commit for a plain push
    change: Mapped[str] = mapped_column(String(100), default="")
    commit: Mapped[str] = mapped_column(String(64))  # the shipped commit that belongs to the patch
    title: Mapped[str] = mapped_column(Text, default="")
    revert: Mapped[bool] = mapped_column(Boolean, default=False)  # the title starts with 'Revert "'
    revision: Mapped[int | None] = mapped_column(Integer)
    uploaded_at: Mapped[float | None] = mapped_column(Float)
    merged_at: Mapped[float | None] = mapped_column(Float)
    delivered_at: Mapped[float] = mapped_column(Float)

class Secret(Base):
    """A secret value of a project (``environment`` "") or of one of its environments, encrypted.

    ``value`` is AES-GCM ciphertext bound to the row's project, scope and name
    (chute.secrets.crypto); the plaintext is never stored, logged or returned by the API.
    """

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("project_id", "environment", "name", name="uq_secret_scope_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(100), default="")  # "": the whole project
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)  # v1:<key id>:<base64 nonce+ciphertext>
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class Token(Base):
    """API tokens, stored hashed (see chute/server/auth.py); a token never does more than its user may."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # first chars, to find the row
    hash: Mapped[str] = mapped_column(String(200))
    user: Mapped[str] = mapped_column(String(200), default="admin")  # User.name of the owner
    scopes: Mapped[list[Any]] = mapped_column(default=list)  # read | run | deploy | admin | agent
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class User(Base):
    """A person (or a robot) who logs in and holds roles; see chute/server/access.py."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_user_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(300), default="")
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2id; None: cannot log in with a password
    server_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(100), default="local")  # local | bootstrap | oidc:<provider>
    external_id: Mapped[str | None] = mapped_column(String(300))  # the identity provider's subject
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()
    disabled_at: Mapped[datetime | None] = mapped_column()  # set: no login, no token works


class RoleBinding(Base):
    """A user's role on a project; a deployer binding may name environments (none: every environment)."""

    __tablename__ = "role_bindings"
    __table_args__ = (UniqueConstraint("project_id", "user_id", "role", name="uq_role_binding"),
                      Index("ix_role_bindings_user", "user_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))  # viewer | developer | deployer | admin
    environments: Mapped[list[Any]] = mapped_column(default=list)
    granted_by: Mapped[str] = mapped_column(String(200), default="")
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship()
    user: Mapped[User] = relationship()


class LoginSession(Base):
    """A logged-in browser session (the cookie holds only its signed random id; the hash is kept here)."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user", "user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(40))  # password | token | oidc:<provider>
    proof_ref: Mapped[str] = mapped_column(String(200), default="")  # e.g. the token id for "token"
    address: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    end_reason: Mapped[str] = mapped_column(String(40), default="")  # logout | idle | expired | revoked
