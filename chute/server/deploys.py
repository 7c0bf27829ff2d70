"""Continuous deployment in the server: environments, deploy requests, the deploy worker, freezes.

What it does (docs/deploy.md, "The server"):

* **Environments** come from the ``environments`` section of ``.pipeline/config.yaml`` on the
  project's *default branch* (the reviewed config; a patch never changes them) and are
  refreshed whenever that branch moves (:func:`refresh_environments`).
* **Deploy requests** (``deploy_requests``) are what a pipeline, a promotion or a person asked
  for. Each is written with a ``deploy.queued`` event and carried out by the deploy worker (a
  thread of the server), off the request path, through :class:`chute.deploy.Deployer` on a
  :class:`~chute.store.deploy_store.SqlDeploymentStore`.
* **Continuous deployment**: when a trusted run succeeds, its last published image is requested
  for every environment with ``auto: true`` and ``from: <its pipeline>`` on its branch, and its
  PipelineLib ``promote`` steps request the environments they name; a healthy deployment
  requests every ``auto`` environment that comes ``after`` it (the Deployer's ``on_published``
  / ``promote_from`` rules, queued so that a freeze can hold them).
* **Order**: each request carries an ``order_key`` (:func:`order_key`): the commit time of the
  run's change, then the run id. An older image never replaces a newer one that is deployed
  (the Deployer refuses it) or queued (the older request is superseded).
* **Freezes and deploy windows are enforced here**: a request for a frozen (or closed)
  environment is *held* until it opens (``deploy.held``), then released; a trusted run whose
  pipeline would deploy to a frozen environment is held in the queue (its job's
  ``not_before``), also when it was queued before the freeze began. Overrides need a person
  and a reason and are written to the ledger (``deploy.freeze-override``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.deploy import (
    DeployBlocked,
    DeployBusy,
    Deployer,
    DeployError,
    Deployment,
    Environment,
    PodmanTarget,
    active_freeze,
    outside_windows,
    parse_environments,
)
from chute.deploy.environments import promotion_order
from chute.deploy.model import HEALTHY, KIND_DEPLOY
from chute.repo import RepoError
from chute.store import DeployRequest, Event, Image, Job, Project, Run, ledger, utcnow
from chute.store import Environment as EnvironmentRow
from chute.store.deploy_store import SqlDeploymentStore

from . import services

log = logging.getLogger("chute.deploys")

# Request statuses: waiting ones, and final ones.
WAITING = ("queued", "held")
FINAL_REQUEST = ("done", "blocked", "superseded")
AUTOMATIC = ("auto", "promotion", "promote-step")  # pipeline-made requests (people's are "person")
RETRY_BUSY = 2.0  # seconds before a request whose environment is busy (another process) is tried again


# ------------------------------------------------------------------ calendar
@dataclass(frozen=True)
class Closed:
    """Why an environment takes no deploy now, and when it opens again (None: not within two weeks)."""

    reason: str
    until: datetime | None
    freeze: dict[str, Any] | None  # {from, to, reason} of the freeze in force
    windows: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "until": _iso(self.until), "freeze": self.freeze, "windows": self.windows}


def closed(env: Environment, now: datetime) -> Closed | None:
    """None when ``env`` may be deployed at ``now``; else why not and until when."""
    window = active_freeze(env, now)
    shut = outside_windows(env, now)
    if window is None and not shut:
        return None
    until = next_open(env, now)
    if window is not None:
        reason = f"{env.name} is frozen from {window.describe()}"
        freeze = {"from": _iso(window.start), "to": _iso(window.end), "reason": window.reason}
    else:
        reason = f"{env.name} is outside its deploy windows (" + "; ".join(w.describe() for w in env.windows) + ")"
        freeze = None
    return Closed(reason, until, freeze, [w.describe() for w in env.windows])


def next_open(env: Environment, now: datetime, horizon_days: int = 14) -> datetime | None:
    """The first moment at or after ``now`` with no freeze in force and inside a deploy window."""
    candidates = {now} | {f.end for f in env.freeze if f.end > now}
    for w in env.windows:
        local = now.astimezone(ZoneInfo(w.timezone))
        for day in range(horizon_days + 1):
            d = local.date() + timedelta(days=day)
            candidates.add(datetime.combine(d, w.start, ZoneInfo(w.timezone)).astimezone(UTC))
    for moment in sorted(candidates):
        if moment >= now and active_freeze(env, moment) is None and not outside_windows(env, moment):
            return moment
    return None


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt is not None else None


# ------------------------------------------------------------------ environments from the default branch
def _promoted_by(cfg: Any, names: list[str]) -> dict[str, list[str]]:
    """Environment -> pipelines whose PipelineLib ``promote`` steps name it (no names: all of them)."""
    out: dict[str, list[str]] = {n: [] for n in names}
    for pname, pipe in cfg.pipelines.items():
        for stage in pipe.stages.values():
            items = stage.promote if isinstance(stage.promote, list) else []
            for item in items:
                wanted = item.get("environments") if isinstance(item, dict) else None
                targets = [e for e in (wanted or []) if isinstance(e, str)] or list(names)
                for env in targets:
                    if env in out and pname not in out[env]:
                        out[env].append(pname)
    return out


def refresh_environments(s: Session, settings: Any, project: Project, *, force: bool = False) -> bool:
    """Store the environments of the default branch's config when that branch moved; True when refreshed.

    Only ``refs/heads/<default branch>`` of the server's mirror is read: what is there was
    reviewed and merged. A config with errors leaves the stored environments as they were and
    keeps the error (``project.settings["environments_error"]``) for the UI and API.
    """
    from chute.config import ConfigError
    from chute.pipeline import parse_pipeline_config

    m = services.mirror(settings, project)
    try:
        head = m.resolve(f"refs/heads/{project.default_branch}")
    except RepoError:
        return False
    known = dict(project.settings or {})
    if known.get("environments_commit") == head and not force:
        return False
    raw = m.read_file(head, services.CONFIG_PATH)
    error: str | None = None
    envs_raw: dict[str, Any] = {}
    promoted: dict[str, list[str]] = {}
    if raw is not None:
        try:
            cfg = parse_pipeline_config(raw, services.CONFIG_PATH)
            parsed = parse_environments(cfg.environments_raw, cfg.document, pipelines=list(cfg.pipelines))
            envs_raw = {name: (cfg.environments_raw or {}).get(name) or {} for name in parsed}
            promoted = _promoted_by(cfg, list(parsed))
        except ConfigError as err:
            error = err.format()
    if error is None:
        rows = {r.name: r for r in s.scalars(select(EnvironmentRow).where(EnvironmentRow.project_id == project.id))}
        for name, value in envs_raw.items():
            row = rows.get(name)
            config = {"raw": value, "commit": head, "promoted_by": promoted.get(name, []), "removed": False}
            if row is None:
                s.add(EnvironmentRow(project_id=project.id, name=name, config=config, revision_counter=0))
            else:
                row.config = config
        for name, row in rows.items():
            if name not in envs_raw and not (row.config or {}).get("removed"):
                row.config = {**(row.config or {}), "removed": True, "commit": head}
    known.update(environments_commit=head, environments_error=error)
    project.settings = known
    s.flush()
    return True


def environment_rows(s: Session, project_id: int) -> list[EnvironmentRow]:
    """The project's configured environments (not the ones removed from the config), in file order."""
    rows = s.scalars(select(EnvironmentRow).where(EnvironmentRow.project_id == project_id)
                     .order_by(EnvironmentRow.id)).all()
    return [r for r in rows if (r.config or {}).get("raw") is not None and not (r.config or {}).get("removed")]


