"""The ASGI application: REST API, agent protocol, webhooks, Blubberoid, web UI.

``create_app`` wires the pieces; background work (lease reaper, git poller,
reporters, the embedded agent) runs in threads started by the lifespan so that
one ``chute serve`` process is a complete installation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from chute import __version__
from chute.store import Database
from chute.store.queue import Queue

from .auth import ensure_admin_token
from .events import Broadcaster
from .services import ServiceError
from .settings import Settings

log = logging.getLogger("chute.server")


class State:
    """Everything a request handler may need, hung on ``app.state.chute``."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.queue = Queue(db)
        self.broadcaster = Broadcaster()
        self.admin_token = ""
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.claim_wakeup = threading.Condition()
        # Called with a run id after a commit: "queued" (reporters post pending statuses) and
        # "finished" (reporters post results, auto-deploys start). Hooks run off the request path.
        self.hooks: dict[str, list[Callable[[State, int], None]]] = {"queued": [], "finished": []}
        self._pending: queue.Queue[tuple[str, int]] = queue.Queue()
        self._post_worker: threading.Thread | None = None
        from .deploys import DeployService

        self.deploys = DeployService(self)  # deploy requests, the deploy worker, freezes (deploys.py)

    def wake_agents(self) -> None:
        with self.claim_wakeup:
            self.claim_wakeup.notify_all()

    def run_queued(self, run_id: int) -> None:
        self._notify("queued", run_id)

    def after_run(self, run_id: int) -> None:
        self._notify("finished", run_id)

    def _notify(self, what: str, run_id: int) -> None:
        if self._post_worker is None:  # no background threads (tests): run the hooks now
            self._run_hooks(what, run_id)
        else:
            self._pending.put((what, run_id))

    def _run_hooks(self, what: str, run_id: int) -> None:
        for hook in self.hooks[what]:
            try:
                hook(self, run_id)
            except Exception:
                log.exception("%s hook %s failed for run %s", what, getattr(hook, "__name__", hook), run_id)

    def start_post_worker(self) -> threading.Thread:
        def work() -> None:
            while not self.stop.is_set():
                try:
                    what, run_id = self._pending.get(timeout=0.5)
                except queue.Empty:
                    continue
                self._run_hooks(what, run_id)

        self._post_worker = threading.Thread(target=work, name="chute-hooks", daemon=True)
        self._post_worker.start()
        return self._post_worker


def _background(state: State, name: str, target: Any, interval: float) -> threading.Thread:
    def loop() -> None:
        while not state.stop.is_set():
            try:
                target()
            except Exception:  # keep the loop alive; the error is logged with its traceback
                log.exception("%s failed", name)
            state.stop.wait(interval)

    t = threading.Thread(target=loop, name=f"chute-{name}", daemon=True)
    t.start()
    return t


class NoNulInUrls:
    """A 400 for a URL with a NUL: no name or id contains one, and PostgreSQL cannot even compare
    text with it. Plain ASGI, not ``@app.middleware``: Starlette's BaseHTTPMiddleware hides a
    client's disconnect from the route (a killed agent's long poll would go on and claim a job)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path, query = scope.get("path", ""), scope.get("query_string", b"")
        if scope["type"] == "http" and ("\x00" in path or b"%00" in query):
            answer = JSONResponse({"detail": "the URL contains a NUL character (%00)"}, status_code=400)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, start_background: bool = True) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.database_url)
    state = State(settings, db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.migrate()
        state.admin_token = ensure_admin_token(db, settings.home)
        # Agents kept working while this server was down: their jobs resume rather than requeue.
        resumed = await asyncio.to_thread(state.queue.resume_after_restart, settings.lease_seconds)
        if resumed:
            log.info("%d running job(s) get a new lease of %gs to report back", resumed, settings.lease_seconds)
        # A deployment a stopped server left half-done ends on a known revision (failed, "interrupted").
        await asyncio.to_thread(state.deploys.recover)
        if start_background:
            state.threads.append(state.deploys.start())
            from .poller import poll_once

            state.threads.append(state.start_post_worker())
            state.threads.append(_background(state, "reaper", lambda: _reap(state), settings.reap_interval))
            state.threads.append(_background(state, "poller", lambda: poll_once(state), settings.poll_interval))
            from chute.store.ledger import apply_retention

            from .gerrit_stream import run_stream

            state.threads.append(_background(state, "retention", lambda: apply_retention(db), 3600.0))

            state.threads.append(_background(state, "gerrit-stream", lambda: run_stream(state), 1.0))
            if settings.embedded_agent:
                from chute.agent import start_embedded_agent

                state.threads.append(start_embedded_agent(state))
        try:
            yield
        finally:
            state.stop.set()
            state.wake_agents()
            for t in state.threads:
                t.join(timeout=10)
            db.dispose()

    app = FastAPI(
        title="chute",
        version=__version__,
        description="Self-service deployment pipeline: projects, runs, agents, deployments, the ledger.",
        docs_url="/api/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.chute = state

    app.add_middleware(NoNulInUrls)

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the checks let through (too long, out of range, NUL):
        # the request is at fault, and nothing was stored (the transaction rolled back).
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        return JSONResponse({"detail": f"a value in the request cannot be stored: {reason[:300]}",
                             "hint": "shorten or correct the value"}, status_code=400)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.message}
        if exc.hint:
            body["hint"] = exc.hint
        return JSONResponse(body, status_code=exc.status)

    from .api import access as access_api
    from .api import agents, deployments, projects, runs, secrets
    from .api import metrics as metrics_api
    from .blubberoid import make_router as blubberoid_router
    from .blubberoid import policy_from_env as blubber_policy
    from .reporting import report_run
    from .webhook_routes import router as webhook_router

    state.hooks["queued"].append(report_run)
    state.hooks["finished"].append(report_run)
    state.hooks["finished"].append(state.deploys.on_run_finished)
    app.include_router(blubberoid_router(blubber_policy()))  # chute serve -p POLICY
    app.include_router(webhook_router)
    app.include_router(projects.router)
    app.include_router(runs.router)
    app.include_router(agents.router)
    app.include_router(deployments.router)
    metrics_api.install(app)  # metrics API, /metrics (Prometheus), dashboard and trace pages

    app.include_router(access_api.router)

    app.include_router(secrets.router)

    from .ui import install as install_ui

    install_ui(app)
    return app


def _reap(state: State) -> None:
    changed = state.queue.reap_expired()
    for run_id, status in changed:
        state.broadcaster.publish(run_id, {"type": "run", "status": status})
    if any(status == "queued" for _, status in changed):
        state.wake_agents()
