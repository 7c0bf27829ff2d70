"""Traces: the journey of one patch to production, and every patch one deployment shipped.

``trace_change`` / ``trace_commit`` follow a patch: uploaded -> tests passed ->
merged -> image built -> each environment, with the time between steps.
``trace_deployment`` starts from an environment and revision and lists the
commits that deployment shipped (``deploy.finished.data.commits``), each mapped
back to its change. All of it is read from the ledger (docs/ledger.md).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chute.store import Database, Event
from chute.store.ledger import to_json

from .ledgerview import PD, Deploy, E, chunks, load_deploys, load_rollbacks, reading
from .periods import iso, seconds
from .sql import epoch, from_epoch

HEX = re.compile(r"^[0-9a-f]{4,64}$")


class TraceError(Exception):
    """Nothing to trace, or an unclear request; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 404, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.hint = message, status, hint


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


# ------------------------------------------------------------------ data
@dataclass
class Step:
    """One step of a patch's journey; ``at`` None means not reached yet."""

    key: str  # uploaded | pushed | tests_passed | merged | image_built | deployed
    label: str
    at: datetime | None
    seconds_since_previous: float | None = None
    seconds_since_start: float | None = None
    environment: str | None = None
    revision: int | None = None
    run: int | None = None
    pipeline: str | None = None
    patchset: int | None = None
    commit: str | None = None
    image_digest: str | None = None


@dataclass
class RunRef:
    run: int
    pipeline: str | None = None
    trigger: str | None = None
    outcome: str | None = None
    commit: str | None = None
    patchset: int | None = None
    queued_at: datetime | None = None
    finished_at: datetime | None = None
    rerun_of: int | None = None


@dataclass
class PatchsetRef:
    patchset: int
    commit: str
    uploaded_at: datetime
    runs: list[RunRef] = field(default_factory=list)


@dataclass
class DeploymentRef:
    environment: str
    revision: int | None
    at: datetime
    outcome: str
    kind: str
    image_digest: str
    first_delivery: bool  # the first healthy deploy of this environment that shipped the patch


@dataclass
class PatchTrace:
    project: str
    change: str | None
    commit: str | None  # the merged (or pushed) commit
    title: str
    state: str
    environment: str  # where lead time is measured to
    uploaded_at: datetime | None
    merged_at: datetime | None
    lead_time_from_upload_seconds: float | None
    lead_time_from_merge_seconds: float | None
    steps: list[Step]
    patchsets: list[PatchsetRef]
    runs: list[RunRef]  # runs on the merged/pushed commit
    deployments: list[DeploymentRef]
    events: list[dict[str, Any]]
    type: str = "patch"

    def to_json(self) -> dict[str, Any]:
        return _json(asdict(self))


@dataclass
class ShippedChange:
    commit: str
    change: str | None
    title: str
    uploaded_at: datetime | None
    merged_at: datetime | None
    lead_time_from_upload_seconds: float | None
    lead_time_from_merge_seconds: float | None
    first_delivery: bool | None  # None when this deploy was not healthy
    shipped_before_by: int | None  # revision of an earlier healthy deploy that already shipped it


@dataclass
class DeploymentTrace:
    project: str
    environment: str
    revision: int
    kind: str
    outcome: str  # healthy | failed | rolled-back | in progress
    image_digest: str
    commit: str
    previous_revision: int | None
    reason: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    health: list[dict[str, Any]]
    rollback: dict[str, Any] | None
    changes: list[ShippedChange]
    newer_revision: int | None
    older_revision: int | None
    events: list[dict[str, Any]]
    type: str = "deployment"

    def to_json(self) -> dict[str, Any]:
        return _json(asdict(self))


# ------------------------------------------------------------------ patches
def trace_change(db: Database | Session, project: str, change: str, *,
                 environment: str = "production") -> PatchTrace:
    """The journey of change ``change`` (Gerrit change, MR or PR number) of ``project``."""
    change = change.strip().lstrip("#!")
    with reading(db) as s:
        evs = list(s.scalars(select(Event).where(Event.project == project, Event.change == change)
                             .order_by(Event.id)))
        if not evs:
            raise TraceError(f"project {project!r} has no change {change!r} in the ledger", 404,
                             "give a change number as the review system shows it, or a commit")
        return _patch_trace(s, project, evs, change=change, environment=environment)


