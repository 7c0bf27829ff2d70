"""The deployment core: deploy, roll back, promote, and keep the history.

A deploy of image I to environment E of project P:

1. refuses when E is frozen or outside its deploy windows (unless overridden,
   which is recorded with who and why), when another deploy of E runs (one at
   a time, a lock in the store), or when I is older than what E runs;
2. records revision N (pending), resolves I to a digest and renders and
   validates the manifests -- any failure here fails N before the serving
   revision is touched;
3. starts N next to the serving revision, runs the health gate (healthy
   within ``within``), switches traffic to N, and watches it for
   ``stable_for``;
4. marks N healthy and the previous revision superseded -- or, when N is not
   healthy, switches back to the previous revision (rollback: auto), marks N
   failed with the reason and how long it served before the previous one
   served again (time to restore).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chute.secrets.masking import Masker

from . import manifests as mf
from .environments import Environment, active_freeze, outside_windows, promotion_order
from .health import HealthGate, Verdict
from .helm import HelmError, HelmUnavailable, chart_values, render_chart
from .model import (
    DEPLOYING,
    FAILED,
    HEALTHY,
    KIND_DEPLOY,
    KIND_ROLLBACK,
    PENDING,
    ROLLED_BACK,
    SUPERSEDED,
    Deployment,
    utcnow,
)
from .store import DeploymentStore
from .targets import ImageNotFound, Release, ResolvedImage, Target, TargetError


class DeployError(Exception):
    """A deploy or rollback that cannot start; the message says why and what to do."""


class DeployBlocked(DeployError):
    """The environment is frozen or outside its deploy windows."""


class DeployBusy(DeployError):
    """Another deploy of the same environment is running."""


class OutdatedImage(DeployError):
    """The image is older than the one the environment already runs."""


class SecretsUnavailable(DeployError):
    """The secrets a revision's manifests reference cannot be given to it (missing, or no source)."""


SecretSource = Callable[[str, str, list[str]], Mapping[str, str]]
"""``(project, environment, ids) -> {id: value}`` for the ids that are set; may raise SecretsUnavailable."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one environment after a publish or a promotion."""

    environment: str
    deployment: Deployment | None
    blocked: str | None = None


EnvironmentsSource = Mapping[str, Mapping[str, Environment]] | Callable[[str], Mapping[str, Environment]]


