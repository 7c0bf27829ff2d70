"""The agent protocol: claim (long poll), heartbeat, stage updates, logs, completion."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Agent, Job, LogChunk, Run, utcnow
from chute.store.queue import held_for_update

from .. import access, services
from ..access import Identity
from .deps import Transaction, get_state, identity
from .schemas import AUTH, AgentIn, ClaimIn, ClaimOut, CompleteIn, GraphIn, HeartbeatOut, Id, LogsIn, StageIn, errors

router = APIRouter(prefix="/api/v1", tags=["agents"], responses=errors(400, 401, 403, 409, 422))


def _held_job(s: Session, job_id: int, agent: str) -> Job:
    # Locked for the rest of the request's transaction: the reaper cannot requeue it meanwhile.
    job = held_for_update(s, job_id)
    if job is None or job.status != "claimed" or job.agent != agent:
        raise services.ServiceError(f"job {job_id} is not held by agent {agent}", 409,
                                    "the lease expired and the job went back to the queue; drop this work")
    return job


def _touch_agent(state: Any, name: str) -> None:
    """Record that the agent was seen (to the minute: a write per claim would slow every claim)."""
    now = utcnow()
    with state.db.session() as s:
        a = s.scalars(select(Agent).where(Agent.name == name)).first()
        if a is None:
            s.add(Agent(name=name))
        elif now - a.last_seen > timedelta(minutes=1):
            a.last_seen = now


@router.post("/agents/claim", response_model=ClaimOut, responses=AUTH | {204: {"description": "No job within `wait`"}})
async def claim(body: ClaimIn, request: Request, who: Identity = Depends(identity),
                state=Depends(get_state)):  # type: ignore[no-untyped-def]
    """Long poll: answers with a job as soon as one is queued, or 204 after ``wait`` seconds."""
    access.require(who, access.AGENT)
    deadline = time.monotonic() + body.wait
    lease = state.settings.lease_seconds
    while True:
        if await request.is_disconnected():
            # The agent is gone (killed mid-poll): a job claimed now would wait out a lease for nobody.
            return Response(status_code=204)
        c = await asyncio.to_thread(state.queue.claim, body.agent, lease=lease)
        if c is not None:
            # Off the event loop like every database call here: on SQLite a blocked write would hold
            # the loop, and with it the commits of other requests' sessions.
            await asyncio.to_thread(_touch_agent, state, body.agent)
            state.broadcaster.publish(c.run_id)
            return ClaimOut(job_id=c.job_id, run_id=c.run_id, attempt=c.attempt, lease_seconds=lease,
                            payload=c.payload)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.stop.is_set():
            return Response(status_code=204)

        def wait(t: float = min(remaining, 2.0)) -> None:
            with state.claim_wakeup:
                state.claim_wakeup.wait(t)

        await asyncio.to_thread(wait)


@router.post("/jobs/{job_id}/heartbeat", response_model=HeartbeatOut, responses=AUTH)
def heartbeat(job_id: Id, body: AgentIn, who: Identity = Depends(identity),
              state=Depends(get_state)) -> HeartbeatOut:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    return HeartbeatOut(status=state.queue.heartbeat(job_id, body.agent, lease=state.settings.lease_seconds))


@router.post("/jobs/{job_id}/graph", status_code=204, responses=AUTH)
def graph(job_id: Id, body: GraphIn, who: Identity = Depends(identity), s: Session = Transaction,
          state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    job = _held_job(s, job_id, body.agent)
    services.set_graph(s, s.get(Run, job.run_id), body.graph.model_dump())
    s.flush()
    state.broadcaster.publish(job.run_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/stage", status_code=204, responses=AUTH)
def stage(job_id: Id, body: StageIn, who: Identity = Depends(identity), s: Session = Transaction,
          state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    job = _held_job(s, job_id, body.agent)
    services.update_stage(s, s.get(Run, job.run_id), body.stage, body.status, error=body.error,
                          exports=body.exports)
    s.flush()
    state.broadcaster.publish(job.run_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/logs", status_code=204, responses=AUTH)
def logs(job_id: Id, body: LogsIn, who: Identity = Depends(identity), s: Session = Transaction,
         state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    """Append log chunks; a chunk whose ``seq`` was already stored (a retry) is ignored."""
    access.require(who, access.AGENT)
    job = _held_job(s, job_id, body.agent)
    have = set(s.scalars(select(LogChunk.seq).where(LogChunk.run_id == job.run_id,
                                                    LogChunk.seq.in_([c.seq for c in body.chunks]))))
    for c in body.chunks:
        if c.seq not in have:
            have.add(c.seq)
            s.add(LogChunk(run_id=job.run_id, seq=c.seq, stage=c.stage, text=c.text))
    s.flush()
    state.broadcaster.publish(job.run_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/complete", status_code=204, responses=AUTH)
def complete(job_id: Id, body: CompleteIn, who: Identity = Depends(identity),
             state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    with state.db.session() as s:
        job = _held_job(s, job_id, body.agent)
        run_id = job.run_id
        services.complete_run(s, s.get(Run, run_id), body.result.model_dump(), agent=body.agent)
        state.queue.finish(s, job_id, body.agent)
    # After the commit: live pages and reporters see the finished run.
    state.broadcaster.publish(run_id)
    state.after_run(run_id)
    return Response(status_code=204)
