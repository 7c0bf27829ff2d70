"""Environments and deployments: list, history, deploy, roll back, freeze overrides.

Deploys and rollbacks are queued (``202 Accepted`` with the request) and carried out by
the server's deploy worker, because a deployment blocks for its health gate (``within``
plus ``stable_for``). Poll ``GET /api/v1/deploy-requests/{id}`` for the outcome. Every
mutating call needs a bearer token and is written to the ledger with who asked and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import DeployRequest, Image, Project, Run
from chute.store import Environment as EnvironmentRow

from .. import access, deploys, services
from ..access import Identity
from .deps import Transaction, caller, get_state, identity
from .schemas import AUTH, DB_INT_MAX, Id, errors

router = APIRouter(prefix="/api/v1", tags=["deployments"], responses=errors(400, 401, 403, 404, 409, 422))


# ------------------------------------------------------------------ bodies
class DeployIn(BaseModel):
    image: str | None = Field(None, description="An image reference (tag or digest); or give `run`")
    run: int | None = Field(None, ge=1, le=DB_INT_MAX, description="Deploy the last image this run published")
    reason: str = Field("", max_length=2000, description="Why (kept in the history and the ledger)")
    override_freeze: bool = Field(False, description="Deploy during a freeze or outside the deploy windows "
                                                     "(needs a reason; recorded as deploy.freeze-override)")


class RollbackIn(BaseModel):
    to_revision: int | None = Field(None, ge=1, le=DB_INT_MAX,
                                    description="Default: the last healthy revision with another image")
    reason: str = Field("", max_length=2000)
    override_freeze: bool = False


class OverrideIn(BaseModel):
    reason: str = Field(..., min_length=1, max_length=2000, description="Why this cannot wait for the freeze to end")


class DeploymentOut(BaseModel):
    revision: int
    kind: str = Field(description="deploy | rollback")
    status: str = Field(description="pending | deploying | healthy | failed | rolled-back | superseded")
    image: str = Field(description="The image deployed, by digest when known")
    image_ref: str
    image_digest: str | None
    actor: str
    reason: str
    run: int | None
    commit: str | None
    order_key: str | None
    created_at: datetime
    started_at: datetime | None
    serving_at: datetime | None
    finished_at: datetime | None
    error: str | None
    rollback_of: int | None
    restored_revision: int | None
    time_to_restore: float | None
    freeze_override: dict[str, Any] | None
    health: list[dict[str, Any]]


class RequestOut(BaseModel):
    id: int
    environment: str
    kind: str
    trigger: str = Field(description="person | auto | promotion | promote-step")
    image: str
    to_revision: int | None
    order_key: str | None
    actor: str
    reason: str
    run: int | None
    override_freeze: bool
    status: str = Field(description="queued | held | running | done | blocked | superseded")
    hold_reason: str | None
    held: dict[str, Any] | None = Field(description="While held: reason, until, the freeze in force, the windows")
    not_before: datetime | None
    revision: int | None = Field(description="The deployment it produced")
    outcome: str | None = Field(description="That deployment's status")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deployment: DeploymentOut | None = None


class EnvironmentOut(BaseModel):
    name: str
    configured: bool
    target: str | None
    port: int | None
    auto: bool
    from_: str | None = Field(alias="from")
    branch: str | None
    after: str | None
    rollback: str | None
    config_commit: str | None = Field(description="The default-branch commit the config was read from")
    promoted_by: list[str]
    current: DeploymentOut | None = Field(description="The revision that serves now")
    last: DeploymentOut | None
    closed: dict[str, Any] | None = Field(description="Why no deploy may start now (freeze, windows) and until when")
    freezes: list[dict[str, Any]]
    windows: list[str]
    waiting: list[RequestOut] = Field(description="Queued, held and running requests")

    model_config = {"populate_by_name": True}


class EnvironmentsOut(BaseModel):
    project: str
    config_error: str | None = Field(description="Problems in the default branch's environments (the last good "
                                                 "config stays in force)")
    environments: list[EnvironmentOut]
    held_runs: list[dict[str, Any]] = Field(description="Queued runs a freeze holds")


class RunDeploymentsOut(BaseModel):
    run: int
    commit: str
    held: dict[str, Any] | None = Field(description="Set while a freeze holds this run in the queue")
    deployed: list[dict[str, Any]] = Field(description="Per environment: the revision that shipped this commit, "
                                                       "its status, and the revision serving now")
    requests: list[RequestOut]


# ------------------------------------------------------------------ helpers
def _command(request: Request) -> str:
    """The ledger's ``command``: what the CLI says it ran, else the API call."""
    said = request.headers.get("x-chute-command", "")
    call = f"{request.method} {request.url.path}"
    return f"{said[:500]} ({call})" if said else call


