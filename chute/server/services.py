"""What the server does, independent of HTTP: changes in, runs queued, results stored.

Routes, webhooks, the poller and the CLI all call these functions, each inside
one database transaction that also writes the ledger events describing it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from chute.repo import Mirror, RepoError, mirror_for
from chute.store import Change, Image, Job, Project, Run, StageResult, ledger, utcnow
from chute.store.queue import enqueue

from .settings import Settings

CONFIG_PATH = ".pipeline/config.yaml"
PRIVILEGED_STEPS = frozenset({"publish", "promote", "deploy", "trigger"})
FINAL = frozenset({"success", "failure", "error", "cancelled"})


class ServiceError(Exception):
    """A request the server cannot do; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.hint = message, status, hint


@dataclass
class Incoming:
    """A change as it arrives from any source (webhook, poller, CLI)."""

    kind: str  # patchset | merged | push | tag | comment | manual
    commit: str = ""
    ref: str = ""
    branch: str = ""  # the target branch for reviews, the pushed branch otherwise
    number: str = ""
    patchset: int = 0
    author: str = ""
    title: str = ""
    url: str = ""
    recheck: bool = False
    comment: str = ""
    params: dict[str, str] = field(default_factory=dict)


def mirror(settings: Settings, project: Project) -> Mirror:
    return mirror_for(settings.home, project.name, project.repo_url)


# ------------------------------------------------------------------ pipeline config
@dataclass
class PipelineInfo:
    name: str
    privileged: bool  # publishes, promotes, deploys or triggers


def read_pipelines(m: Mirror, commit: str) -> tuple[list[PipelineInfo], str | None]:
    """The pipelines of ``.pipeline/config.yaml`` at ``commit``, or an error text."""
    return parse_pipelines(m.read_file(commit, CONFIG_PATH), commit)


def parse_pipelines(raw: bytes | None, commit: str) -> tuple[list[PipelineInfo], str | None]:
    """:func:`read_pipelines` of a config already read (``raw``: its bytes at ``commit``, None if absent)."""
    if raw is None:
        return [], f"{CONFIG_PATH} does not exist at {commit[:12]}"
    # Imported only when there is a config to parse: a repository without one needs no parser.
    from chute.config import ConfigError
    from chute.pipeline import parse_pipeline_config

    try:
        cfg = parse_pipeline_config(raw, CONFIG_PATH)
    except ConfigError as err:
        return [], err.format()
    out = []
    for name, pipe in cfg.pipelines.items():
        steps = {step for stage in pipe.stages.values() for step in stage.steps()}
        out.append(PipelineInfo(name, bool(steps & PRIVILEGED_STEPS)))
    return out, None


def select_pipelines(pipes: list[PipelineInfo], kind: str) -> list[PipelineInfo]:
    """Which pipelines an event runs (docs/server.md): patches test, merges and tags publish.

    A patch under review runs the pipelines that only build and test; a merge,
    a push to the default branch or a tag runs the ones that publish or deploy
    (and everything when no pipeline does).
    """
    if kind in ("patchset", "push-branch"):
        return [p for p in pipes if not p.privileged]
    if kind in ("merged", "push", "tag", "manual"):
        privileged = [p for p in pipes if p.privileged]
        return privileged or pipes
    return []


# ------------------------------------------------------------------ projects
def add_project(s: Session, settings: Settings, repo_url: str, name: str | None, *, actor: str,
                review_kind: str = "git", review_project: str | None = None) -> tuple[Project, dict[str, Any]]:
    """Register a repository: fetch it, read its pipeline config, make a webhook secret."""
    from chute.repo import is_local_path

    if not name:
        base = repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        name = base or "project"
    if s.scalars(select(Project).where(Project.name == name)).first():
        raise ServiceError(f"a project named {name!r} already exists", 409,
                           "choose another name with --name")
    if is_local_path(repo_url):
        from pathlib import Path

        p = Path(repo_url).expanduser().resolve()
        if not (p / ".git").exists() and not (p / "HEAD").exists():
            raise ServiceError(f"{repo_url} is not a git repository", 400,
                               "give the path of a git checkout or a git URL")
        repo_url = str(p)
    project = Project(name=name, repo_url=repo_url, review_kind=review_kind,
                      review_project=review_project or name, webhook_secret=secrets.token_urlsafe(24))
    m = mirror(settings, project)
    try:
        m.sync()
        head = _default_branch(m)
    except RepoError as err:
        raise ServiceError(f"cannot fetch {repo_url}: {err}", 400, "check the URL and that git can reach it") from None
    project.default_branch = head or "main"
    info = inspect_config(m, project)
    project.has_pipeline = info["has_pipeline"]
    project.config_error = info.get("error")
    project.polled_refs = m.refs()
    s.add(project)
    s.flush()
    ledger.record(s, "project.added", actor=actor, project=name, data={"repo": repo_url})
    from .deploys import refresh_environments

    refresh_environments(s, settings, project)  # the default branch's deployment environments
    return project, info


