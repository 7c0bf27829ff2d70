"""Projects: register a repository, list, show, trigger runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Project, Run

from .. import access, services
from ..access import Identity
from .convert import RUN_OUT_LOADS, run_out
from .deps import Transaction, caller, get_state, identity
from .schemas import AUTH, ProjectCreated, ProjectIn, ProjectOut, RunOut, TriggerIn, errors

router = APIRouter(prefix="/api/v1", tags=["projects"], responses=errors(400, 401, 403, 404, 409, 422))


def last_status(s: Session, project_ids: list[int]) -> dict[int, dict[str, str]]:
    """Per project: pipeline -> status of its newest run."""
    out: dict[int, dict[str, str]] = {pid: {} for pid in project_ids}
    newest = services.newest_run_ids(s, project_ids)
    rows = s.execute(select(Run.project_id, Run.pipeline, Run.status).where(Run.id.in_(newest))
                     .order_by(Run.pipeline))
    for pid, pipeline, status in rows:
        out[pid][pipeline] = status
    return out


def project_out(s: Session, p: Project, status: dict[str, str] | None = None) -> ProjectOut:
    if status is None:
        status = last_status(s, [p.id])[p.id]
    return ProjectOut(name=p.name, repo_url=p.repo_url, review_kind=p.review_kind,
                      default_branch=p.default_branch, has_pipeline=p.has_pipeline,
                      config_error=p.config_error, created_at=p.created_at, last_status=status)


def webhook_instructions(kind: str, url: str) -> str:
    return {
        "gerrit": f"Gerrit webhooks plugin: url = {url}, and send the secret as the X-Chute-Token header "
                  "(or append &token=<secret> to the URL).",
        "gitlab": f"GitLab > Settings > Webhooks: URL {url}, Secret token = the secret; "
                  "events: push, tag push, merge request, comments.",
        "github": f"GitHub > Settings > Webhooks: Payload URL {url}, content type application/json, "
                  "Secret = the secret; events: push, pull requests, issue comments.",
        "git": f"post-receive hook: chute trigger --server <this server> --project <name> (or POST to {url} "
               "with Authorization: Bearer <secret>).",
    }[kind]


@router.get("/projects", response_model=list[ProjectOut])
def list_projects(who: Identity = Depends(caller), s: Session = Transaction) -> list[ProjectOut]:
    visible = access.readable(who)
    q = select(Project).order_by(Project.name)
    if visible is not None:
        q = q.where(Project.name.in_(visible))
    projects = list(s.scalars(q))
    status = last_status(s, [p.id for p in projects])
    return [project_out(s, p, status[p.id]) for p in projects]


@router.post("/projects", response_model=ProjectCreated, status_code=201, responses=AUTH)
def add_project(body: ProjectIn, who: Identity = Depends(identity), s: Session = Transaction,
                state=Depends(get_state)) -> ProjectCreated:  # type: ignore[no-untyped-def]
    p, info = access.add_project(s, state.settings, who, body.repo, body.name, review_kind=body.review_kind,
                                 review_project=body.review_project)
    url = f"{state.settings.base_url}/webhooks/{p.review_kind}?project={p.name}"
    base = project_out(s, p)
    return ProjectCreated(**base.model_dump(), webhook_url=url, webhook_secret=p.webhook_secret,
                          pipelines=info["pipelines"], instructions=webhook_instructions(p.review_kind, url))


@router.get("/projects/{name}", response_model=ProjectOut)
def get_project(name: str, who: Identity = Depends(caller), s: Session = Transaction) -> ProjectOut:
    access.require(who, access.READ, name, session=s)
    return project_out(s, services.get_project(s, name))


@router.get("/projects/{name}/runs", response_model=list[RunOut])
def project_runs(
    name: str,
    pipeline: str | None = None,
    branch: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    who: Identity = Depends(caller),
    s: Session = Transaction,
    state=Depends(get_state),  # type: ignore[no-untyped-def]
) -> list[RunOut]:
    from chute.store import Change

    access.require(who, access.READ, name, session=s)
    p = services.get_project(s, name)
    q = select(Run).join(Change).where(Run.project_id == p.id)
    if pipeline:
        q = q.where(Run.pipeline == pipeline)
    if branch:
        q = q.where(Change.branch == branch)
    if status:
        q = q.where(Run.status == status)
    runs = s.scalars(q.options(*RUN_OUT_LOADS).order_by(Run.id.desc()).limit(limit)).all()
    return [run_out(r, state.settings.base_url) for r in runs]


@router.post("/projects/{name}/trigger", response_model=list[RunOut], status_code=201,
             responses=AUTH | errors(502))
def trigger(name: str, body: TriggerIn, who: Identity = Depends(identity),
            state=Depends(get_state)) -> list[RunOut]:  # type: ignore[no-untyped-def]
    with state.db.session() as s:
        out = _trigger(s, state, name, body, who)
    state.wake_agents()
    return out


def _trigger(s: Session, state, name: str, body: TriggerIn, who: Identity) -> list[RunOut]:  # type: ignore[no-untyped-def]
    access.require(who, access.TRIGGER, name, session=s)
    p = services.get_project(s, name)
    ref = body.ref or f"refs/heads/{p.default_branch}"
    if not ref.startswith("refs/"):
        ref = f"refs/tags/{ref}" if ref.startswith("v") and ref[1:2].isdigit() else f"refs/heads/{ref}"
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else ""
    kind = "tag" if ref.startswith("refs/tags/") else "manual"
    inc = services.Incoming(kind=kind, commit=body.commit or "", ref=ref, branch=branch, params=body.params)
    runs = services.ingest(s, state.settings, p, inc, actor=who.actor, trigger="manual", pipelines=body.pipelines)
    s.flush()
    return [run_out(r, state.settings.base_url) for r in runs]
