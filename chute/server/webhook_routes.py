"""``POST /webhooks/{kind}?project=NAME``: code-review events in, runs queued.

Order matters: the project (named in the URL) gives the secret; the secret or
signature is checked before the payload is parsed or anything is stored; a wrong
or missing one is a 401 and leaves no trace. Each delivery id is stored in the
same transaction as the runs it causes, so a redelivery is processed once and
a delivery whose processing failed can be retried by the sender.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chute.store import Project, WebhookDelivery

from . import services
from .webhooks import ChangeEvent, WebhookError, check_project, get_driver

router = APIRouter(tags=["webhooks"])

MAX_BODY = 25 * 1024 * 1024  # GitHub's own cap on payloads


def incoming_from(event: ChangeEvent, project: Project) -> services.Incoming | None:
    """A review-system event in the server's terms; None when it calls for nothing."""
    common: dict[str, Any] = {
        "commit": event.sha or "", "ref": event.ref or "", "author": event.author or "",
        "url": event.url or "", "number": str(event.change_number) if event.change_number is not None else "",
        "patchset": event.patchset or 0,
    }
    if event.type == "patchset":
        return services.Incoming(kind="patchset", branch=event.target_branch or event.branch or "", **common)
    if event.type == "comment":
        bot = os.environ.get("CHUTE_REVIEW_ACCOUNT")
        if bot and event.author == bot:
            return None  # never react to our own reports
        return services.Incoming(kind="comment", branch=event.target_branch or "", recheck=event.recheck,
                                 comment=event.comment or "", **common)
    if event.type == "tag":
        return services.Incoming(kind="tag", branch="", **common)
    if event.type in ("merged", "ref-updated"):
        branch = event.target_branch or event.branch or ""
        if event.type == "ref-updated" and not (event.ref or "").startswith("refs/heads/"):
            return None
        # Landed on the default branch: trusted, publishes. Elsewhere: only tests.
        kind = "merged" if branch == project.default_branch else "push-branch"
        return services.Incoming(kind=kind, branch=branch, **common)
    return None


@router.post("/webhooks/{kind}", summary="Receive a code-review event (Gerrit, GitLab, GitHub, plain git)",
             responses={202: {"description": "Accepted; the runs it queued (or why it was ignored)"},
                        200: {"description": "A delivery already processed"},
                        400: {"description": "No project in the URL, or a malformed payload; nothing stored"},
                        401: {"description": "Missing or wrong secret/signature; nothing stored"},
                        403: {"description": "The payload names another repository"},
                        404: {"description": "No such webhook kind or project"},
                        413: {"description": "The payload is larger than 25 MB"},
                        422: {"description": "The event names a commit the repository does not have"},
                        502: {"description": "The project's repository could not be fetched"}})
async def receive(kind: str, request: Request, project: str | None = None) -> JSONResponse:
    state = request.app.state.chute
    try:
        driver = get_driver(kind)
    except WebhookError as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    if not project:
        return JSONResponse({"detail": "name the chute project in the URL: /webhooks/{kind}?project=<name>"},
                            status_code=400)
    secret = await asyncio.to_thread(_secret_of, state, project)  # no database call on the event loop
    if secret is None:
        return JSONResponse({"detail": f"no project named {project!r}"}, status_code=404)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        return JSONResponse({"detail": "payload larger than 25 MB"}, status_code=413)
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"detail": "payload larger than 25 MB"}, status_code=413)
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not driver.verify(headers, body, secret, query=dict(request.query_params)):
        return JSONResponse({"detail": "wrong or missing webhook secret/signature"}, status_code=401)
    try:
        events = driver.parse(headers, body)
        await asyncio.to_thread(_check_project, state, project, events)
    except WebhookError as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    out = await asyncio.to_thread(process_events, state, project, kind, events)
    return JSONResponse({k: v for k, v in out.items() if k != "http_status"}, status_code=out["http_status"])


def _secret_of(state: Any, project: str) -> str | None:
    with state.db.session() as s:
        p = s.scalars(select(Project).where(Project.name == project)).first()
        return p.webhook_secret if p is not None else None


def _check_project(state: Any, project: str, events: list[ChangeEvent]) -> None:
    with state.db.session() as s:
        p = s.scalars(select(Project).where(Project.name == project)).one()
        check_project(events, p.review_project or p.name)


def process_events(state: Any, project: str, kind: str, events: list[ChangeEvent]) -> dict[str, Any]:
    """Store each delivery id and queue the runs its event calls for; shared with stream-events."""
    queued: list[int] = []
    duplicates = 0
    for event in events:
        try:
            with state.db.session() as s:
                p = s.scalars(select(Project).where(Project.name == project)).one()
                s.add(WebhookDelivery(project_id=p.id, kind=kind, delivery_id=event.delivery_id[:200]))
                s.flush()  # a duplicate delivery fails here, before anything else happens
                inc = incoming_from(event, p)
                if inc is not None:
                    runs = services.ingest(s, state.settings, p, inc, actor=event.author or f"webhook:{kind}",
                                           trigger="recheck" if inc.recheck else "webhook")
                    s.flush()
                    queued.extend(r.id for r in runs)
        except IntegrityError:
            duplicates += 1
        except services.ServiceError as exc:
            return {"http_status": exc.status, "detail": exc.message}
    if queued:
        state.wake_agents()
        for run_id in queued:
            state.run_queued(run_id)
    if duplicates and not queued and duplicates == len(events):
        return {"http_status": 200, "status": "duplicate", "detail": "delivery already processed", "runs": []}
    return {"http_status": 202, "status": "accepted", "runs": queued}