def trace_commit(db: Database | Session, project: str, commit: str, *,
                 environment: str = "production") -> PatchTrace:
    """The journey of the patch a commit belongs to (a patchset, merged or pushed commit;
    an abbreviated sha of at least 7 characters is fine)."""
    commit = commit.strip().lower()
    if not HEX.match(commit) or len(commit) < 7:
        raise TraceError(f"{commit!r} is not a commit: write at least 7 hexadecimal characters", 400)
    with reading(db) as s:
        full = _resolve_commit(s, project, commit)
        evs = list(s.scalars(select(Event).where(Event.project == project, Event.commit == full)
                             .order_by(Event.id)))
        numbers = [e.change for e in evs if e.change and e.kind in ("change.uploaded", "change.merged")] \
            or [e.change for e in evs if e.change]
        if numbers:
            change = numbers[0]
            evs = list(s.scalars(select(Event).where(Event.project == project, Event.change == change)
                                 .order_by(Event.id)))
            return _patch_trace(s, project, evs, change=change, environment=environment)
        return _patch_trace(s, project, evs, change=None, environment=environment, commit=full)


def _resolve_commit(s: Session, project: str, prefix: str) -> str:
    if len(prefix) >= 40:
        found = {prefix}
    else:
        upper = prefix + "g"  # every sha starting with prefix sorts below this (hex digits only)
        found = set(s.scalars(select(Event.commit).where(Event.project == project, Event.commit >= prefix,
                                                         Event.commit < upper).distinct().limit(5)))
        if not found:  # perhaps only ever shipped inside a push of several commits
            for d in load_deploys(s, project=project, shipping=prefix):
                found.update(c for c in d.commits if c.startswith(prefix))
    if len(found) > 1:
        raise TraceError(f"commit prefix {prefix!r} is ambiguous in project {project!r}: "
                         + ", ".join(sorted(found)), 400, "give more characters of the sha")
    if not found:
        raise TraceError(f"project {project!r} has no commit {prefix!r} in the ledger", 404,
                         "check the project name and the sha")
    return found.pop()


def _runs(evs: list[Event]) -> dict[int, RunRef]:
    runs: dict[int, RunRef] = {}
    for e in evs:
        if e.run_id is None or not e.kind.startswith("run."):
            continue
        r = runs.setdefault(e.run_id, RunRef(e.run_id, commit=e.commit or None, patchset=e.patchset or None))
        data = e.data or {}
        r.pipeline = r.pipeline or data.get("pipeline")
        r.trigger = r.trigger or data.get("trigger")
        if e.kind == "run.queued":
            r.queued_at = e.at
        elif e.kind == "run.finished":
            r.outcome, r.finished_at = e.outcome, e.at
            r.rerun_of = data.get("rerun_of")
    return runs