_PARSED: dict[str, dict[str, Environment]] = {}
_PARSED_LOCK = threading.Lock()


def parse_rows(rows: list[EnvironmentRow]) -> dict[str, Environment]:
    """The stored raw configs, parsed (cached by content: rows change only when the config does)."""
    raw = {r.name: r.config["raw"] for r in rows}
    key = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    with _PARSED_LOCK:
        hit = _PARSED.get(key)
    if hit is not None:
        return hit
    envs = parse_environments(raw)  # was valid when stored; from/pipelines were checked then
    ordered = {name: envs[name] for name in raw if name in envs}
    with _PARSED_LOCK:
        if len(_PARSED) > 256:
            _PARSED.clear()
        _PARSED[key] = ordered
    return ordered


def deploy_targets(s: Session, project: Project, run: Run) -> list[str]:
    """The environments a trusted run of ``run.pipeline`` deploys to directly (auto+from, promote steps)."""
    rows = environment_rows(s, project.id)
    envs = parse_rows(rows)
    branch = run.change.branch
    names = [n for n, e in envs.items() if e.auto and e.from_pipeline == run.pipeline and e.branch == branch]
    for row in rows:
        if run.pipeline in (row.config or {}).get("promoted_by", []) and row.name not in names:
            names.append(row.name)
    return names


def run_hold(s: Session, project: Project, run: Run,
             now: datetime | None = None) -> tuple[datetime, dict[str, Any]] | None:
    """When a run must wait because an environment it would deploy to is frozen: (until, details)."""
    if not run.trusted:
        return None
    now = now or utcnow()
    envs = parse_rows(environment_rows(s, project.id))
    until: datetime | None = None
    details: dict[str, Any] = {}
    for name in deploy_targets(s, project, run):
        c = closed(envs[name], now)
        if c is None:
            continue
        end = c.until or now + timedelta(days=1)  # re-checked by the worker long before that
        if until is None or end > until:
            until = end
        details[name] = c.to_dict()
    if until is None:
        return None
    return until, details


def _override_for_run(s: Session, run_id: int) -> Event | None:
    return s.scalars(select(Event).where(Event.run_id == run_id, Event.kind == "deploy.freeze-override",
                                         Event.environment == "").order_by(Event.id.desc())).first()