def _env_row(s: Session, project: Project, name: str) -> EnvironmentRow:
    rows = {r.name: r for r in deploys.environment_rows(s, project.id)}
    if name not in rows:
        known = ", ".join(rows) or "none"
        raise services.ServiceError(
            f"project {project.name} has no environment {name!r} (known: {known})", 404,
            f"environments come from `environments` in {services.CONFIG_PATH} on the default branch "
            f"({project.default_branch})")
    return rows[name]


def _request_out(state: Any, s: Session, req: DeployRequest) -> RequestOut:
    out = RequestOut(**deploys.request_dict(req))
    if req.revision is not None:
        project = s.get(Project, req.environment.project_id)
        dep = deploys.deployment_in(state.deploys, s, project.name, req.environment, req.revision) \
            if project else None
        if dep is not None:
            out.deployment = DeploymentOut(**dep)
    return out


def _image_of_run(s: Session, project: Project, run_id: int) -> tuple[Run, str]:
    run = s.get(Run, run_id)
    if run is None or run.project_id != project.id:
        raise services.ServiceError(f"project {project.name} has no run {run_id}", 404)
    images = list(run.images)
    if run.status != "success" or not images:
        raise services.ServiceError(
            f"run {run_id} published no image ({run.status})", 409,
            "deploy a run that succeeded and published an image, or name the image with --image")
    return run, deploys.image_reference(images[-1], run.change.commit)


def _run_of_image(s: Session, project: Project, ref: str) -> Run | None:
    """The run that published ``ref`` (by digest, or by name and tag), for its order key and commit."""
    name, _, digest = ref.partition("@")
    q = select(Image).join(Run, Run.id == Image.run_id).where(Run.project_id == project.id)
    if digest:
        img = s.scalars(q.where(Image.digest == digest).order_by(Image.id.desc())).first()
    else:
        repo, _, tag = name.rpartition(":")
        if not repo or "/" in tag:
            return None
        img = next((i for i in s.scalars(q.where(Image.name == repo).order_by(Image.id.desc()))
                    if tag in (i.tags or [])), None)
    return s.get(Run, img.run_id) if img is not None else None


def _refuse_when_closed(state: Any, s: Session, project: Project, env_name: str, override: bool,
                        reason: str) -> None:
    env = deploys.parse_rows(deploys.environment_rows(s, project.id)).get(env_name)
    shut = deploys.closed(env, state.deploys.deployer.clock()) if env is not None else None
    if override and not reason.strip():
        raise services.ServiceError("overriding a freeze needs a reason", 400,
                                    "say why it cannot wait: --reason '...'")
    if shut is not None and not override:
        until = shut.until.isoformat() if shut.until else "an unknown time"
        raise services.ServiceError(
            f"{shut.reason}; deploys open again at {until}", 409,
            "wait for it, or override the freeze with a reason (--override-freeze --reason '...')")


# ------------------------------------------------------------------ routes
@router.get("/projects/{name}/environments", response_model=EnvironmentsOut, response_model_by_alias=True)
def list_environments(name: str, who: Identity = Depends(caller), s: Session = Transaction,
                      state=Depends(get_state)) -> EnvironmentsOut:  # type: ignore[no-untyped-def]
    access.require(who, access.READ, name, session=s)
    p = services.get_project(s, name)
    rows = deploys.environment_rows(s, p.id)
    envs = deploys.parse_rows(rows)
    out = [EnvironmentOut(**deploys.environment_summary(state.deploys, s, p, r, envs.get(r.name))) for r in rows]
    return EnvironmentsOut(project=p.name, config_error=(p.settings or {}).get("environments_error"),
                           environments=out, held_runs=deploys.held_runs(s, p))