def _default_branch(m: Mirror) -> str | None:
    from chute.repo import _git

    proc = _git(["symbolic-ref", "--short", "HEAD"], cwd=m.path, check=False)
    out = proc.stdout.decode().strip()
    return out or None


def inspect_config(m: Mirror, project: Project) -> dict[str, Any]:
    try:
        commit = m.resolve(f"refs/heads/{project.default_branch}")
    except RepoError:
        return {"has_pipeline": False, "error": f"branch {project.default_branch} not found", "pipelines": []}
    raw = m.read_file(commit, CONFIG_PATH)
    pipes, error = parse_pipelines(raw, commit)
    has = raw is not None
    return {"has_pipeline": has, "error": error if has else None, "commit": commit,
            "pipelines": [{"name": p.name, "privileged": p.privileged} for p in pipes]}


def get_project(s: Session, name: str) -> Project:
    p = s.scalars(select(Project).where(Project.name == name)).first()
    if p is None:
        raise ServiceError(f"no project named {name!r}", 404, "list projects with GET /api/v1/projects")
    return p


# ------------------------------------------------------------------ changes and runs
def _find_or_make_change(s: Session, project: Project, inc: Incoming) -> tuple[Change, bool]:
    kind = {"merged": "push", "push-branch": "push"}.get(inc.kind, inc.kind)
    if kind == "comment":
        kind = "patchset"
    q = select(Change).where(Change.project_id == project.id, Change.kind == kind,
                             Change.number == inc.number, Change.patchset == inc.patchset,
                             Change.commit == inc.commit)
    existing = s.scalars(q).first()
    if existing is not None:
        return existing, False
    ch = Change(project=project, kind=kind, number=inc.number, patchset=inc.patchset, commit=inc.commit,
                ref=inc.ref, branch=inc.branch, author=inc.author, title=inc.title, url=inc.url)
    s.add(ch)
    s.flush()
    return ch, True