class Deployer:
    """Deploys images to a project's environments through their targets.

    ``environments`` maps project -> {name: Environment}, or is a callable
    returning that mapping for a project. ``targets`` maps a target name
    ("podman", "kubernetes") to a :class:`~chute.deploy.targets.Target`.
    """

    def __init__(
        self,
        store: DeploymentStore,
        environments: EnvironmentsSource,
        targets: Mapping[str, Target],
        *,
        clock: Callable[[], datetime] = utcnow,
        lock_ttl: float = 3600.0,
        workdir: str = ".",
        secrets: SecretSource | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets  # the chute server's SecretStore; None: no environment secrets here
        self._environments = environments
        self.targets = dict(targets)
        self.clock = clock
        self.lock_ttl = lock_ttl
        self.workdir = workdir
        self._local_locks: dict[tuple[str, str], threading.Lock] = {}
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------ lookups

    def environments(self, project: str) -> Mapping[str, Environment]:
        envs = (
            self._environments(project)
            if callable(self._environments)
            else self._environments.get(project, {})
        )
        return envs

    def environment(self, project: str, name: str) -> Environment:
        envs = self.environments(project)
        if name not in envs:
            known = ", ".join(envs) or "none"
            raise DeployError(
                f"project {project} has no environment `{name}` (known: {known}); "
                "add it under `environments` in .pipeline/config.yaml"
            )
        return envs[name]

    def target_for(self, env: Environment) -> Target:
        if env.target not in self.targets:
            raise DeployError(
                f"environment {env.name} uses the {env.target} target, which is not configured here"
            )
        return self.targets[env.target]

    def history(self, project: str, environment: str, limit: int | None = None) -> list[Deployment]:
        """Deployments of one environment, newest first."""
        return self.store.list(project, environment, limit)

    # ------------------------------------------------------------------ deploy

    def deploy(
        self,
        project: str,
        environment: str,
        image: str,
        *,
        reason: str,
        actor: str,
        source_run: str | None = None,
        order_key: str | None = None,
        override_freeze: bool = False,
        allow_older: bool = False,
        cascade: bool = False,
        hold_rolled_back: bool = False,
    ) -> Deployment:
        """Deploy ``image`` (a tag or digest reference) and return the finished Deployment.

        Raises DeployBlocked, DeployBusy, OutdatedImage or DeployError before
        anything is recorded; every later failure is a recorded failed deployment.
        With ``cascade``, environments that come ``after`` this one are promoted
        when it is healthy (see :meth:`promote_from`). With ``hold_rolled_back``
        (automatic deploys), an image that was already rolled back from this
        environment is refused (DeployBlocked) until someone deploys it by hand:
        a rerun of the same build does not bring a bad image back.
        """
        env = self.environment(project, environment)
        target = self.target_for(env)
        override = self._check_calendar(env, override_freeze, actor, reason)
        with self._locked(project, environment):
            current = self._serving(project, environment)
            if (
                current
                and order_key
                and current.order_key
                and order_key < current.order_key
                and not allow_older
            ):
                raise OutdatedImage(
                    f"{image} ({order_key}) is older than revision {current.revision} "
                    f"({current.image_ref}, {current.order_key}) that {environment} runs; "
                    "use rollback to go back to an earlier revision"
                )
            try:
                resolved: ResolvedImage | None = target.resolve_image(image)
                missing: Exception | None = None
            except (ImageNotFound, TargetError) as exc:
                resolved, missing = None, exc
            if resolved is not None and hold_rolled_back:
                held = self._rolled_back_before(project, environment, resolved.digest)
                if held is not None:
                    raise DeployBlocked(
                        f"{image} ({resolved.digest[:19]}) was rolled back from {environment} at revision "
                        f"{held.revision} ({held.error or held.status}); it is held until someone deploys "
                        "it by hand"
                    )
            revision = self.store.next_revision(project, environment)
            dep = Deployment(
                project=project,
                environment=environment,
                revision=revision,
                image_ref=image,
                image_digest=resolved.digest if resolved else None,
                status=PENDING,
                kind=KIND_DEPLOY,
                actor=actor,
                reason=reason,
                source_run=source_run,
                order_key=order_key,
                target=target.name,
                created_at=self.clock(),
                freeze_override=override,
            )
            self.store.record(dep)
            try:
                if resolved is None:
                    raise missing or ImageNotFound(image)
                release = self._render(project, env, revision, resolved)
            except (
                ImageNotFound,
                mf.ManifestError,
                HelmUnavailable,
                HelmError,
                TargetError,
                SecretsUnavailable,
            ) as exc:
                return self.store.update(
                    project,
                    environment,
                    revision,
                    status=FAILED,
                    error=_first_line(exc),
                    finished_at=self.clock(),
                )
            dep = self.store.update(
                project,
                environment,
                revision,
                image_digest=resolved.digest,
                manifests=mf.to_yaml(release.manifests),
                status=DEPLOYING,
                started_at=self.clock(),
            )
            result = self._roll_out(dep, release, current, target)
        if cascade and result.status == HEALTHY:
            self.promote_from(project, environment, result)
        return result

    def _render(self, project: str, env: Environment, revision: int, image: ResolvedImage) -> Release:
        port = mf.container_port_for(env, image.env)
        if env.chart is not None:
            values = chart_values(image.repository, image.digest, env.raw_values)
            text = render_chart(
                env.chart,
                mf.app_name(project, env.name),
                mf.namespace_for(project, env),
                values,
                workdir=self.workdir,
            )
            docs = mf.from_yaml(text)
        else:
            docs = mf.render(
                mf.RenderInput(
                    project=project,
                    env=env,
                    revision=revision,
                    image=image.by_digest,
                    image_ref=image.ref,
                    container_port=port,
                )
            )
        mf.validate(docs)
        release = Release(
            project=project, env=env, revision=revision, image=image, manifests=docs, container_port=port
        )
        # A chart's values are its own: chute gives secrets only to the manifests it renders.
        return release if env.chart is not None else self._with_secrets(release)

    def _with_secrets(self, release: Release) -> Release:
        """``release`` with the current values of the environment secrets its manifests reference.

        Read at every start (deploy, rollback, restart of an earlier revision): a changed secret
        takes effect on the next deploy, and a rollback runs the old image with today's values.
        """
        project, env = release.project, release.env.name
        keys = mf.secret_keys(release.manifests, mf.secrets_name(project, env))
        if not keys:
            return release
        if self.secrets is None:
            raise SecretsUnavailable(
                f"the manifests of {env} ask for the secrets {', '.join(keys)}, and this deploy has no "
                "secret store: environment secrets are given only by the chute server's deploys"
            )
        try:
            found = dict(self.secrets(project, env, list(keys)))
        except SecretsUnavailable:
            raise
        except Exception as exc:  # e.g. the server's keys are not usable: say so, without values
            raise SecretsUnavailable(
                f"cannot read the secrets of {project}/{env}: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        missing = [k for k in keys if k not in found]
        if missing:
            which = "secret " + missing[0] if len(missing) == 1 else "secrets " + ", ".join(missing)
            raise SecretsUnavailable(
                f"{which} {'is' if len(missing) == 1 else 'are'} not set for environment {env} of "
                f"{project} (nor for the whole project); set {'it' if len(missing) == 1 else 'them'} with "
                f"`chute secret set {project} {missing[0]} --env {env}` and deploy again"
            )
        return dataclasses.replace(release, secrets={k: found[k] for k in keys})

    def _updater(self, release: Release) -> Callable[..., Deployment]:
        """``store.update`` with the release's secret values masked in errors and health verdicts."""
        if not release.secrets:
            return self.store.update
        masker = Masker(release.secrets.values())

        def update(project: str, environment: str, revision: int, **changes: Any) -> Deployment:
            if isinstance(changes.get("error"), str):
                changes["error"] = masker.mask(changes["error"])
            if isinstance(changes.get("health"), list):
                changes["health"] = masker.mask_doc(changes["health"])
            return self.store.update(project, environment, revision, **changes)

        return update

    def _roll_out(
        self, dep: Deployment, release: Release, previous: Deployment | None, target: Target
    ) -> Deployment:
        """Start, gate, switch, watch; restore ``previous`` when the new revision is not healthy."""
        project, environment, revision = dep.project, dep.environment, dep.revision
        env = release.env
        update = self._updater(release)
        try:
            state = target.start(release)
        except TargetError as exc:
            # The target failed mid-deploy. Side by side (podman), the serving revision was never touched.
            if getattr(target, "side_by_side", False):
                restored = previous.revision if previous is not None else None
            else:
                restored = self._restore(previous, env, target) if env.rollback == "auto" else None
            return update(
                project,
                environment,
                revision,
                status=FAILED,
                error=f"the target failed: {_first_line(exc)}",
                finished_at=self.clock(),
                restored_revision=restored,
            )
        dep = update(project, environment, revision, target_state=dict(state))
        verdicts: list[dict[str, Any]] = []
        first = self._gate(target, release, state, serving=False)
        verdicts.append({**first.to_dict(), "decided_at": self.clock().isoformat()})
        if not first.healthy:
            # It never took traffic (side by side), or Kubernetes kept the old pods (maxUnavailable 0)
            # while the Deployment now asks for the new ones: re-apply the previous revision.
            target.abort(release, state)
            restored = None
            if getattr(target, "side_by_side", False):
                restored = previous.revision if previous is not None else None  # it served all along
            elif env.rollback == "auto":
                restored = self._restore(previous, env, target)
            return update(
                project,
                environment,
                revision,
                status=FAILED,
                health=verdicts,
                error=f"not healthy: {first.reason}",
                finished_at=self.clock(),
                restored_revision=restored,
                time_to_restore=0.0 if restored else None,
            )
        try:
            target.switch(release, state)
        except TargetError as exc:
            target.abort(release, state)
            restored = self._restore(previous, env, target)
            return update(
                project,
                environment,
                revision,
                status=FAILED,
                health=verdicts,
                error=f"the target failed: {_first_line(exc)}",
                finished_at=self.clock(),
                restored_revision=restored,
            )
        serving_at = self.clock()
        dep = update(
            project, environment, revision, serving_at=serving_at, target_state=dict(state)
        )
        second = self._gate(target, release, state, serving=True)
        verdicts.append({**second.to_dict(), "decided_at": self.clock().isoformat()})
        if not second.healthy:
            if env.rollback != "auto":
                # It keeps serving; the previous revision serves no more and a human decides.
                if previous is not None and previous.status == HEALTHY:
                    update(project, environment, previous.revision, status=SUPERSEDED)
                    with contextlib.suppress(TargetError):
                        target.retire(self._release_of(previous, env), previous.target_state)
                return update(
                    project,
                    environment,
                    revision,
                    status=FAILED,
                    health=verdicts,
                    error=f"not healthy while serving: {second.reason} "
                    "(rollback: manual, so it still serves)",
                    finished_at=self.clock(),
                )
            restored = self._restore(previous, env, target)
            restored_at = self.clock()
            if restored is not None:
                target.abort(release, state)
            return update(
                project,
                environment,
                revision,
                status=FAILED,
                health=verdicts,
                finished_at=restored_at,
                error=f"not healthy while serving: {second.reason}",
                restored_revision=restored,
                time_to_restore=(restored_at - serving_at).total_seconds() if restored is not None else None,
            )
        dep = update(
            project, environment, revision, status=HEALTHY, health=verdicts, finished_at=self.clock()
        )
        if previous is not None:
            if previous.status == HEALTHY:  # a failed one that served (rollback: manual) stays failed
                update(project, environment, previous.revision, status=SUPERSEDED)
            with contextlib.suppress(TargetError):
                target.retire(self._release_of(previous, env), previous.target_state)
        return dep

    def _gate(self, target: Target, release: Release, state: dict[str, Any], *, serving: bool) -> Verdict:
        policy = release.env.health
        url = policy.url or _probe_url(target, release, state, serving)
        with HealthGate(policy, http_url=url, container=lambda: target.check(release, state)) as gate:
            return gate.stays_healthy() if serving else gate.until_healthy()

    def _restore(self, previous: Deployment | None, env: Environment, target: Target) -> int | None:
        """Make ``previous`` serve again: switch back while it runs, else start it again."""
        if previous is None:
            return None
        release = self._release_of(previous, env)
        state = dict(previous.target_state)
        warm = getattr(target, "is_warm", None)
        try:
            if warm is not None and state and warm(release, state):
                target.switch(release, state)
                return previous.revision
            release = self._with_secrets(release)
            state = target.start(release)
            verdict = self._gate(target, release, state, serving=False)
            if not verdict.healthy:
                target.abort(release, state)
                return None
            target.switch(release, state)
        except (TargetError, SecretsUnavailable):
            return None
        self.store.update(previous.project, previous.environment, previous.revision, target_state=dict(state))
        return previous.revision

    def _release_of(self, dep: Deployment, env: Environment) -> Release:
        """A stored revision as a Release: its exact manifests, nothing re-rendered."""
        docs = mf.from_yaml(dep.manifests) if dep.manifests else []
        port = env.values.port or mf.DEFAULT_CONTAINER_PORT
        for d in mf.find(docs, "Deployment")[:1]:
            ports = d["spec"]["template"]["spec"]["containers"][0].get("ports") or []
            if ports and ports[0].get("containerPort"):
                port = ports[0]["containerPort"]
        repository, _, digest = dep.image.partition("@")
        image = ResolvedImage(ref=dep.image_ref, repository=repository, digest=digest or "")
        return Release(
            project=dep.project,
            env=env,
            revision=dep.revision,
            image=image,
            manifests=docs,
            container_port=port,
        )

    def recover_interrupted(self, project: str, environment: str) -> list[Deployment]:
        """End what a stopped chute left half-done, on a known revision (call at startup).

        A deploy killed part-way may have started its revision, switched traffic to it, or
        marked it healthy without retiring the one before. So: revisions left pending/deploying
        become failed; the last healthy revision takes the traffic again (a switch back while it
        still runs, else it is started again through the health gate), and it is the only one
        left healthy; pods of every other revision are removed (side-by-side targets). With no
        healthy revision to go back to, a revision the target still serves keeps serving,
        recorded as failed, as with ``rollback: manual``. Returns the revisions it failed.

        Does nothing while another deploy of the environment holds the lock.
        """
        recovered: list[Deployment] = []
        try:
            with self._locked(project, environment):
                deps = self.store.list(project, environment)
                interrupted = [d for d in deps if d.status in (PENDING, DEPLOYING)]
                healthy = [d for d in deps if d.status == HEALTHY]  # newest first
                if not interrupted and len(healthy) < 2:
                    return []
                try:
                    env = self.environment(project, environment)
                    target: Target | None = self.target_for(env)
                except DeployError:
                    env, target = None, None  # not configured any more: only the records can be fixed
                # Killed after marking a revision healthy, before the previous one was superseded.
                for old in healthy[1:]:
                    self.store.update(project, environment, old.revision, status=SUPERSEDED)
                current = healthy[0] if healthy else None
                restored: int | None = None
                note = ""
                if interrupted and current is not None and env is not None and target is not None:
                    restored = self._restore(current, env, target)
                    if restored is None:
                        note = f"; revision {current.revision} could not be made to serve again"
                serving = None
                if current is None and env is not None and target is not None:
                    serving = _served_revision(target, project, env)
                for dep in interrupted:
                    changes: dict[str, Any] = {
                        "status": FAILED,
                        "finished_at": self.clock(),
                        "error": "interrupted: chute stopped during this deploy; deploy again to retry" + note,
                    }
                    if restored is not None:
                        changes["restored_revision"] = restored
                    elif serving == dep.revision:
                        changes["serving_at"] = dep.serving_at or self.clock()
                        changes["error"] += " (no healthy revision to go back to, so it still serves)"
                    recovered.append(self.store.update(project, environment, dep.revision, **changes))
                prune = getattr(target, "prune", None)
                if prune is not None and env is not None:
                    # Only one revision runs now; no deploy runs (we hold the lock), so the rest is debris.
                    keep = current.revision if current is not None else serving
                    prune(project, env, keep)
        except DeployBusy:
            return []
        return recovered

    # ------------------------------------------------------------------ rollback

    def rollback(
        self,
        project: str,
        environment: str,
        to_revision: int | None = None,
        *,
        actor: str,
        reason: str,
        override_freeze: bool = False,
    ) -> Deployment:
        """Serve an earlier revision again (default: the last healthy one with another image).

        The rollback is a new revision that re-applies the earlier revision's
        manifests as they were; the revision rolled back from becomes
        ``rolled-back``.
        """
        env = self.environment(project, environment)
        target = self.target_for(env)
        override = self._check_calendar(env, override_freeze, actor, reason)
        with self._locked(project, environment):
            current = self._serving(project, environment)
            if to_revision is not None:
                chosen = self.store.get(project, environment, to_revision)
                if chosen is None:
                    raise DeployError(f"{environment} has no revision {to_revision}")
                if chosen.status not in (HEALTHY, SUPERSEDED, ROLLED_BACK) or not chosen.manifests:
                    raise DeployError(
                        f"revision {to_revision} of {environment} never became healthy "
                        f"(status {chosen.status}); choose a revision that did"
                    )
                if current is not None and chosen.revision == current.revision:
                    raise DeployError(f"revision {to_revision} already serves {environment}")
            else:
                chosen = self._rollback_candidate(project, environment, current)
            revision = self.store.next_revision(project, environment)
            dep = Deployment(
                project=project,
                environment=environment,
                revision=revision,
                image_ref=chosen.image_ref,
                image_digest=chosen.image_digest,
                status=DEPLOYING,
                kind=KIND_ROLLBACK,
                actor=actor,
                reason=reason,
                order_key=chosen.order_key,
                target=target.name,
                created_at=self.clock(),
                started_at=self.clock(),
                rollback_of=current.revision if current else None,
                manifests=chosen.manifests,
                freeze_override=override,
            )
            self.store.record(dep)
            old = self._release_of(chosen, env)
            release = Release(
                project=project,
                env=env,
                revision=revision,
                image=old.image,
                manifests=old.manifests,
                container_port=old.container_port,
            )
            try:
                release = self._with_secrets(release)  # today's values, not those of back then
            except SecretsUnavailable as exc:
                return self.store.update(
                    project,
                    environment,
                    revision,
                    status=FAILED,
                    error=_first_line(exc),
                    finished_at=self.clock(),
                    restored_revision=current.revision if current else None,
                )
            # A rollback that fails must leave the current revision serving: no auto-restore of a
            # revision we are moving away from, except to put it back.
            result = self._roll_out(dep, release, current, target)
            if result.status == HEALTHY and current is not None:
                now = self.clock()
                served = current.serving_at or current.finished_at or now
                self.store.update(
                    project,
                    environment,
                    current.revision,
                    status=ROLLED_BACK if current.status in (HEALTHY, SUPERSEDED) else current.status,
                    time_to_restore=(now - served).total_seconds(),
                )
            return self.store.get(project, environment, revision) or result

    def _rolled_back_before(self, project: str, environment: str, digest: str) -> Deployment | None:
        for dep in self.store.list(project, environment, limit=200):
            if dep.image_digest != digest:
                continue
            if dep.status == ROLLED_BACK or (dep.status == FAILED and dep.serving_at is not None):
                return dep
            if dep.status in (HEALTHY, SUPERSEDED):
                return None  # deployed by hand (or healthy) since: no longer held
        return None

    def _serving(self, project: str, environment: str) -> Deployment | None:
        """The revision that takes traffic: the healthy one, or a failed one left serving
        (rollback: manual) when it is the newest."""
        current = self.store.current(project, environment)
        if current is not None:
            return current
        for dep in self.store.list(project, environment, limit=50):
            if dep.status == FAILED and dep.serving_at is None:
                continue  # never took traffic
            if dep.status == FAILED and dep.restored_revision is None:
                return dep
            return None
        return None

    def _rollback_candidate(self, project: str, environment: str, current: Deployment | None) -> Deployment:
        before = current.revision if current else None
        while True:
            candidate = self.store.last_healthy(project, environment, before=before)
            if candidate is None:
                raise DeployError(f"{environment} has no earlier healthy revision to roll back to")
            if current is None or candidate.image_digest != current.image_digest:
                return candidate
            before = candidate.revision

    # ------------------------------------------------------------------ promotion

    def promote_from(
        self, project: str, environment: str, deployment: Deployment, *, actor: str = "chute"
    ) -> list[Outcome]:
        """Deploy a healthy revision's image to every auto environment that comes ``after`` it."""
        outcomes: list[Outcome] = []
        envs = self.environments(project)
        for name in promotion_order(envs):
            nxt = envs[name]
            if nxt.after != environment or not nxt.auto:
                continue
            outcomes.extend(
                self._promote_one(
                    project,
                    name,
                    deployment,
                    actor=actor,
                    reason=f"promoted from {environment} revision {deployment.revision}",
                )
            )
        return outcomes

    def _promote_one(
        self, project: str, name: str, source: Deployment, *, actor: str, reason: str
    ) -> list[Outcome]:
        try:
            dep = self.deploy(
                project,
                name,
                source.image,
                reason=reason,
                actor=actor,
                source_run=source.source_run,
                order_key=source.order_key,
                hold_rolled_back=True,
            )
        except DeployError as exc:
            return [Outcome(name, None, blocked=str(exc))]
        outcomes = [Outcome(name, dep)]
        if dep.status == HEALTHY:
            outcomes.extend(self.promote_from(project, name, dep, actor=actor))
        return outcomes

    def on_published(
        self,
        project: str,
        pipeline: str,
        image: str,
        *,
        branch: str,
        actor: str = "chute",
        source_run: str | None = None,
        order_key: str | None = None,
    ) -> list[Outcome]:
        """A pipeline published ``image`` on ``branch``: deploy it where ``auto`` + ``from`` say so."""
        outcomes: list[Outcome] = []
        envs = self.environments(project)
        for name in promotion_order(envs):
            env = envs[name]
            if not (env.auto and env.from_pipeline == pipeline and env.branch == branch):
                continue
            try:
                dep = self.deploy(
                    project,
                    name,
                    image,
                    reason=f"published by pipeline {pipeline} on {branch}",
                    actor=actor,
                    source_run=source_run,
                    order_key=order_key,
                    hold_rolled_back=True,
                )
            except DeployError as exc:
                outcomes.append(Outcome(name, None, blocked=str(exc)))
                continue
            outcomes.append(Outcome(name, dep))
            if dep.status == HEALTHY:
                outcomes.extend(self.promote_from(project, name, dep, actor=actor))
        return outcomes

    # ------------------------------------------------------------------ guards

    def _check_calendar(
        self, env: Environment, override: bool, actor: str, reason: str
    ) -> dict[str, Any] | None:
        now = self.clock()
        window = active_freeze(env, now)
        closed = outside_windows(env, now)
        if window is None and not closed:
            return None
        what = (
            f"frozen from {window.describe()}"
            if window
            else "outside its deploy windows (" + "; ".join(w.describe() for w in env.windows) + ")"
        )
        if not override:
            raise DeployBlocked(
                f"environment {env.name} is {what}; deploy after that, or override the "
                "freeze with a reason (override_freeze=True / --override-freeze)"
            )
        if not actor or not reason.strip():
            raise DeployBlocked(
                f"environment {env.name} is {what}: overriding it needs an actor and a reason"
            )
        return {"what": what, "actor": actor, "reason": reason, "at": now.isoformat()}

    @contextlib.contextmanager
    def _locked(self, project: str, environment: str) -> Iterator[None]:
        with self._mutex:
            local = self._local_locks.setdefault((project, environment), threading.Lock())
        if not local.acquire(blocking=False):
            raise DeployBusy(f"a deploy of {project}/{environment} is already running; wait for it to finish")
        owner = f"{uuid.uuid4()}"
        try:
            if not self.store.try_lock(project, environment, owner, self.lock_ttl):
                raise DeployBusy(
                    f"a deploy of {project}/{environment} is already running (in another "
                    "process); wait for it to finish"
                )
            try:
                yield
            finally:
                self.store.unlock(project, environment, owner)
        finally:
            local.release()


def _probe_url(target: Target, release: Release, state: dict[str, Any], serving: bool) -> str | None:
    try:
        return target.probe_url(release, state, serving=serving)  # type: ignore[call-arg]
    except TypeError:
        return target.probe_url(release, state)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _served_revision(target: Target, project: str, env: Environment) -> int | None:
    """The revision the target sends traffic to now, when it can tell (None: nothing, or unknown)."""
    served = getattr(target, "served_revision", None)
    return served(project, env) if served is not None else None
