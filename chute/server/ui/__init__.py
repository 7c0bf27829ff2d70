"""The web UI: server-rendered pages (Jinja2), htmx for in-place updates, live runs over SSE.

``install(app)`` mounts the pages, the form actions, the static files
(``/static``) and the HTML error pages on the chute ASGI app. See docs/ui.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..access import Policy
from .access_pages import router as access_router
from .render import HEADERS
from .routes import UI, NeedLogin, UIError, error_page, router
from .sessions import LOGIN_METHODS, REDIRECT_METHODS, LoginMethod, RedirectLoginMethod, SessionManager, session_key

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    settings = app.state.chute.settings
    secure = settings.base_url.startswith("https://")
    policy = Policy(anonymous_read=settings.anonymous_read, self_service=settings.self_service)
    redirects: dict[str, RedirectLoginMethod] = dict(REDIRECT_METHODS)
    from ..oidc import OIDCConfig, OIDCLogin

    oidc = OIDCConfig.from_env()  # CHUTE_OIDC_ISSUER etc. (docs/security.md)
    if oidc is not None:
        redirects[oidc.key] = OIDCLogin(oidc)
    app.state.chute_ui = UI(SessionManager(session_key(settings.home), secure=secure, idle=settings.session_idle,
                                           max_age=settings.session_max_age, policy=policy, redirects=redirects))
    app.include_router(router)
    app.include_router(access_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UIError)
    async def _ui_error(request: Request, exc: UIError) -> Response:
        return await run_in_threadpool(error_page, request, exc)

    @app.exception_handler(NeedLogin)
    async def _need_login(request: Request, exc: NeedLogin) -> Response:
        return RedirectResponse(exc.url, status_code=303, headers=HEADERS)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A browser asking for a page that does not exist gets a page; programs keep JSON."""
        path = request.url.path
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 404 and wants_html and not path.startswith(("/api/", "/webhooks/", "/static/")):
            err = UIError(404, "Page not found", f"There is no page at {path}.", "", [("/", "Dashboard")])
            return await run_in_threadpool(error_page, request, err)
        return await http_exception_handler(request, exc)


__all__ = ["LOGIN_METHODS", "REDIRECT_METHODS", "STATIC", "LoginMethod", "RedirectLoginMethod", "install"]