def ingest(s: Session, settings: Settings, project: Project, inc: Incoming, *, actor: str,
           trigger: str, pipelines: list[str] | None = None) -> list[Run]:
    """Record a change and queue the runs it calls for."""
    m = mirror(settings, project)
    if inc.kind == "comment":
        if not inc.recheck:
            return []
        return recheck(s, settings, project, inc, actor=actor)
    # Git calls are the bulk of a webhook's time (bench/README.md): whether the commit is there,
    # its full id, author and subject come from one `git show -s` (Mirror.commit_meta).
    info: dict[str, str] | None = None
    try:
        if inc.ref and (inc.ref.startswith("refs/changes/") or inc.ref.startswith("refs/pull/")
                        or inc.ref.startswith("refs/merge-requests/")):
            m.fetch_ref(inc.ref)
        else:
            m.sync()
        if inc.commit:
            info = m.commit_meta(inc.commit)
            if info is None:
                m.sync()
                info = m.commit_meta(inc.commit)
    except RepoError as err:
        raise ServiceError(f"cannot fetch the change's commit: {err}", 502) from None
    if not inc.commit:
        ref = inc.ref or f"refs/heads/{project.default_branch}"
        try:
            inc.commit = m.resolve(ref)
        except RepoError:
            raise ServiceError(f"{ref[:300]!r} names no commit in {project.repo_url}", 422,
                               "give an existing branch, tag or ref") from None
        info = m.commit_meta(inc.commit)
    if info is None:
        raise ServiceError(f"commit {inc.commit[:40]} is not in {project.repo_url} (ref {inc.ref or '-'})", 422,
                           "the event names a commit the repository does not have; check the project's repo URL")
    if len(inc.commit) not in (40, 64):  # an abbreviation: changes are keyed by the full id
        inc.commit = info["commit"]
    inc.title = inc.title or info["subject"]
    inc.author = inc.author or info["author"]
    change, new = _find_or_make_change(s, project, inc)
    if new:
        kind = {"patchset": "change.uploaded", "merged": "change.merged", "push": "change.pushed",
                "push-branch": "change.pushed", "tag": "change.tagged"}.get(inc.kind, "change.pushed")
        ledger.record(s, kind, change=change, actor=actor or inc.author,
                      data={"ref": inc.ref, "branch": inc.branch, "title": inc.title, "url": inc.url})
    raw = m.read_file(inc.commit, CONFIG_PATH)  # memoised by commit: the trust notes, credentials reuse it
    pipes, error = parse_pipelines(raw, inc.commit)
    has_config = raw is not None
    if inc.branch == project.default_branch or not project.has_pipeline:
        project.has_pipeline = has_config
    if error is not None:
        if not has_config:
            return []  # no pipeline config at this commit: nothing to run (the project page says what to add)
        if inc.branch == project.default_branch:
            project.config_error = error
        return [config_error_run(s, project, change, error, trigger=trigger, actor=actor)]
    if inc.branch == project.default_branch:
        project.config_error = None
    # Trusted only for reviewed code: the default branch's commits and tags (chute/server/trust.py).
    from . import trust

    verdict = trust.decide(m, project, inc.kind, inc.commit, inc.ref, inc.branch)
    trusted = verdict.trusted
    chosen = [p for p in pipes if pipelines is None or p.name in pipelines]
    if pipelines is None:
        # Untrusted code runs the pipelines that only build and test, whatever the event.
        chosen = select_pipelines(chosen, inc.kind if trusted or inc.kind == "patchset" else "push-branch")
        if not chosen and not trusted and pipes:
            wanted = trust.review_pipelines(m, project, [p.name for p in pipes])
            chosen = [p for p in pipes if p.name in wanted]
    unknown = sorted(set(pipelines or []) - {p.name for p in pipes})
    if unknown:
        raise ServiceError(f"no pipeline named {', '.join(unknown)} in {CONFIG_PATH}", 400,
                           f"pipelines defined: {', '.join(p.name for p in pipes) or 'none'}")
    if trigger in ("webhook", "poll"):
        # A merge arrives twice on most systems (merge event + branch push, or a webhook and
        # the poller): run each pipeline once per commit and trust level.
        seen = set(s.scalars(
            select(Run.pipeline).join(Change).where(
                Run.project_id == project.id, Change.commit == inc.commit, Run.trusted.is_(trusted),
                Run.trigger.in_(("webhook", "poll")))))
        chosen = [p for p in chosen if p.name not in seen]
    return [queue_run(s, settings, project, change, p.name, trigger=trigger, actor=actor, trusted=trusted,
                      params=inc.params, why=verdict.why) for p in chosen]


def config_error_run(s: Session, project: Project, change: Change, error: str, *, trigger: str, actor: str) -> Run:
    """A change whose pipeline config is broken gets one failed run that shows why (no job)."""
    now = utcnow()
    run = Run(project=project, change=change, pipeline="config", trigger=trigger, actor=actor, status="error",
              reason=f"{CONFIG_PATH} is invalid at {change.commit[:12]}:\n{error}", started_at=now,
              finished_at=now, result={"status": "error", "error": error, "stages": [], "images": []})
    s.add(run)
    s.flush()
    ledger.record(s, "run.queued", run=run, actor=actor, data={"pipeline": "config", "trigger": trigger})
    ledger.record(s, "run.finished", run=run, actor="server", outcome="error",
                  data={"pipeline": "config", "trigger": trigger, "reason": "invalid pipeline config"})
    return run


def queue_run(s: Session, settings: Settings, project: Project, change: Change, pipeline: str, *,
              trigger: str, actor: str, trusted: bool, params: dict[str, str] | None = None,
              rerun_of: Run | None = None, reuse_from: Run | None = None,
              reuse: dict[str, Any] | None = None, why: str = "") -> Run:
    run = Run(project=project, change=change, pipeline=pipeline, trigger=trigger, actor=actor,
              trusted=trusted, params=params or {}, rerun_of=rerun_of.id if rerun_of else None,
              reuse_from=reuse_from.id if reuse_from else None)
    s.add(run)
    s.flush()
    payload = {
        "project": project.name,
        "repo_url": project.repo_url,
        "commit": change.commit,
        "ref": change.ref,
        "branch": change.branch or project.default_branch,
        "default_branch": project.default_branch,
        "pipeline": pipeline,
        "change": {"kind": change.kind, "number": change.number, "patchset": change.patchset},
        "trusted": trusted,
        # The secrets the reviewed config asks for (names only; the agent fetches the values).
        "credentials": _credentials(settings, project, change.commit, pipeline) if trusted else [],
        "registry": settings.registry,
        "params": params or {},
        "reuse": reuse or {},
        "run_url": settings.run_url(run.id),
    }
    ledger.record(s, "run.queued", run=run, actor=actor, data={"pipeline": pipeline, "trigger": trigger})
    if not trusted:
        _note_untrusted(s, settings, project, run, why or (f"a {trigger} of run {rerun_of.id}, which was untrusted"
                                                            if rerun_of is not None else "not reviewed code"))
    # A trusted run that would deploy into a freeze waits in the queue until it ends (deploy.held).
    from .deploys import hold_new_run

    enqueue(s, run, payload, max_attempts=settings.max_attempts,
            not_before=hold_new_run(s, settings, project, run))
    return run