def _patch_trace(s: Session, project: str, evs: list[Event], *, change: str | None, environment: str,
                 commit: str | None = None) -> PatchTrace:
    uploads = [e for e in evs if e.kind == "change.uploaded"]
    merged = next((e for e in evs if e.kind == "change.merged"), None)
    pushed = next((e for e in evs if e.kind == "change.pushed"), None) if change is None else None
    target = merged.commit if merged is not None else (pushed.commit if pushed is not None else commit)
    if target is None and uploads:
        target = uploads[-1].commit  # still in review: its newest patchset
    if target and change is not None:  # events on the merged commit recorded without the change number
        have = {e.id for e in evs}
        more = s.scalars(select(Event).where(Event.project == project, Event.commit == target))
        evs = sorted([*evs, *(e for e in more if e.id not in have)], key=lambda e: e.id)
    runs = _runs(evs)
    title = ""
    for e in [merged, pushed, *reversed(uploads)]:
        if e is not None and (e.data or {}).get("title"):
            title = e.data["title"]
            break
    patchsets: dict[int, PatchsetRef] = {}
    for e in uploads:
        patchsets.setdefault(e.patchset, PatchsetRef(e.patchset, e.commit, e.at))
    for r in runs.values():
        if r.patchset in patchsets and r.commit == patchsets[r.patchset].commit and \
                (merged is None or (r.queued_at or r.finished_at or merged.at) <= merged.at):
            patchsets[r.patchset].runs.append(r)
    in_patchsets = {id(r) for ps in patchsets.values() for r in ps.runs}
    post_runs = [r for r in runs.values() if id(r) not in in_patchsets]

    uploaded_at = uploads[0].at if uploads else (pushed.at if pushed is not None else None)
    merged_at = merged.at if merged is not None else (pushed.at if pushed is not None else None)
    steps: list[Step] = []
    if uploads:
        steps.append(Step("uploaded", f"uploaded (patchset {uploads[0].patchset})", uploads[0].at,
                          patchset=uploads[0].patchset, commit=uploads[0].commit))
    if pushed is not None:
        steps.append(Step("pushed", "pushed", pushed.at, commit=pushed.commit))
    tests = _tests_passed(runs, patchsets, merged, target)
    if tests is not None:
        steps.append(Step("tests_passed", f"tests passed ({tests.pipeline or 'pipeline'}, run {tests.run})",
                          tests.finished_at, run=tests.run, pipeline=tests.pipeline, commit=tests.commit))
    if merged is not None:
        steps.append(Step("merged", "merged", merged.at, commit=merged.commit))

    deploys = load_deploys(s, project=project, shipping=target) \
        if target and (merged is not None or pushed is not None or change is None) else []
    firsts: dict[str, Deploy] = {}
    for d in deploys:
        if d.healthy:
            firsts.setdefault(d.environment, d)
    image = _image_built(s, project, evs, target, firsts)
    if image is not None:
        steps.append(Step("image_built", f"image built ({image.image_digest[:19]})", image.at,
                          run=image.run_id, image_digest=image.image_digest, commit=image.commit or None))
    for env, d in sorted(firsts.items(), key=lambda kv: kv[1].at):
        steps.append(Step("deployed", f"deployed to {env} (revision {d.revision})", d.at, environment=env,
                          revision=d.revision, image_digest=d.image_digest or None))
    steps.sort(key=lambda st: st.at)  # type: ignore[arg-type, return-value]
    start = steps[0].at if steps else None
    prev: datetime | None = None
    for st in steps:
        st.seconds_since_previous = seconds(st.at, prev)
        st.seconds_since_start = seconds(st.at, start)
        prev = st.at
    if environment not in firsts and (merged is not None or pushed is not None):
        steps.append(Step("deployed", f"deployed to {environment}", None, environment=environment))

    delivered = firsts.get(environment)
    if merged is None and pushed is None:
        state = "in review" if uploads else "seen in deployments"
        if firsts:
            state = f"deployed to {list(firsts)[-1]}"
    elif delivered is not None:
        state = f"deployed to {environment}"
    elif firsts:
        state = f"deployed to {', '.join(firsts)}; not yet to {environment}"
    else:
        state = "merged, not deployed yet"
    return PatchTrace(
        project=project, change=change, commit=target, title=title, state=state, environment=environment,
        uploaded_at=uploaded_at, merged_at=merged_at,
        lead_time_from_upload_seconds=seconds(delivered.at, uploaded_at) if delivered else None,
        lead_time_from_merge_seconds=seconds(delivered.at, merged_at) if delivered else None,
        steps=steps, patchsets=sorted(patchsets.values(), key=lambda p: p.patchset), runs=post_runs,
        deployments=[DeploymentRef(d.environment, d.revision, d.at, d.outcome, d.kind, d.image_digest,
                                   firsts.get(d.environment) is d) for d in deploys],
        events=[to_json(e) for e in evs],
    )


def _tests_passed(runs: dict[int, RunRef], patchsets: dict[int, PatchsetRef], merged: Event | None,
                  target: str | None) -> RunRef | None:
    """The first successful run of the patchset that merged (else of any patchset before the
    merge; else on the merged or pushed commit)."""
    ok = [r for r in runs.values() if r.outcome == "success" and r.finished_at is not None]
    if patchsets:
        last = patchsets[max(patchsets)]
        pre = [r for ps in patchsets.values() for r in ps.runs if r.outcome == "success" and r.finished_at]
        pick = [r for r in last.runs if r.outcome == "success" and r.finished_at] or pre
        if pick:
            return min(pick, key=lambda r: r.finished_at)  # type: ignore[arg-type, return-value]
    on_target = [r for r in ok if r.commit == target]
    return min(on_target, key=lambda r: r.finished_at) if on_target else None  # type: ignore[arg-type, return-value]


