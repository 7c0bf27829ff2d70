"""The web UI: server-rendered pages (Jinja2), htmx for in-place updates, live runs over SSE.

``install(app)`` mounts the pages, the form actions, the static files
(``/static``) and the HTML error pages on the chute ASGI app. See docs/ui.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from .routes import UI, UIError, error_page, router
from .sessions import LOGIN_METHODS, LoginMethod, SessionManager, session_key

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    settings = app.state.chute.settings
    secure = settings.base_url.startswith("https://")
    app.state.chute_ui = UI(SessionManager(session_key(settings.home), secure=secure))
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UIError)
    async def _ui_error(request: Request, exc: UIError) -> Response:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(error_page, request, exc)


__all__ = ["LOGIN_METHODS", "STATIC", "LoginMethod", "install"]
