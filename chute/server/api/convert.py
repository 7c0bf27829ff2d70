"""ORM rows to API bodies."""

from __future__ import annotations

from sqlalchemy.orm import defer, selectinload

from chute.store import Change, Image, Run, StageResult

from .schemas import ChangeOut, ImageOut, RunOut, StageOut

# What run_out reads of each run, loaded in a few queries for a whole page of runs; the runner's
# result document (often the largest column) and the params are not part of RunOut.
RUN_OUT_LOADS = (selectinload(Run.project), selectinload(Run.change), selectinload(Run.stages),
                 selectinload(Run.images), defer(Run.result), defer(Run.params))


def _secs(a, b) -> float | None:  # type: ignore[no-untyped-def]
    return round((b - a).total_seconds(), 3) if a is not None and b is not None else None


def change_out(c: Change) -> ChangeOut:
    return ChangeOut(id=c.id, kind=c.kind, number=c.number, patchset=c.patchset, commit=c.commit, ref=c.ref,
                     branch=c.branch, author=c.author, title=c.title, url=c.url)


def image_out(i: Image) -> ImageOut:
    return ImageOut(stage=i.stage, name=i.name, tags=list(i.tags), digest=i.digest, references=i.references())


def stage_out(st: StageResult) -> StageOut:
    return StageOut(name=st.name, status=st.status, error=st.error, started_at=st.started_at,
                    finished_at=st.finished_at, duration=_secs(st.started_at, st.finished_at),
                    exports=st.exports or {}, reused_from=st.reused_from)


def run_out(r: Run, base_url: str) -> RunOut:
    return RunOut(id=r.id, project=r.project.name, pipeline=r.pipeline, status=r.status, reason=r.reason,
                  trigger=r.trigger, actor=r.actor, trusted=r.trusted, rerun_of=r.rerun_of,
                  reuse_from=r.reuse_from, created_at=r.created_at, started_at=r.started_at,
                  finished_at=r.finished_at, duration=_secs(r.started_at, r.finished_at),
                  change=change_out(r.change), stages=[stage_out(s) for s in r.stages],
                  images=[image_out(i) for i in r.images], graph=r.graph or {}, url=f"{base_url}/runs/{r.id}")