def hold_new_run(s: Session, settings: Any, project: Project, run: Run) -> datetime | None:
    """Called by ``services.queue_run`` before the job is queued: the job's ``not_before`` (or None).

    A trusted run on the default branch first refreshes the environments (its commit may be the
    one that adds a freeze).
    """
    if not run.trusted:
        return None
    if run.change.branch == project.default_branch:
        try:
            refresh_environments(s, settings, project)
        except RepoError as err:  # the hold still uses what is stored
            log.warning("environments of %s not refreshed: %s", project.name, err)
    hold = run_hold(s, project, run)
    if hold is None:
        return None
    until, details = hold
    _record_run_held(s, run, until, details)
    return until


def _record_run_held(s: Session, run: Run, until: datetime, details: dict[str, Any]) -> None:
    first = next(iter(details.values()))
    ledger.record(s, "deploy.held", run=run, actor="server", outcome="held",
                  data={"freeze": first.get("freeze"), "reason": "; ".join(d["reason"] for d in details.values()),
                        "until": _iso(until), "environments": sorted(details), "what": "run"})


# ------------------------------------------------------------------ ordering
def order_key(s: Session, settings: Any, run: Run) -> str:
    """``<commit time, UTC>#<run id>``: the run's change's committer date, then the run id.

    Commit order is code order (a rerun of an old commit stays old); the run id breaks ties
    between rebuilds of one commit. Fixed width, so plain string comparison orders them.
    """
    when = run.created_at
    try:
        info = services.mirror(settings, run.project).commit_info(run.change.commit)
        if info.get("date"):
            when = datetime.fromisoformat(info["date"])
    except (RepoError, ValueError):
        pass
    return f"{when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}#{run.id:012d}"


def image_reference(img: Image, commit: str = "") -> str:
    """How to deploy a published image: by digest from a registry; by its immutable tag when local."""
    if img.name.startswith("localhost/"):
        tags = list(img.tags or [])
        tag = commit if commit in tags else (tags[0] if tags else "latest")
        return f"{img.name}:{tag}"
    return f"{img.name}@{img.digest}"


