"""Runs: show, logs, live events (SSE), rerun, cancel; changes with all their runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Change, LogChunk, Project, Run

from .. import access, services
from ..access import Identity
from .convert import RUN_OUT_LOADS, change_out, run_out
from .deps import Transaction, caller, get_state, identity
from .schemas import AUTH, DB_INT_MAX, SEQ_MAX, ChangeOut, Id, LogChunkOut, RerunIn, RunOut, errors

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=errors(400, 401, 403, 404, 409, 422))


def load_run(s: Session, run_id: int, who: Identity | None = None, permission: str = access.READ) -> Run:
    """The run, once ``who`` may read its project (or do ``permission`` on it)."""
    run = s.get(Run, run_id)
    if run is None:
        if who is not None:
            access.readable(who)  # an anonymous caller where reading needs a login: 401, not 404
        raise services.ServiceError(f"no run {run_id}", 404)
    if who is not None:
        access.require(who, permission, run.project.name, session=s)
    return run


@router.get("/runs", response_model=list[RunOut])
def list_runs(project: str | None = None, pipeline: str | None = None, status: str | None = None,
              limit: int = Query(50, ge=1, le=500),
              before: int | None = Query(None, ge=1, le=DB_INT_MAX, description="Only ids below this"),
              who: Identity = Depends(caller), s: Session = Transaction,
              state=Depends(get_state)) -> list[RunOut]:  # type: ignore[no-untyped-def]
    """Runs, newest first; filter by project, pipeline, status; page with ``before``."""
    q = select(Run)
    visible = access.readable(who)
    if visible is not None:
        q = q.join(Project, Project.id == Run.project_id).where(Project.name.in_(visible))
    if project:
        q = q.where(Run.project_id == services.get_project(s, project).id)
    if pipeline:
        q = q.where(Run.pipeline == pipeline)
    if status:
        q = q.where(Run.status == status)
    if before:
        q = q.where(Run.id < before)
    q = q.options(*RUN_OUT_LOADS).order_by(Run.id.desc()).limit(limit)
    return [run_out(r, state.settings.base_url) for r in s.scalars(q)]


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: Id, who: Identity = Depends(caller), s: Session = Transaction,
            state=Depends(get_state)) -> RunOut:  # type: ignore[no-untyped-def]
    return run_out(load_run(s, run_id, who), state.settings.base_url)


LOG_PAGE_BYTES = 1 << 20  # one answer carries about this much log text; page on with ``after``


@router.get("/runs/{run_id}/logs", response_model=list[LogChunkOut])
def get_logs(run_id: Id, stage: str | None = None,
             after: int = Query(-1, ge=-1, le=SEQ_MAX, description="Only chunks with seq > after"),
             limit: int = Query(5000, ge=1, le=50000), who: Identity = Depends(caller),
             s: Session = Transaction) -> list[LogChunkOut]:
    """Log chunks in order, at most ``limit`` of them and about 1 MiB of text per answer.

    A long log comes in pages: ask again with ``after`` = the last ``seq`` received until the
    answer is empty. ``/runs/{id}/log.txt`` streams the whole log as plain text.
    """
    load_run(s, run_id, who)
    q = select(LogChunk).where(LogChunk.run_id == run_id, LogChunk.seq > after)
    if stage is not None:
        q = q.where(LogChunk.stage == stage)
    out: list[LogChunkOut] = []
    size = 0
    for c in s.scalars(q.order_by(LogChunk.seq).limit(limit).execution_options(yield_per=64)):
        out.append(LogChunkOut(seq=c.seq, stage=c.stage, text=c.text, at=c.at))
        size += len(c.text)
        if size >= LOG_PAGE_BYTES:
            break
    return out


def _snapshot(state: Any, run_id: int, after: int) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    with state.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            return {}, [], after
        snap = {"status": run.status, "reason": run.reason,
                "stages": {st.name: st.status for st in run.stages},
                "images": [ref for img in run.images for ref in img.references()]}
        chunks = s.scalars(select(LogChunk).where(LogChunk.run_id == run_id, LogChunk.seq > after)
                           .order_by(LogChunk.seq).limit(2000)).all()
        logs = [{"seq": c.seq, "stage": c.stage, "text": c.text} for c in chunks]
        return snap, logs, (chunks[-1].seq if chunks else after)


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-sent events: `run` (status, stages, images) and `log` chunks"}})
async def run_events(run_id: Id, request: Request, after: int = Query(-1, ge=-1, le=SEQ_MAX),
                     who: Identity = Depends(caller),
                     state=Depends(get_state)) -> StreamingResponse:  # type: ignore[no-untyped-def]
    """Live progress of a run as server-sent events; ends when the run is finished."""

    def exists() -> None:
        with state.db.session() as s:
            load_run(s, run_id, who)

    await asyncio.to_thread(exists)  # never a database call on the event loop (see api/agents.py)

    async def stream() -> AsyncIterator[bytes]:
        seq = after
        last: dict[str, Any] | None = None
        wake = state.broadcaster.subscribe(run_id)
        try:
            while True:
                snap, logs, seq = await asyncio.to_thread(_snapshot, state, run_id, seq)
                for chunk in logs:
                    yield f"event: log\nid: {chunk['seq']}\ndata: {json.dumps(chunk)}\n\n".encode()
                if snap != last:
                    last = snap
                    yield f"event: run\ndata: {json.dumps(snap)}\n\n".encode()
                if snap.get("status") in services.FINAL:
                    if not logs:
                        yield b"event: end\ndata: {}\n\n"
                        return
                    continue  # a finished run's remaining logs: no need to wait for a change
                if await request.is_disconnected():
                    return
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), timeout=1.0)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            state.broadcaster.unsubscribe(run_id, wake)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/runs/{run_id}/rerun", response_model=RunOut, status_code=201, responses=AUTH)
def rerun(run_id: Id, body: RerunIn | None = None, who: Identity = Depends(identity),
          state=Depends(get_state)) -> RunOut:  # type: ignore[no-untyped-def]
    with state.db.session() as s:
        new = services.rerun(s, state.settings, load_run(s, run_id, who, access.RERUN), actor=who.actor,
                             failed_only=bool(body and body.failed_only))
        s.flush()
        out = run_out(new, state.settings.base_url)
    state.wake_agents()
    return out


@router.post("/runs/{run_id}/cancel", response_model=RunOut, responses=AUTH)
def cancel(run_id: Id, who: Identity = Depends(identity), s: Session = Transaction,
           state=Depends(get_state)) -> RunOut:  # type: ignore[no-untyped-def]
    run = load_run(s, run_id, who, access.CANCEL)
    if not state.queue.request_cancel(s, run, who.actor):
        raise services.ServiceError(f"run {run_id} already finished ({run.status})", 409)
    s.flush()
    state.broadcaster.publish(run_id)
    return run_out(run, state.settings.base_url)


@router.get("/projects/{name}/changes/{number}", response_model=list[RunOut])
def change_runs(name: str, number: str, who: Identity = Depends(caller), s: Session = Transaction,
                state=Depends(get_state)) -> list[RunOut]:  # type: ignore[no-untyped-def]
    """Every run of a change (all patchsets), newest first; ``number`` may also be a commit sha."""
    access.require(who, access.READ, name, session=s)
    p = services.get_project(s, name)
    q = select(Run).join(Change).where(Run.project_id == p.id)
    if len(number) >= 7 and all(c in "0123456789abcdef" for c in number):
        # A range, not LIKE 'key%': SQLite uses ix_changes_project_commit only for a range.
        q = q.where((Change.number == number) | ((Change.commit >= number) & (Change.commit < number + "g")))
    else:
        q = q.where(Change.number == number)
    return [run_out(r, state.settings.base_url) for r in s.scalars(q.options(*RUN_OUT_LOADS).order_by(Run.id.desc()))]


@router.get("/changes/{change_id}", response_model=ChangeOut)
def get_change(change_id: Id, who: Identity = Depends(caller), s: Session = Transaction) -> ChangeOut:
    c = s.get(Change, change_id)
    if c is None:
        access.readable(who)
        raise services.ServiceError(f"no change {change_id}", 404)
    access.require(who, access.READ, c.project.name, session=s)
    return change_out(c)