def _image_built(s: Session, project: str, evs: list[Event], target: str | None,
                 firsts: dict[str, Deploy]) -> Event | None:
    """The image published from the merged commit; else the image the first deploy rolled out."""
    own = [e for e in evs if e.kind == "image.published" and target and e.commit == target]
    if own:
        return own[0]
    first = min(firsts.values(), key=lambda d: d.at) if firsts else None
    if first is None or not first.image_digest:
        return None
    return s.scalars(select(Event).where(Event.kind == "image.published", Event.project == project,
                                         Event.image_digest == first.image_digest)
                     .order_by(Event.id).limit(1)).first()


# ------------------------------------------------------------------ deployments
def trace_deployment(db: Database | Session, project: str, environment: str, revision: int) -> DeploymentTrace:
    """Deployment ``revision`` of ``environment``: what it shipped, how it went."""
    with reading(db) as s:
        evs = list(s.scalars(select(Event).where(Event.project == project, Event.environment == environment,
                                                 Event.revision == revision).order_by(Event.id)))
        if not evs:
            known = s.scalars(select(Event.revision).where(
                Event.project == project, Event.environment == environment, Event.kind == "deploy.finished")
                .order_by(Event.revision.desc()).limit(5)).all()
            hint = (f"recent revisions of {environment}: {', '.join(str(r) for r in known)}" if known
                    else f"project {project!r} has no deployment to {environment!r} in the ledger")
            raise TraceError(f"no deployment revision {revision} of {environment!r} in project {project!r}",
                             404, hint)
        finished = [e for e in evs if e.kind == "deploy.finished"]
        started = next((e for e in evs if e.kind == "deploy.started"), None)
        fin = finished[-1] if finished else None
        data = dict((started.data if started else None) or {})
        data.update((fin.data if fin else None) or {})
        commits = [str(c) for c in data.get("commits") or []]
        outcome = fin.outcome if fin else "in progress"
        patches = _patches_for_commits(s, project, commits)
        firsts: dict[str, tuple[int, int | None]] = {}  # patch key -> (event id, revision) of its first delivery
        for batch in chunks(sorted({p.key for p in patches.values()})):
            firsts.update((k, (ev_id, rev)) for k, ev_id, rev in s.execute(select(PD.patch, PD.event_id, PD.revision)
                          .where(PD.project == project, PD.environment == environment, PD.patch.in_(batch))))
        changes = []
        for c in commits:
            p = patches.get(c)
            up = from_epoch(p.uploaded_at) if p and p.uploaded_at is not None else None
            mg = from_epoch(p.merged_at) if p and p.merged_at is not None else None
            healthy = outcome == "healthy"
            changes.append(ShippedChange(
                commit=c, change=(p.change or None) if p else None, title=p.title if p else "",
                uploaded_at=up, merged_at=mg,
                lead_time_from_upload_seconds=seconds(fin.at, up) if fin and healthy else None,
                lead_time_from_merge_seconds=seconds(fin.at, mg) if fin and healthy else None,
                first_delivery=(p is not None and firsts.get(p.key, (None,))[0] == fin.id) if fin and healthy
                else None,
                shipped_before_by=_shipped_before(p, firsts, fin)))
        rollback = None
        for r in load_rollbacks(s, project=project, environment=environment):
            if r.from_revision == revision:
                rollback = rollback or {}
                rollback.update({"to_revision": r.to_revision, "automatic": r.automatic,
                                 "started_at" if r.kind == "rollback.started" else "finished_at": from_epoch(r.at)})
                if r.kind == "rollback.finished":
                    rollback.update({"outcome": r.outcome, "time_to_restore_seconds": r.time_to_restore})
        revs = select(Event.revision).where(Event.project == project, Event.environment == environment,
                                            Event.kind == "deploy.finished")
        newer = s.scalars(revs.where(Event.revision > revision).order_by(Event.revision).limit(1)).first()
        older = s.scalars(revs.where(Event.revision < revision).order_by(Event.revision.desc()).limit(1)).first()
        start_at = started.at if started else None
        return DeploymentTrace(
            project=project, environment=environment, revision=revision, kind=str(data.get("kind") or "deploy"),
            outcome=outcome, image_digest=(fin or started or evs[0]).image_digest,
            commit=(fin or started or evs[0]).commit, previous_revision=data.get("previous_revision"),
            reason=str(data.get("reason") or ""), started_at=start_at, finished_at=fin.at if fin else None,
            duration_seconds=seconds(fin.at if fin else None, start_at),
            health=[{"at": e.at, "outcome": e.outcome, "reason": (e.data or {}).get("reason", ""),
                     "checks": (e.data or {}).get("checks")} for e in evs if e.kind == "health.verdict"],
            rollback=rollback, changes=changes, newer_revision=newer, older_revision=older,
            events=[to_json(e) for e in evs])