def _note_untrusted(s: Session, settings: Settings, project: Project, run: Run, why: str) -> None:
    """Why the run is untrusted and what it will not do, as the first lines of its log."""
    from . import trust

    notes = [f"untrusted run: {why}; it gets no secrets and may not publish, promote, deploy or trigger"]
    try:
        notes += trust.review_notes(mirror(settings, project), project, run.change.commit, [run.pipeline])
    except RepoError:
        pass
    trust.record_notes(s, run, notes)


def _credentials(settings: Settings, project: Project, commit: str, pipeline: str) -> list[str]:
    from . import trust

    try:
        return trust.credential_ids_at(mirror(settings, project), commit, pipeline)
    except RepoError:
        return []


def recheck(s: Session, settings: Settings, project: Project, inc: Incoming, *, actor: str) -> list[Run]:
    """A "recheck" comment: rerun the pipelines of the change's latest patchset.

    Only a change under review is rechecked: a merged change (same number, kind ``push``) has
    trusted runs, and whoever may comment must not be able to rerun its publish or deploy.
    """
    q = select(Change).where(Change.project_id == project.id, Change.number == inc.number,
                             Change.kind == "patchset")
    if inc.patchset:
        q = q.where(Change.patchset == inc.patchset)
    change = s.scalars(q.order_by(Change.patchset.desc(), Change.id.desc())).first()
    if change is None:
        return []
    latest: dict[str, Run] = {}
    for run in s.scalars(select(Run).where(Run.change_id == change.id).order_by(Run.id)):
        latest[run.pipeline] = run
    ledger.record(s, "run.recheck", change=change, actor=actor, data={"comment": inc.comment[:200]})
    return [queue_run(s, settings, project, change, r.pipeline, trigger="recheck", actor=actor,
                      trusted=r.trusted, params=r.params, rerun_of=r) for r in latest.values()]


def rerun(s: Session, settings: Settings, run: Run, *, actor: str, failed_only: bool = False) -> Run:
    """Run the same pipeline on the same commit again; optionally reuse the stages that passed."""
    if run.status not in FINAL:
        raise ServiceError(f"run {run.id} is still {run.status}", 409, "cancel it first or wait for it to finish")
    reuse: dict[str, Any] = {}
    if failed_only:
        for st in run.stages:
            if st.status in ("success", "reused"):
                reuse[st.name] = {"exports": st.exports, "run": st.reused_from or run.id}
        if not reuse:
            raise ServiceError(f"run {run.id} has no passed stage to reuse", 409, "use a plain rerun")
    new = queue_run(s, settings, run.project, run.change, run.pipeline, trigger="rerun", actor=actor,
                    trusted=run.trusted, params=run.params, rerun_of=run,
                    reuse_from=run if failed_only else None, reuse=reuse)
    ledger.record(s, "run.rerun", run=new, actor=actor,
                  data={"of": run.id, "failed_only": failed_only, "reused": sorted(reuse)})
    return new


def set_graph(s: Session, run: Run, graph: dict[str, Any]) -> None:
    """The agent tells us the stage graph when it starts; pending stage rows are created."""
    run.graph = graph
    existing = {st.name for st in run.stages}
    for name in graph.get("stages", []):
        if name not in existing:
            run.stages.append(StageResult(name=name, status="pending"))


def update_stage(s: Session, run: Run, name: str, status: str, *, error: str = "",
                 exports: dict[str, Any] | None = None, at: datetime | None = None,
                 reused_from: int | None = None) -> StageResult:
    st = next((x for x in run.stages if x.name == name), None)
    if st is None:
        st = StageResult(name=name)
        run.stages.append(st)
    now = at or utcnow()
    if status == "running" and st.started_at is None:
        st.started_at = now
    st.status = status
    if error:
        st.error = error
    if exports is not None:
        st.exports = exports
    if reused_from is not None:
        st.reused_from = reused_from
    if status not in ("pending", "running"):
        st.finished_at = now
        st.started_at = st.started_at or now
        ledger.record(s, "stage.finished", run=run, stage=name, outcome=status,
                      actor="agent", data={"error": error[:500]} if error else {})
    return st