@router.get("/projects/{name}/environments/{env}/history", response_model=list[DeploymentOut])
def environment_history(name: str, env: str, limit: int = Query(50, ge=1, le=1000),
                        who: Identity = Depends(caller), s: Session = Transaction,
                        state=Depends(get_state)) -> list[DeploymentOut]:  # type: ignore[no-untyped-def]
    """Deployments newest first: revision, image, status, who, when, why, health verdicts."""
    access.require(who, access.READ, name, session=s)
    p = services.get_project(s, name)
    row = s.scalars(select(EnvironmentRow).where(EnvironmentRow.project_id == p.id,
                                                 EnvironmentRow.name == env)).first()
    if row is None:
        _env_row(s, p, env)  # raises the 404 with the known names
    assert row is not None
    return [DeploymentOut(**d) for d in deploys.history(state.deploys, s, p, row, limit)]


@router.get("/projects/{name}/environments/{env}/requests", response_model=list[RequestOut])
def environment_requests(name: str, env: str, limit: int = Query(50, ge=1, le=1000),
                         who: Identity = Depends(caller), s: Session = Transaction,
                         state=Depends(get_state)) -> list[RequestOut]:  # type: ignore[no-untyped-def]
    access.require(who, access.READ, name, session=s)
    p = services.get_project(s, name)
    row = _env_row(s, p, env)
    reqs = s.scalars(select(DeployRequest).where(DeployRequest.environment_id == row.id)
                     .order_by(DeployRequest.id.desc()).limit(limit))
    return [_request_out(state, s, r) for r in reqs]


@router.post("/projects/{name}/environments/{env}/deploy", response_model=RequestOut, status_code=202, responses=AUTH)
def deploy(name: str, env: str, body: DeployIn, request: Request, who: Identity = Depends(identity),
           state=Depends(get_state)) -> RequestOut:  # type: ignore[no-untyped-def]
    """Queue a deployment of an image (or of a run's published image) to an environment."""
    with state.db.session() as s:
        access.require(who, access.DEPLOY, name, env, session=s)
    if bool(body.image) == bool(body.run):
        raise services.ServiceError("give exactly one of `image` and `run`", 400,
                                    "e.g. --image registry/app@sha256:... or --run 42")
    with state.db.session() as s:
        p = services.get_project(s, name)
        _env_row(s, p, env)
        _refuse_when_closed(state, s, p, env, body.override_freeze, body.reason)
        if body.run is not None:
            run, image = _image_of_run(s, p, body.run)
        else:
            image = (body.image or "").strip()
            if not image or any(c.isspace() for c in image) or image.startswith("-"):
                raise services.ServiceError(f"{body.image!r} is not an image reference", 400)
            run = _run_of_image(s, p, image)
        key = deploys.order_key(s, state.settings, run) if run is not None else ""
        req = state.deploys.request(s, p, env, image=image, key=key, run=run, actor=who.actor,
                                    reason=body.reason or f"deployed by {who.actor}", command=_command(request),
                                    override_freeze=body.override_freeze)
        s.flush()
        out = _request_out(state, s, req)
    state.deploys.wake()
    return out


@router.post("/projects/{name}/environments/{env}/rollback", response_model=RequestOut, status_code=202, responses=AUTH)
def rollback(name: str, env: str, body: RollbackIn, request: Request, who: Identity = Depends(identity),
             state=Depends(get_state)) -> RequestOut:  # type: ignore[no-untyped-def]
    """Queue a rollback to ``to_revision`` (default: the last healthy revision with another image)."""
    with state.db.session() as s:
        access.require(who, access.DEPLOY, name, env, session=s)
        p = services.get_project(s, name)
        _env_row(s, p, env)
        _refuse_when_closed(state, s, p, env, body.override_freeze, body.reason)
        if body.to_revision is not None and deploys.deployment_in(state.deploys, s, p.name, _env_row(s, p, env),
                                                                  body.to_revision) is None:
            raise services.ServiceError(f"{env} has no revision {body.to_revision}", 404,
                                        f"see `chute history {env} --project {p.name}`")
        req = state.deploys.request(s, p, env, kind="rollback", to_revision=body.to_revision, actor=who.actor,
                                    reason=body.reason or f"rolled back by {who.actor}", command=_command(request),
                                    override_freeze=body.override_freeze)
        s.flush()
        out = _request_out(state, s, req)
    state.deploys.wake()
    return out


