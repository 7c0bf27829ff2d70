"""The agent protocol: claim (long poll), heartbeat, stage updates, logs, completion."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import Agent, Job, LogChunk, Run, utcnow

from .. import access, services
from ..access import Identity
from .deps import get_session, get_state, identity
from .schemas import AgentIn, ClaimIn, ClaimOut, CompleteIn, GraphIn, HeartbeatOut, LogsIn, StageIn

router = APIRouter(prefix="/api/v1", tags=["agents"])


def _held_job(s: Session, job_id: int, agent: str) -> Job:
    job = s.get(Job, job_id)
    if job is None or job.status != "claimed" or job.agent != agent:
        raise services.ServiceError(f"job {job_id} is not held by agent {agent}", 409,
                                    "the lease expired and the job went back to the queue; drop this work")
    return job


def _touch_agent(s: Session, name: str) -> None:
    a = s.scalars(select(Agent).where(Agent.name == name)).first()
    if a is None:
        s.add(Agent(name=name))
    else:
        a.last_seen = utcnow()


@router.post("/agents/claim", response_model=ClaimOut, responses={204: {"description": "No job within `wait`"}})
async def claim(body: ClaimIn, who: Identity = Depends(identity), state=Depends(get_state)):  # type: ignore[no-untyped-def]
    """Long poll: answers with a job as soon as one is queued, or 204 after ``wait`` seconds."""
    access.require(who, access.AGENT)
    deadline = time.monotonic() + body.wait
    lease = state.settings.lease_seconds
    while True:
        c = await asyncio.to_thread(state.queue.claim, body.agent, lease=lease)
        if c is not None:
            with state.db.session() as s:
                _touch_agent(s, body.agent)
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


@router.post("/jobs/{job_id}/heartbeat", response_model=HeartbeatOut)
def heartbeat(job_id: int, body: AgentIn, who: Identity = Depends(identity),
              state=Depends(get_state)) -> HeartbeatOut:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    return HeartbeatOut(status=state.queue.heartbeat(job_id, body.agent, lease=state.settings.lease_seconds))


@router.post("/jobs/{job_id}/graph", status_code=204)
def graph(job_id: int, body: GraphIn, who: Identity = Depends(identity), s: Session = Depends(get_session),
          state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    job = _held_job(s, job_id, body.agent)
    services.set_graph(s, s.get(Run, job.run_id), body.graph)
    s.flush()
    state.broadcaster.publish(job.run_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/stage", status_code=204)
def stage(job_id: int, body: StageIn, who: Identity = Depends(identity), s: Session = Depends(get_session),
          state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    job = _held_job(s, job_id, body.agent)
    services.update_stage(s, s.get(Run, job.run_id), body.stage, body.status, error=body.error,
                          exports=body.exports)
    s.flush()
    state.broadcaster.publish(job.run_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/logs", status_code=204)
def logs(job_id: int, body: LogsIn, who: Identity = Depends(identity), s: Session = Depends(get_session),
         state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    """Append log chunks; a chunk whose ``seq`` was already stored (a retry) is ignored."""
    access.require(who, access.AGENT)
    job = _held_job(s, job_id, body.agent)
    seqs = [int(c["seq"]) for c in body.chunks]
    have = set(s.scalars(select(LogChunk.seq).where(LogChunk.run_id == job.run_id, LogChunk.seq.in_(seqs))))
    for c in body.chunks:
        if int(c["seq"]) not in have:
            s.add(LogChunk(run_id=job.run_id, seq=int(c["seq"]), stage=str(c.get("stage", "")),
                           text=str(c.get("text", ""))))
    s.flush()
    state.broadcaster.publish(job.run_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/complete", status_code=204)
def complete(job_id: int, body: CompleteIn, who: Identity = Depends(identity),
             state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    access.require(who, access.AGENT)
    with state.db.session() as s:
        job = _held_job(s, job_id, body.agent)
        run_id = job.run_id
        services.complete_run(s, s.get(Run, run_id), body.result, agent=body.agent)
        state.queue.finish(s, job_id, body.agent)
    # After the commit: live pages and reporters see the finished run.
    state.broadcaster.publish(run_id)
    state.after_run(run_id)
    return Response(status_code=204)