# ------------------------------------------------------------------ the service
class DeployService:
    """Deploy requests and the worker that carries them out (one per server process)."""

    def __init__(self, state: Any, *, targets: dict[str, Any] | None = None, tick: float = 1.0) -> None:
        self.state = state
        self.db = state.db
        self.settings = state.settings
        self.store = SqlDeploymentStore(self.db, commits_between=self._commits_between,
                                        lease=self.settings.deploy_lease)
        if targets is None:
            targets = {"podman": PodmanTarget(self.settings.home / "deploy" / "podman")}
        self.deployer = Deployer(self.store, self.environments, targets, workdir=str(self.settings.home),
                                 secrets=self.secret_values)
        self.tick_interval = tick
        self.refresh_interval = 5.0  # seconds between checks whether default branches moved
        self.wakeup = threading.Event()
        self._running: dict[tuple[str, str], threading.Thread] = {}
        self._mutex = threading.Lock()
        self._last_refresh = 0.0
        self._last_recover = 0.0
        self.recover_interval = 10.0  # seconds between looks for deployments a dead server left half-done
        self._started = False

    # -------------------------------------------------------------- lookups
    def environments(self, project: str) -> dict[str, Environment]:
        with self.db.session() as s:
            p = s.scalars(select(Project).where(Project.name == project)).first()
            if p is None:
                return {}
            return parse_rows(environment_rows(s, p.id))

    def secret_values(self, project: str, environment: str, ids: list[str]) -> dict[str, str]:
        """The values of ``ids`` for a deploy of ``environment``: the environment's own, else the project's.

        Only the deploy worker asks, for the ``values.secrets`` of an environment of the default
        branch's (reviewed) config; what it returns goes to the target and nowhere else.
        """
        from chute.deploy.deployer import SecretsUnavailable
        from chute.secrets import SecretKeyError

        from .api.secrets import store as secret_store

        with self.db.session() as s:
            p = s.scalars(select(Project).where(Project.name == project)).first()
            if p is None:
                return {}
            secrets = secret_store(self.state)
            try:
                found = secrets.values(s, p, ids, environment=environment)
                rest = [i for i in ids if i not in found]
                if rest:
                    found.update(secrets.values(s, p, rest, environment=""))
            except SecretKeyError as exc:
                raise SecretsUnavailable(f"the server's secret keys are not usable: {exc}") from None
        return found

    def _commits_between(self, project: str, old: str | None, new: str) -> list[str]:
        with self.db.session() as s:
            p = s.scalars(select(Project).where(Project.name == project)).first()
            if p is None:
                return [new]
            m = services.mirror(self.settings, p)
        return m.commits_between(old, new)

    def _ensure_kubernetes(self, envs: dict[str, Environment]) -> None:
        if any(e.target == "kubernetes" for e in envs.values()) and "kubernetes" not in self.deployer.targets:
            from chute.deploy import KubernetesTarget

            self.deployer.targets["kubernetes"] = KubernetesTarget()

    # -------------------------------------------------------------- requests
    def request(self, s: Session, project: Project, environment: str, *, kind: str = KIND_DEPLOY,
                trigger: str = "person", image: str = "", to_revision: int | None = None, key: str = "",
                run: Run | None = None, actor: str, reason: str, command: str = "",
                override_freeze: bool = False) -> DeployRequest:
        """Queue a deployment (or rollback) of ``environment``; written with ``deploy.queued``."""
        env_row = self.store.environment_row(s, project.name, environment)
        assert env_row is not None
        req = DeployRequest(environment_id=env_row.id, kind=kind, trigger=trigger, image_ref=image,
                            to_revision=to_revision, order_key=key, actor=actor, reason=reason, command=command,
                            run_id=run.id if run is not None else None, override_freeze=override_freeze,
                            status="queued", data={})
        s.add(req)
        s.flush()
        ledger.record(s, "deploy.queued", actor=actor, run=run, project=project.name, environment=environment,
                      command=command,
                      data={"image": image, "reason": reason, "kind": kind, "trigger": trigger, "request": req.id,
                            "order_key": key or None, "to_revision": to_revision,
                            "override_freeze": override_freeze})
        if trigger in AUTOMATIC and key:
            self._supersede(s, env_row, req)
        return req

    def _supersede(self, s: Session, env_row: EnvironmentRow, req: DeployRequest) -> None:
        """Older never overwrites newer: of the waiting automatic requests, only the newest stays."""
        now = utcnow()
        others = s.scalars(select(DeployRequest).where(
            DeployRequest.environment_id == env_row.id, DeployRequest.id != req.id,
            DeployRequest.trigger.in_(AUTOMATIC), DeployRequest.kind == KIND_DEPLOY,
            DeployRequest.status.in_((*WAITING, "running")))).all()
        for other in others:
            if other.order_key and other.order_key > req.order_key:
                req.status, req.finished_at = "superseded", now
                req.error = f"a newer image is already on its way to {env_row.name} (request #{other.id})"
                return
        for other in others:
            if other.status in WAITING and (other.order_key or "") <= req.order_key:
                other.status, other.finished_at = "superseded", now
                other.error = f"superseded by request #{req.id}, a newer image for {env_row.name}"

    def on_run_finished(self, state: Any, run_id: int) -> None:
        """The ``finished`` hook: a trusted run that succeeded deploys what it published."""
        with self.db.session() as s:
            run = s.get(Run, run_id)
            if run is None or run.status != "success" or not run.trusted:
                return
            project = run.project
            branch = run.change.branch  # a tag has none: it deploys only through promote steps
            if branch == project.default_branch:
                try:
                    refresh_environments(s, self.settings, project)
                except RepoError as err:
                    log.warning("environments of %s not refreshed: %s", project.name, err)
            envs = parse_rows(environment_rows(s, project.id))
            if not envs:
                return
            key = order_key(s, self.settings, run)
            override = _override_for_run(s, run.id)
            wanted: dict[str, tuple[str, str, str]] = {}
            images = list(run.images)
            if images:
                ref = image_reference(images[-1], run.change.commit)
                for name in promotion_order(envs):
                    env = envs[name]
                    if env.auto and env.from_pipeline == run.pipeline and env.branch == branch:
                        wanted[name] = ("auto", ref, f"published by pipeline {run.pipeline} on {branch} (run {run.id})")
            for promo in (run.result or {}).get("promotions") or []:
                names = list(promo.get("environments") or []) or list(envs)
                for name in names:
                    if name not in wanted:
                        wanted[name] = ("promote-step", str(promo.get("image", "")),
                                        f"promote step of stage {promo.get('stage')} (run {run.id})")
            for name, (trigger, image, reason) in wanted.items():
                actor, why, force = "server", reason, False
                if override is not None:
                    actor, why, force = override.actor, str(override.data.get("reason", "")), True
                if name not in envs:
                    log.warning("run %s promotes to %s, which %s's default branch does not define",
                                run.id, name, project.name)
                    continue
                self.request(s, project, name, trigger=trigger, image=image, key=key, run=run, actor=actor,
                             reason=why, override_freeze=force)
        self.wake()

    # -------------------------------------------------------------- overrides
    def override_request(self, s: Session, req: DeployRequest, *, actor: str, reason: str, command: str = "") -> None:
        """A person lets a held request through the freeze (recorded when it deploys)."""
        if req.status not in WAITING:
            raise services.ServiceError(f"request #{req.id} is {req.status}; only a queued or held request "
                                        "can be let through a freeze", 409)
        if not reason.strip():
            raise services.ServiceError("overriding a freeze needs a reason", 400,
                                        "say why this cannot wait, e.g. --reason 'fixes the outage'")
        req.override_freeze = True
        req.actor, req.reason, req.status, req.not_before = actor, reason, "queued", None
        if command:
            req.command = command
        req.data = {**(req.data or {}), "override": {"actor": actor, "reason": reason, "at": _iso(utcnow())}}

    def override_run(self, s: Session, run: Run, *, actor: str, reason: str, command: str = "") -> None:
        """Release a run held by a freeze now; its deployments go through the freeze too."""
        if not reason.strip():
            raise services.ServiceError("overriding a freeze needs a reason", 400,
                                        "say why this cannot wait")
        job = services.job_for(s, run)
        if job is None or job.status != "queued" or run.status != "queued":
            raise services.ServiceError(f"run {run.id} is {run.status}, not waiting in the queue", 409)
        hold = run_hold(s, run.project, run)
        ledger.record(s, "deploy.freeze-override", run=run, actor=actor, command=command,
                      data={"reason": reason, "what": "run",
                            "held": hold[1] if hold else {}, "until": _iso(hold[0]) if hold else None})
        job.not_before = None

    # -------------------------------------------------------------- the worker
    def wake(self) -> None:
        self.wakeup.set()

    def start(self) -> threading.Thread:
        def loop() -> None:
            while not self.state.stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("deploy worker tick failed")
                self.wakeup.wait(self.tick_interval)
                self.wakeup.clear()
            self.join(timeout=5)

        t = threading.Thread(target=loop, name="chute-deploys", daemon=True)
        t.start()
        return t

    def join(self, timeout: float | None = None) -> None:
        with self._mutex:
            threads = list(self._running.values())
        for t in threads:
            t.join(timeout)

    def tick(self) -> int:
        """One round: refresh moved default branches, hold/release queued runs, start due requests."""
        import time

        if time.monotonic() - self._last_refresh > self.refresh_interval:
            self._last_refresh = time.monotonic()
            self.refresh_all()
        if time.monotonic() - self._last_recover > self.recover_interval:
            self._last_recover = time.monotonic()
            self.recover()
        self.sweep_run_holds()
        return self.start_due()

    def run_until_idle(self, timeout: float = 300.0) -> None:
        """Carry out every due request and what they cascade to, in this thread's time (tests, tools)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.tick()
            self.join()
            if not started and not self._due_ids():
                return
        raise TimeoutError("deploy requests still running")

    def refresh_all(self) -> None:
        with self.db.session() as s:
            ids = list(s.scalars(select(Project.id)))
        for pid in ids:
            try:
                with self.db.session() as s:
                    p = s.get(Project, pid)
                    if p is not None:
                        refresh_environments(s, self.settings, p)
            except Exception:
                log.exception("refreshing environments of project %s failed", pid)

    def sweep_run_holds(self) -> None:
        """Hold queued trusted runs that would deploy into a freeze; release them when it is lifted."""
        now = utcnow()
        with self.db.session() as s:
            jobs = s.scalars(select(Job).join(Run, Run.id == Job.run_id)
                             .where(Job.status == "queued", Run.trusted.is_(True), Job.cancel_requested.is_(False))
                             .order_by(Job.id)).all()
            for job in jobs:
                run = job.run
                overridden = _override_for_run(s, run.id) is not None
                hold = None if overridden else run_hold(s, run.project, run, now)
                held_before = s.scalars(select(Event.id).where(Event.run_id == run.id,
                                                               Event.kind == "deploy.held")).first() is not None
                if hold is not None:
                    until, details = hold
                    if job.not_before is None or abs((job.not_before - until).total_seconds()) > 0.5:
                        job.not_before = until
                        _record_run_held(s, run, until, details)
                elif job.not_before is not None and held_before and job.not_before > now:
                    job.not_before = None  # the freeze was lifted (or overridden): run now
                    self.state.wake_agents()

    def _due_ids(self) -> list[int]:
        now = utcnow()
        with self.db.session() as s:
            reqs = s.scalars(select(DeployRequest).where(DeployRequest.status.in_(WAITING))
                             .order_by(DeployRequest.id)).all()
            return [r.id for r in reqs if r.not_before is None or r.not_before <= now]

    def start_due(self) -> int:
        started = 0
        seen: set[int] = set()
        for req_id in self._due_ids():
            with self.db.session() as s:
                req = s.get(DeployRequest, req_id)
                if req is None:
                    continue
                env_row = req.environment
                key = (str(env_row.project_id), env_row.name)
                if env_row.id in seen:
                    continue  # one request per environment at a time, oldest first
                seen.add(env_row.id)
            with self._mutex:
                busy = self._running.get(key)
                if busy is not None and busy.is_alive():
                    continue
                t = threading.Thread(target=self._execute_safely, args=(req_id,), name=f"chute-deploy-{req_id}",
                                     daemon=True)
                self._running[key] = t
            t.start()
            started += 1
        return started

    def _execute_safely(self, req_id: int) -> None:
        try:
            self.execute(req_id)
        except Exception as exc:
            log.exception("deploy request %s failed", req_id)
            with self.db.session() as s:
                req = s.get(DeployRequest, req_id)
                if req is not None and req.status == "running":
                    req.status, req.finished_at, req.error = "blocked", utcnow(), f"internal error: {exc}"
        finally:
            self.wake()

    def execute(self, req_id: int) -> None:
        """Carry out one request: hold it when the environment is closed, else deploy or roll back."""
        now = self.deployer.clock()
        with self.db.session() as s:
            # Row lock (PostgreSQL; SQLite's write lock does the same): two workers never both take it.
            req = s.scalars(select(DeployRequest).where(DeployRequest.id == req_id).with_for_update()).first()
            if req is None or req.status not in WAITING:
                return
            env_row = req.environment
            project = s.get(Project, env_row.project_id)
            assert project is not None
            envs = parse_rows(environment_rows(s, project.id))
            env = envs.get(env_row.name)
            if env is None:
                req.status, req.finished_at = "blocked", now
                req.error = (f"environment {env_row.name} is not in the default branch's "
                             f"{services.CONFIG_PATH} any more")
                return
            shut = closed(env, now)
            if shut is not None and not req.override_freeze:
                self._hold(s, req, project, env_row, shut, now)
                return
            req.status, req.started_at, req.error = "running", now, ""
            req_kind, trigger, image, to_rev = req.kind, req.trigger, req.image_ref, req.to_revision
            actor, reason, key, run_id = req.actor, req.reason, req.order_key, req.run_id
            command, override = req.command, req.override_freeze
            project_name, env_name = project.name, env_row.name
        self._ensure_kubernetes(envs)
        result: Deployment | None = None
        status, error = "done", ""
        retry_at: datetime | None = None
        try:
            with self.store.context(command=command, data={"request": req_id}):
                if req_kind == KIND_DEPLOY:
                    result = self.deployer.deploy(
                        project_name, env_name, image, reason=reason, actor=actor,
                        source_run=str(run_id) if run_id else None, order_key=key or None,
                        override_freeze=override, hold_rolled_back=trigger in AUTOMATIC)
                else:
                    result = self.deployer.rollback(project_name, env_name, to_rev, actor=actor, reason=reason,
                                                    override_freeze=override)
        except DeployBusy as exc:
            status, error, retry_at = "queued", str(exc), utcnow() + timedelta(seconds=RETRY_BUSY)
        except DeployBlocked as exc:
            status, error = "blocked", str(exc)
            if closed(env, self.deployer.clock()) is not None and not override:
                status = "held"  # the calendar closed in between: hold it like any other
        except DeployError as exc:
            status, error = "blocked", str(exc)
        with self.db.session() as s:
            req = s.get(DeployRequest, req_id)
            assert req is not None
            req.status, req.error = status, error
            if status == "queued":
                req.not_before = retry_at
            elif status == "held":
                env_row = req.environment
                project = s.get(Project, env_row.project_id)
                shut = closed(env, self.deployer.clock())
                if shut is not None and project is not None:
                    req.status = "queued"
                    self._hold(s, req, project, env_row, shut, self.deployer.clock())
            else:
                req.finished_at = utcnow()
            if result is not None:
                req.revision, req.outcome = result.revision, result.status
                req.error = result.error or ""
        if result is not None and result.status == HEALTHY and result.kind == KIND_DEPLOY:
            self._cascade(project_name, env_name, result)

    def _hold(self, s: Session, req: DeployRequest, project: Project, env_row: EnvironmentRow, shut: Closed,
              now: datetime) -> None:
        until = shut.until or now + timedelta(hours=1)  # re-checked then
        changed = req.status != "held" or req.not_before is None or abs((req.not_before - until).total_seconds()) > 0.5
        req.status, req.not_before, req.hold_reason = "held", until, shut.reason
        req.data = {**(req.data or {}), "held": shut.to_dict()}
        if changed:
            run = s.get(Run, req.run_id) if req.run_id else None
            ledger.record(s, "deploy.held", actor="server", run=run, project=project.name,
                          environment=env_row.name, outcome="held", command=req.command,
                          data={"freeze": shut.freeze, "reason": shut.reason, "until": _iso(shut.until),
                                "windows": shut.windows, "request": req.id, "image": req.image_ref,
                                "what": req.kind})

    def _cascade(self, project: str, environment: str, dep: Deployment) -> None:
        """Healthy for stable_for: promote to every auto environment that comes after this one."""
        with self.db.session() as s:
            p = s.scalars(select(Project).where(Project.name == project)).first()
            if p is None:
                return
            envs = parse_rows(environment_rows(s, p.id))
            run = s.get(Run, int(dep.source_run)) if dep.source_run and str(dep.source_run).isdigit() else None
            override = _override_for_run(s, run.id) if run is not None else None
            for name in promotion_order(envs):
                nxt = envs[name]
                if nxt.after != environment or not nxt.auto:
                    continue
                actor, reason, force = "server", f"promoted from {environment} revision {dep.revision}", False
                if override is not None:
                    actor, force = override.actor, True
                    reason = f"{override.data.get('reason', '')} ({reason})"
                self.request(s, p, name, trigger="promotion", image=dep.image, key=dep.order_key or "", run=run,
                             actor=actor, reason=reason, override_freeze=force)
        self.wake()

    # -------------------------------------------------------------- start-up
    def recover(self) -> list[Deployment]:
        """Deployments a stopped server left half-done end failed ("interrupted"), and their requests too.

        Called at start and every ``recover_interval`` seconds by the worker: an environment counts
        when nobody holds its lock (the lock is a lease the deploying server renews, so a dead
        server's lock frees itself within ``store.lease`` seconds) and this server is not deploying
        it. Every environment then ends on a known revision.
        """
        from chute.deploy.model import DEPLOYING, PENDING
        from chute.store import Deployment as DeploymentRow

        with self._mutex:
            mine = {key for key, t in self._running.items() if t.is_alive()}
        todo: list[tuple[str, str]] = []
        # A request another server just marked running takes its lock a moment later: leave it a lease.
        settled = utcnow() - timedelta(seconds=self.store.lease)
        with self.db.session() as s:
            stuck = s.execute(
                select(EnvironmentRow, Project).join(Project, Project.id == EnvironmentRow.project_id)
                .where(EnvironmentRow.id.in_(
                    select(DeploymentRow.environment_id).where(DeploymentRow.status.in_((PENDING, DEPLOYING)))
                    .union(select(DeployRequest.environment_id).where(
                        DeployRequest.status == "running",
                        (DeployRequest.started_at.is_(None)) | (DeployRequest.started_at < settled)))))
            ).all()
            for env_row, project in stuck:
                if (str(env_row.project_id), env_row.name) in mine or not self.store.lock_free(s, env_row):
                    continue
                todo.append((project.name, env_row.name))
                for req in s.scalars(select(DeployRequest).where(
                        DeployRequest.environment_id == env_row.id, DeployRequest.status == "running",
                        (DeployRequest.started_at.is_(None)) | (DeployRequest.started_at < settled))):
                    req.status, req.finished_at = "blocked", utcnow()
                    req.error = "interrupted: the server stopped during this deploy; deploy again to retry"
        recovered: list[Deployment] = []
        for project_name, env_name in todo:
            with self.store.context(command="server start-up" if not self._started else "recovery"):
                recovered.extend(self.deployer.recover_interrupted(project_name, env_name))
        self._started = True
        return recovered


# ------------------------------------------------------------------ read models for the API and UI
def deployment_dict(d: Deployment, commit: str = "", run_id: int | None = None) -> dict[str, Any]:
    return {
        "revision": d.revision, "kind": d.kind, "status": d.status, "image": d.image, "image_ref": d.image_ref,
        "image_digest": d.image_digest, "actor": d.actor, "reason": d.reason, "run": run_id,
        "commit": commit or None, "order_key": d.order_key, "created_at": d.created_at,
        "started_at": d.started_at, "serving_at": d.serving_at, "finished_at": d.finished_at, "error": d.error,
        "rollback_of": d.rollback_of, "restored_revision": d.restored_revision,
        "time_to_restore": d.time_to_restore, "freeze_override": d.freeze_override, "health": d.health,
    }


def request_dict(r: DeployRequest) -> dict[str, Any]:
    held = (r.data or {}).get("held")
    return {
        "id": r.id, "environment": r.environment.name, "kind": r.kind, "trigger": r.trigger, "image": r.image_ref,
        "to_revision": r.to_revision, "order_key": r.order_key or None, "actor": r.actor, "reason": r.reason,
        "run": r.run_id, "override_freeze": r.override_freeze, "status": r.status,
        "hold_reason": r.hold_reason or None, "held": held if r.status == "held" else None,
        "not_before": r.not_before, "revision": r.revision, "outcome": r.outcome or None, "error": r.error or None,
        "created_at": r.created_at, "started_at": r.started_at, "finished_at": r.finished_at,
    }


def history(svc: DeployService, s: Session, project: Project, env_row: EnvironmentRow,
            limit: int = 50) -> list[dict[str, Any]]:
    from chute.store import Deployment as DeploymentRow

    rows = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == env_row.id)
                     .order_by(DeploymentRow.revision.desc()).limit(limit))
    # In the caller's session: on SQLite every transaction takes the write lock, so no second session here.
    return [deployment_dict(svc.store.to_deployment(project.name, env_row.name, r), r.commit, r.run_id)
            for r in rows]


def deployment_in(svc: DeployService, s: Session, project: str, env_row: EnvironmentRow,
                  revision: int) -> dict[str, Any] | None:
    from chute.store import Deployment as DeploymentRow

    row = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == env_row.id,
                                                DeploymentRow.revision == revision)).first()
    if row is None:
        return None
    return deployment_dict(svc.store.to_deployment(project, env_row.name, row), row.commit, row.run_id)


def environment_summary(svc: DeployService, s: Session, project: Project, row: EnvironmentRow,
                        env: Environment | None, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    from chute.store import Deployment as DeploymentRow

    current = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == row.id,
                                                    DeploymentRow.status == HEALTHY)
                        .order_by(DeploymentRow.revision.desc()).limit(1)).first()
    last = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == row.id)
                     .order_by(DeploymentRow.revision.desc()).limit(1)).first()
    waiting = s.scalars(select(DeployRequest).where(DeployRequest.environment_id == row.id,
                                                    DeployRequest.status.in_((*WAITING, "running")))
                        .order_by(DeployRequest.id)).all()
    shut = closed(env, now) if env is not None else None
    cfg = row.config or {}

    def dep(r: Any) -> dict[str, Any] | None:
        if r is None:
            return None
        d = svc.store.to_deployment(project.name, row.name, r)
        return deployment_dict(d, r.commit, r.run_id)

    return {
        "name": row.name,
        "configured": env is not None,
        "target": env.target if env else None,
        "port": env.port if env else None,
        "auto": env.auto if env else False,
        "from": env.from_pipeline if env else None,
        "branch": env.branch if env else None,
        "after": env.after if env else None,
        "rollback": env.rollback if env else None,
        "config_commit": cfg.get("commit"),
        "promoted_by": cfg.get("promoted_by", []),
        "current": dep(current),
        "last": dep(last),
        "closed": shut.to_dict() if shut else None,
        "freezes": [{"from": _iso(f.start), "to": _iso(f.end), "reason": f.reason} for f in env.freeze] if env else [],
        "windows": [w.describe() for w in env.windows] if env else [],
        "waiting": [request_dict(r) for r in waiting],
    }


def refused_requests(s: Session, env_row: EnvironmentRow, limit: int = 10) -> list[dict[str, Any]]:
    """The latest requests that did not deploy (blocked or superseded), with why: the "why not" list."""
    reqs = s.scalars(select(DeployRequest).where(DeployRequest.environment_id == env_row.id,
                                                 DeployRequest.status.in_(("blocked", "superseded")))
                     .order_by(DeployRequest.id.desc()).limit(limit))
    return [request_dict(r) for r in reqs]


def held_runs(s: Session, project: Project) -> list[dict[str, Any]]:
    """Queued runs a freeze holds, with when they are released and why."""
    now = utcnow()
    out = []
    for job in s.scalars(select(Job).join(Run, Run.id == Job.run_id)
                         .where(Run.project_id == project.id, Job.status == "queued", Job.not_before.is_not(None))
                         .order_by(Job.id)):
        if job.not_before is None or job.not_before <= now:
            continue
        ev = s.scalars(select(Event).where(Event.run_id == job.run_id, Event.kind == "deploy.held")
                       .order_by(Event.id.desc())).first()
        if ev is None:
            continue
        out.append({"run": job.run_id, "pipeline": job.run.pipeline, "until": job.not_before,
                    "reason": ev.data.get("reason", ""), "freeze": ev.data.get("freeze"),
                    "environments": ev.data.get("environments", [])})
    return out


def run_hold_info(s: Session, run: Run) -> dict[str, Any] | None:
    job = services.job_for(s, run)
    if job is None or job.status != "queued" or job.not_before is None or job.not_before <= utcnow():
        return None
    ev = s.scalars(select(Event).where(Event.run_id == run.id, Event.kind == "deploy.held")
                   .order_by(Event.id.desc())).first()
    if ev is None:
        return None
    return {"until": job.not_before, "reason": ev.data.get("reason", ""), "freeze": ev.data.get("freeze"),
            "environments": ev.data.get("environments", [])}


def deployed_where(s: Session, project: Project, commits: list[str]) -> list[dict[str, Any]]:
    """Where these commits run: per environment, the first healthy revision that shipped one of them
    (from ``deploy.finished`` events' ``commits``), its status now, and what serves there now."""
    from chute.store import Deployment as DeploymentRow

    wanted = {c for c in commits if c}
    if not wanted:
        return []
    found: dict[str, dict[str, Any]] = {}
    events = s.scalars(select(Event).where(Event.project == project.name, Event.kind == "deploy.finished",
                                           Event.outcome == "healthy").order_by(Event.id)).all()
    for ev in events:
        shipped = set((ev.data or {}).get("commits") or []) | ({ev.commit} if ev.commit else set())
        if ev.environment in found or not (shipped & wanted):
            continue
        found[ev.environment] = {"environment": ev.environment, "revision": ev.revision, "at": ev.at}
    for row in s.scalars(select(EnvironmentRow).where(EnvironmentRow.project_id == project.id)):
        info = found.get(row.name)
        # Deployments of exactly this commit that did not become healthy (failed, still running, ...)
        if info is None:
            dep = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == row.id,
                                                        DeploymentRow.commit.in_(wanted))
                            .order_by(DeploymentRow.revision.desc()).limit(1)).first()
            if dep is None:
                continue
            info = found[row.name] = {"environment": row.name, "revision": dep.revision, "at": dep.created_at}
        dep = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == row.id,
                                                    DeploymentRow.revision == info["revision"])).first()
        cur = s.scalars(select(DeploymentRow).where(DeploymentRow.environment_id == row.id,
                                                    DeploymentRow.status == HEALTHY)
                        .order_by(DeploymentRow.revision.desc()).limit(1)).first()
        info["status"] = dep.status if dep is not None else ""
        info["image"] = (dep.image_ref if dep is not None else "")
        info["current_revision"] = cur.revision if cur is not None else None
        info["error"] = dep.error if dep is not None else ""
    return sorted(found.values(), key=lambda i: str(i["environment"]))


__all__ = [
    "Closed",
    "DeployService",
    "closed",
    "deployed_where",
    "environment_rows",
    "held_runs",
    "hold_new_run",
    "image_reference",
    "next_open",
    "order_key",
    "parse_rows",
    "refresh_environments",
    "run_hold",
]