def complete_run(s: Session, run: Run, result: dict[str, Any], *, agent: str) -> None:
    """Store the runner's result document; write the images and the run's ledger events."""
    run.result = result
    status = result.get("status", "error")
    if run.status == "cancelled":
        status = "cancelled"
    current = {st.name: st for st in run.stages}
    for st in result.get("stages", []):
        have = current.get(st["name"])
        stage_status = st.get("status", "error")
        if have is not None and have.status == stage_status and have.finished_at is not None:
            # Already reported live by the agent: keep its times, only fill what is missing.
            have.exports = st.get("exports") or have.exports
            have.reused_from = have.reused_from or st.get("reused_from")
            continue
        update_stage(s, run, st["name"], stage_status, error=st.get("error", "") or "",
                     exports=st.get("exports") or {}, reused_from=st.get("reused_from"))
    for img in result.get("images", []):
        image = Image(run_id=run.id, stage=img.get("stage", ""), name=img["name"], tags=list(img.get("tags", [])),
                      digest=img["digest"])
        s.add(image)
        ledger.record(s, "image.published", run=run, stage=image.stage, image_digest=image.digest,
                      actor=f"agent:{agent}", outcome="pushed",
                      data={"name": image.name, "tags": image.tags})
    run.status = status if status in FINAL else "error"
    run.reason = result.get("error", "") or run.reason if run.status != "success" else ""
    run.finished_at = utcnow()
    ledger.record(s, "run.finished", run=run, actor=f"agent:{agent}", outcome=run.status,
                  data={"duration": result.get("duration"), "pipeline": run.pipeline, "trigger": run.trigger,
                        "rerun_of": run.rerun_of})


# A project's distinct pipelines (or branches), each found with one index probe: the recursion
# steps from one value to the next larger one. Neither SQLite's nor PostgreSQL's DISTINCT can
# skip through an index like this, and on PostgreSQL a DISTINCT read every run of the project
# (200 ms for 50,000 runs).
_PIPELINE_HEADS = text("""
WITH RECURSIVE p(pipeline) AS (
    SELECT min(pipeline) FROM runs WHERE project_id = :project
    UNION ALL
    SELECT (SELECT min(r.pipeline) FROM runs r WHERE r.project_id = :project AND r.pipeline > p.pipeline)
    FROM p WHERE p.pipeline IS NOT NULL
)
SELECT pipeline, (SELECT max(r.id) FROM runs r WHERE r.project_id = :project AND r.pipeline = p.pipeline)
FROM p WHERE pipeline IS NOT NULL ORDER BY pipeline
""")
_BRANCHES = text("""
WITH RECURSIVE b(branch) AS (
    SELECT min(branch) FROM changes WHERE project_id = :project
    UNION ALL
    SELECT (SELECT min(c.branch) FROM changes c WHERE c.project_id = :project AND c.branch > b.branch)
    FROM b WHERE b.branch IS NOT NULL
)
SELECT branch FROM b WHERE branch IS NOT NULL ORDER BY branch
""")


def pipeline_heads(s: Session, project_id: int) -> dict[str, int]:
    """pipeline -> id of its newest run, for one project (on ix_runs_project_pipeline)."""
    return {name: run_id for name, run_id in s.execute(_PIPELINE_HEADS, {"project": project_id})}


def branches(s: Session, project_id: int) -> list[str]:
    """The branches the project's changes were made on (on ix_changes_project_branch)."""
    return [b for b in s.scalars(_BRANCHES, {"project": project_id}) if b]


def newest_run_ids(s: Session, project_ids: list[int] | None = None) -> list[int]:
    """The id of the newest run of each pipeline of each project (all projects by default)."""
    if project_ids is None:
        project_ids = list(s.scalars(select(Project.id)))
    return [run_id for pid in project_ids for run_id in pipeline_heads(s, pid).values()]


def newest_image_runs(s: Session, project_ids: list[int]) -> dict[int, int]:
    """Per project, the newest run that published an image (walks the project's runs newest first)."""
    has_image = select(Image.id).where(Image.run_id == Run.id).exists()
    out: dict[int, int] = {}
    for pid in project_ids:
        run_id = s.scalar(select(Run.id).where(Run.project_id == pid, has_image).order_by(Run.id.desc()).limit(1))
        if run_id is not None:
            out[pid] = run_id
    return out


def job_for(s: Session, run: Run) -> Job | None:
    return s.scalars(select(Job).where(Job.run_id == run.id)).first()