@router.get("/deploy-requests/{req_id}", response_model=RequestOut)
def get_request(req_id: Id, who: Identity = Depends(caller), s: Session = Transaction,
                state=Depends(get_state)) -> RequestOut:  # type: ignore[no-untyped-def]
    req = s.get(DeployRequest, req_id)
    if req is None:
        access.readable(who)
        raise services.ServiceError(f"no deploy request {req_id}", 404)
    project = s.get(Project, req.environment.project_id)
    access.require(who, access.READ, project.name if project else "", session=s)
    return _request_out(state, s, req)


@router.post("/deploy-requests/{req_id}/override", response_model=RequestOut, responses=AUTH)
def override_request(req_id: Id, body: OverrideIn, request: Request, who: Identity = Depends(identity),
                     state=Depends(get_state)) -> RequestOut:  # type: ignore[no-untyped-def]
    """Let a held (or queued) request through the freeze now; recorded when it deploys."""
    with state.db.session() as s:
        req = s.get(DeployRequest, req_id)
        if req is None:
            raise services.ServiceError(f"no deploy request {req_id}", 404)
        project = s.get(Project, req.environment.project_id)
        access.require(who, access.DEPLOY, project.name if project else "", req.environment.name, session=s)
        state.deploys.override_request(s, req, actor=who.actor, reason=body.reason, command=_command(request))
        s.flush()
        out = _request_out(state, s, req)
    state.deploys.wake()
    return out


@router.post("/runs/{run_id}/override-freeze", response_model=RunDeploymentsOut, responses=AUTH)
def override_run(run_id: Id, body: OverrideIn, request: Request, who: Identity = Depends(identity),
                 state=Depends(get_state)) -> RunDeploymentsOut:  # type: ignore[no-untyped-def]
    """Release a run a freeze holds in the queue; its deployments go through the freeze (audited)."""
    with state.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise services.ServiceError(f"no run {run_id}", 404)
        # Deployer on every environment the freeze holds the run for (all of them when unknown).
        held = (deploys.run_hold_info(s, run) or {}).get("environments") or [None]
        for env in held:
            access.require(who, access.DEPLOY, run.project.name, env, session=s)
        state.deploys.override_run(s, run, actor=who.actor, reason=body.reason, command=_command(request))
        s.flush()
        out = _run_deployments(state, s, run)
    state.wake_agents()
    return out


@router.get("/runs/{run_id}/deployments", response_model=RunDeploymentsOut)
def run_deployments(run_id: Id, who: Identity = Depends(caller), s: Session = Transaction,
                    state=Depends(get_state)) -> RunDeploymentsOut:  # type: ignore[no-untyped-def]
    """Where this run's change is deployed, and whether a freeze holds the run."""
    run = s.get(Run, run_id)
    if run is None:
        access.readable(who)
        raise services.ServiceError(f"no run {run_id}", 404)
    access.require(who, access.READ, run.project.name, session=s)
    return _run_deployments(state, s, run)


def _run_deployments(state: Any, s: Session, run: Run) -> RunDeploymentsOut:
    reqs = s.scalars(select(DeployRequest).where(DeployRequest.run_id == run.id).order_by(DeployRequest.id))
    return RunDeploymentsOut(run=run.id, commit=run.change.commit, held=deploys.run_hold_info(s, run),
                             deployed=deploys.deployed_where(s, run.project, [run.change.commit]),
                             requests=[_request_out(state, s, r) for r in reqs])