def _shipped_before(p: Patch | None, firsts: dict[str, tuple[int, int | None]], fin: Event | None) -> int | None:
    """The revision of an earlier healthy deploy that already delivered this patch."""
    if p is None or p.key not in firsts:
        return None
    event_id, revision = firsts[p.key]
    return revision if fin is None or event_id < fin.id else None


@dataclass
class Patch:
    """A patch as the trace of a deployment shows it; times in epoch seconds."""

    project: str
    change: str  # "" for a plainly pushed commit
    commit: str
    title: str = ""
    uploaded_at: float | None = None
    merged_at: float | None = None

    @property
    def key(self) -> str:  # as in patch_deliveries.patch
        return self.change or "@" + self.commit


def _patches_for_commits(s: Session, project: str, commits: list[str]) -> dict[str, Patch]:
    """commit -> the patch it belongs to (merged, pushed, or a patchset commit), in a few queries."""
    rank = {"change.merged": 0, "change.pushed": 1, "change.uploaded": 2}
    rows: list[tuple[str, str, str, float, str | None, int]] = []
    for batch in chunks(sorted(set(commits))):
        rows.extend(tuple(r) for r in s.execute(  # type: ignore[misc]
            select(E.kind, E.change, E.commit, epoch(E.at), Event.data["title"].as_string(), E.id).where(
                E.project == project, E.commit.in_(batch), E.kind.in_(tuple(rank)))))
    rows.sort(key=lambda r: (rank[r[0]], r[5]))
    changes = sorted({r[1] for r in rows if r[1]})
    uploads: dict[str, float] = {}
    for batch in chunks(changes):
        uploads.update(s.execute(select(E.change, epoch(func.min(E.at))).where(
            E.kind == "change.uploaded", E.project == project, E.change.in_(batch)).group_by(E.change)).all())
    found: dict[str, Patch] = {}
    for kind, change, commit, at, title, _ in rows:
        if commit in found:
            continue
        if kind == "change.pushed" or not change:
            found[commit] = Patch(project, "", commit, title or "", at, at)
        else:
            found[commit] = Patch(project, change, commit, title or "", uploads.get(change),
                                  at if kind == "change.merged" else None)
    return found


def environment_history(db: Database | Session, project: str, environment: str,
                        limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` finished deployments of an environment (rollbacks included)."""
    with reading(db) as s:
        q = select(Event).where(Event.project == project, Event.environment == environment,
                                Event.kind == "deploy.finished").order_by(Event.at.desc(), Event.id.desc())
        out = []
        for e in s.scalars(q.limit(limit)):
            data = e.data or {}
            out.append({"revision": e.revision, "at": e.at, "outcome": e.outcome,
                        "kind": data.get("kind") or "deploy", "image_digest": e.image_digest,
                        "commit": e.commit, "commits": len(data.get("commits") or []),
                        "reason": data.get("reason") or ""})
        return out


def environments(db: Database | Session, project: str) -> list[str]:
    """Names of the environments the project has deployed to, per the ledger."""
    with reading(db) as s:
        return sorted(s.scalars(select(Event.environment).where(
            Event.project == project, Event.kind == "deploy.finished").distinct()))


def trace(db: Database | Session, project: str, *, change: str | None = None, commit: str | None = None,
          environment: str | None = None, revision: int | None = None) -> PatchTrace | DeploymentTrace:
    """One entry point for the API: a change, a commit, or an environment + revision.

    With a change or commit, ``environment`` names where lead time is measured to
    (default ``production``)."""
    given = [n for n, v in (("change", change), ("commit", commit), ("revision", revision)) if v is not None]
    if len(given) != 1:
        raise TraceError("say what to trace: exactly one of change=, commit=, or environment= with revision=",
                         400, "e.g. ?change=1234, ?commit=3f2a9c1, or ?environment=production&revision=12")
    if revision is not None:
        if not environment:
            raise TraceError("revision= needs environment= (a revision number belongs to an environment)", 400)
        return trace_deployment(db, project, environment, revision)
    if change is not None:
        return trace_change(db, project, change, environment=environment or "production")
    return trace_commit(db, project, commit or "", environment=environment or "production")
