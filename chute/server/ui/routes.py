"""The web UI's pages and form actions.

Pages are server-rendered and complete without JavaScript; htmx (``hx-boost``)
only turns links and forms into in-place swaps, and the run page's live parts
come over server-sent events (see live.py). Every action is a POST form that
answers with a 303 redirect, needs a logged-in session and the session's CSRF
token, and calls the same service function as the REST API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from chute import __version__
from chute.store import LogChunk, Project, Run

from .. import access, deploys, services
from ..api.projects import webhook_instructions
from . import views
from .ansi import strip_ansi
from .render import HEADERS, RUN_STATUSES, Renderer
from .sessions import LoginContext, LoginFailed, SessionManager, UISession

router = APIRouter(include_in_schema=False)

REVIEW_KINDS = (("git", "plain git (the server polls the repository)"), ("gerrit", "Gerrit"),
                ("gitlab", "GitLab"), ("github", "GitHub"))


class UIError(Exception):
    """Answered with an HTML error page (see ``install``)."""

    def __init__(self, status: int, title: str, message: str, hint: str = "",
                 links: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.hint = status, title, message, hint
        self.links = links or []


class NeedLogin(Exception):
    """A page needs a login (reading needs one with CHUTE_ANONYMOUS_READ=false): redirect to the form."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class UI:
    """What the UI routes share, hung on ``app.state.chute_ui``."""

    def __init__(self, sessions: SessionManager) -> None:
        self.renderer = Renderer()
        self.sessions = sessions


def _ui(request: Request) -> UI:
    return request.app.state.chute_ui


def _state(request: Request) -> Any:
    return request.app.state.chute


def session_of(request: Request) -> UISession:
    return _ui(request).sessions.load(request, _state(request).db.session)


def here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(target: str | None) -> str:
    """Only local paths: ``next`` must never send a user to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or "\n" in target:
        return "/"
    return target


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"


def page(request: Request, sess: UISession, template: str, status: int = 200, **ctx: Any) -> Response:
    ui = _ui(request)
    resp = ui.renderer.page(template, status, sess=sess, path=here(request), version=__version__, **ctx)
    if sess.needs_cookie:  # a form was rendered: the browser must hold the session its CSRF token binds to
        ui.sessions.set_cookie(resp, sess)
    return resp


def error_page(request: Request, err: UIError) -> Response:
    sess = session_of(request)
    return page(request, sess, "error.html", err.status, err=err)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def require_login(request: Request, csrf: str) -> UISession:
    """The session of a POST action: logged in, and the form came from one of our pages."""
    sess = session_of(request)
    back = safe_next(request.headers.get("referer", "").split(request.url.netloc, 1)[-1] or "/")
    if not sess.logged_in:
        why = " (your session ended: it was idle too long or too old)" if sess.expired in ("idle", "expired") else ""
        raise UIError(403, "Log in first",
                      f"Changing anything (rerun, cancel, deploy, add a repository) needs you to log in{why}.",
                      "Log in with your user name and password, or with an API token; the admin token is in "
                      "$CHUTE_HOME/admin-token on the server.", [(login_url(back), "Log in")])
    if not sess.check_csrf(csrf):
        raise UIError(403, "The form has expired",
                      "This form was not sent from a current chute page (its CSRF token does not match your "
                      "session), so nothing was changed.",
                      "Go back, reload the page and try again.", [(back, "Back")])
    return sess


def guard(request: Request, sess: UISession, permission: str, project: str | None = None,
          environment: str | None = None, s: Any = None, back: str = "/") -> None:
    """The same check as the API's (``access.require``): a page to log in, or a 403 page saying which
    role is missing and who can grant it."""
    if access.check(sess.who, permission, project, environment) is None:
        return
    if not sess.logged_in and request.method == "GET":
        raise NeedLogin(login_url(here(request)))
    try:
        access.require(sess.who, permission, project, environment, session=s)
    except access.AccessDenied as err:
        title = "Log in first" if err.status == 401 else "Not allowed"
        links = [(login_url(back), "Log in")] if err.status == 401 else [(back, "Back")]
        raise UIError(err.status, title, err.message, err.hint or "", links) from None


def visible(request: Request, sess: UISession) -> set[str] | None:
    """Projects this session may read (None: all); anonymous where reading needs a login: to the form."""
    v = access.visible_projects(sess.who)
    if v is not None and not sess.logged_in:
        raise NeedLogin(login_url(here(request)))
    return v


@contextmanager
def service_errors(back: str) -> Iterator[None]:
    try:
        yield
    except services.ServiceError as err:
        raise UIError(err.status, "That did not work", err.message, err.hint or "", [(back, "Back")]) from None


def _project(s: Any, name: str) -> Project:
    p = s.scalars(select(Project).where(Project.name == name)).first()
    if p is None:
        raise UIError(404, "No such project", f"There is no project named {name!r}.",
                      "The dashboard lists every project.", [("/", "Dashboard")])
    return p


def _run(s: Any, run_id: int) -> Run:
    run = views.load_run(s, run_id)
    if run is None:
        raise UIError(404, "No such run", f"There is no run {run_id}.", "", [("/", "Dashboard")])
    return run


def _readable_run(request: Request, sess: UISession, s: Any, run_id: int) -> Run:
    run = views.load_run(s, run_id)
    if run is None:
        visible(request, sess)  # not logged in where reading needs it: the login form, not a 404
        raise UIError(404, "No such run", f"There is no run {run_id}.", "", [("/", "Dashboard")])
    guard(request, sess, access.READ, run.project.name, s=s)
    return run


# ------------------------------------------------------------------ pages
@router.get("/")
def dashboard(request: Request) -> Response:
    sess = session_of(request)
    projects = visible(request, sess)
    with _state(request).db.session() as s:
        return page(request, sess, "dashboard.html", **views.dashboard(s, projects))


@router.get("/projects/{name}")
def project_page(request: Request, name: str, pipeline: str = "", branch: str = "", status: str = "",
                 before: int | None = Query(None, ge=1)) -> Response:
    sess = session_of(request)
    f = views.RunFilter(pipeline, branch, status if status in RUN_STATUSES else "", before)
    state = _state(request)
    with state.db.session() as s:
        guard(request, sess, access.READ, name, s=s)
        p = _project(s, name)
        runs, more = views.project_runs(s, p, f)
        return page(request, sess, "project.html", project=p, runs=runs, more=more, f=f,
                    choices=views.filter_choices(s, p), config_path=services.CONFIG_PATH,
                    environments=_environments(state, s, p))


@router.get("/projects/{name}/setup")
def project_setup(request: Request, name: str, new: int = 0) -> Response:
    """Webhook URL and secret: only for the project's admins (the secret lets anyone trigger runs)."""
    sess = session_of(request)
    if not sess.logged_in:
        return redirect(login_url(here(request)))
    state = _state(request)
    with state.db.session() as s:
        guard(request, sess, access.PROJECT_ADMIN, name, s=s, back=f"/projects/{quote(name, safe='')}")
        p = _project(s, name)
        url = views.webhook_url(state.settings.base_url, p)
        return page(request, sess, "setup.html", project=p, webhook_url=url, new=bool(new),
                    instructions=webhook_instructions(p.review_kind, url), config_path=services.CONFIG_PATH)


@router.get("/projects/{name}/changes/{key}")
def change_page(request: Request, name: str, key: str) -> Response:
    sess = session_of(request)
    with _state(request).db.session() as s:
        guard(request, sess, access.READ, name, s=s)
        p = _project(s, name)
        changes, runs = views.change_runs(s, p, key)
        if not changes:
            raise UIError(404, "No such change", f"Project {name} has no change or commit {key!r}.", "",
                          [(f"/projects/{quote(name, safe='')}", name)])
        deployed = deploys.deployed_where(s, p, [c.commit for c in changes])
        return page(request, sess, "change.html", project=p, key=key, changes=changes, runs=runs,
                    deployed=deployed)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: int) -> Response:
    sess = session_of(request)
    with _state(request).db.session() as s:
        run = _readable_run(request, sess, s, run_id)
        view = views.run_view(s, run)
        return page(request, sess, "run.html", view=view, run=run,
                    deployed=deploys.deployed_where(s, run.project, [run.change.commit]),
                    run_hold=deploys.run_hold_info(s, run))


@router.get("/runs/{run_id}/live")
async def run_live(request: Request, run_id: int, after: int = -1, v: str = "") -> StreamingResponse:
    """Server-sent events for the run page: HTML fragments swapped in by htmx (see live.py)."""
    from .live import run_stream

    def check() -> None:
        sess = session_of(request)
        with _state(request).db.session() as s:
            _readable_run(request, sess, s, run_id)

    await _threadpool(check)
    return await run_stream(request, run_id, after, v)


@router.get("/runs/{run_id}/log.txt")
def run_log_text(request: Request, run_id: int, stage: str | None = None) -> Response:
    """The full log as plain text (colours stripped): for long logs and for copying."""
    sess = session_of(request)
    with _state(request).db.session() as s:
        _readable_run(request, sess, s, run_id)
        q = select(LogChunk.stage, LogChunk.text).where(LogChunk.run_id == run_id)
        if stage is not None:
            q = q.where(LogChunk.stage == stage)
        parts: list[str] = []
        current: str | None = None
        for st, text in s.execute(q.order_by(LogChunk.seq)):
            if stage is None and st != current:
                parts.append(f"\n===== {st or 'set-up'} =====\n")
                current = st
            parts.append(text)
    return PlainTextResponse(strip_ansi("".join(parts)).lstrip("\n"),
                             headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


def _environments(state: Any, s: Any, p: Project) -> list[dict[str, Any]]:
    rows = deploys.environment_rows(s, p.id)
    envs = deploys.parse_rows(rows)
    return [deploys.environment_summary(state.deploys, s, p, r, envs.get(r.name)) for r in rows]


@router.get("/projects/{name}/environments/{env}")
def environment_page(request: Request, name: str, env: str) -> Response:
    """Where an environment stands: what serves, what waits and why, the history, a Rollback form."""
    sess = session_of(request)
    state = _state(request)
    with state.db.session() as s:
        guard(request, sess, access.READ, name, s=s)
        p = _project(s, name)
        rows = {r.name: r for r in deploys.environment_rows(s, p.id)}
        if env not in rows:
            raise UIError(404, "No such environment",
                          f"Project {name} has no environment {env!r}.",
                          f"Environments come from `environments` in {services.CONFIG_PATH} on the default branch.",
                          [(f"/projects/{quote(name, safe='')}", name)])
        row = rows[env]
        summary = deploys.environment_summary(state.deploys, s, p, row, deploys.parse_rows(list(rows.values()))
                                              .get(env))
        history = deploys.history(state.deploys, s, p, row, limit=100)
        current = summary["current"]["revision"] if summary["current"] else None
        choices = [d for d in history if d["status"] in ("healthy", "superseded", "rolled-back")
                   and d["revision"] != current]
        held = [h for h in deploys.held_runs(s, p) if env in h.get("environments", [])]
        return page(request, sess, "environment.html", project=p, env=summary, history=history,
                    rollback_choices=choices, held_runs=held, refused=deploys.refused_requests(s, row),
                    config_error=(p.settings or {}).get("environments_error"))


# ------------------------------------------------------------------ actions
@router.post("/projects/{name}/environments/{env}/rollback")
def rollback_action(request: Request, name: str, env: str, csrf: str = Form(""), reason: str = Form(""),
                    to_revision: str = Form(""), override_freeze: str = Form("")) -> Response:
    """The Rollback button: queues the same rollback as POST /api/v1/.../rollback."""
    sess = require_login(request, csrf)
    state = _state(request)
    back = f"/projects/{quote(name, safe='')}/environments/{quote(env, safe='')}"
    if not reason.strip():
        raise UIError(400, "Say why", "A rollback needs a reason; it is kept in the history and the ledger.", "",
                      [(back, "Back")])
    if to_revision and not to_revision.isdigit():
        raise UIError(400, "Not a revision", f"{to_revision!r} is not a revision number.", "", [(back, "Back")])
    force = override_freeze in ("1", "true", "on")
    with service_errors(back), state.db.session() as s:
        guard(request, sess, access.DEPLOY, name, env, s=s, back=back)
        p = _project(s, name)
        rows = {r.name: r for r in deploys.environment_rows(s, p.id)}
        if env not in rows:
            raise services.ServiceError(f"project {name} has no environment {env!r}", 404)
        target = deploys.parse_rows(list(rows.values()))[env]
        shut = deploys.closed(target, state.deploys.deployer.clock())
        if shut is not None and not force:
            raise services.ServiceError(f"{shut.reason}; nothing was rolled back", 409,
                                        "tick 'Override the freeze' if this cannot wait (the reason is recorded)")
        state.deploys.request(s, p, env, kind="rollback", to_revision=int(to_revision) if to_revision else None,
                              actor=sess.user, reason=reason.strip(), command=f"POST {request.url.path} (web UI)",
                              override_freeze=force)
    state.deploys.wake()
    return redirect(back)


@router.post("/projects/{name}/environments/{env}/requests/{req_id}/override")
def override_action(request: Request, name: str, env: str, req_id: int, csrf: str = Form(""),
                    reason: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    state = _state(request)
    back = f"/projects/{quote(name, safe='')}/environments/{quote(env, safe='')}"
    from chute.store import DeployRequest

    with service_errors(back), state.db.session() as s:
        guard(request, sess, access.DEPLOY, name, env, s=s, back=back)
        req = s.get(DeployRequest, req_id)
        p = _project(s, name)
        if req is None or req.environment.project_id != p.id or req.environment.name != env:
            raise services.ServiceError(f"no deploy request #{req_id} for {env}", 404)
        state.deploys.override_request(s, req, actor=sess.user, reason=reason,
                                       command=f"POST {request.url.path} (web UI)")
    state.deploys.wake()
    return redirect(back)


@router.post("/runs/{run_id}/rerun")
def rerun(request: Request, run_id: int, csrf: str = Form(""), failed_only: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    state = _state(request)
    with service_errors(f"/runs/{run_id}"), state.db.session() as s:
        run = _run(s, run_id)
        guard(request, sess, access.RERUN, run.project.name, s=s, back=f"/runs/{run_id}")
        new = services.rerun(s, state.settings, run, actor=sess.user, failed_only=failed_only in ("1", "true", "on"))
        s.flush()
        new_id = new.id
    state.wake_agents()
    state.broadcaster.publish(run_id)  # the old run's page lists its reruns
    return redirect(f"/runs/{new_id}")


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: int, csrf: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    state = _state(request)
    with state.db.session() as s:
        run = _run(s, run_id)
        guard(request, sess, access.CANCEL, run.project.name, s=s, back=f"/runs/{run_id}")
        if not state.queue.request_cancel(s, run, sess.user):
            raise UIError(409, "Already finished", f"Run {run_id} already finished ({run.status}); "
                          "there is nothing to cancel.", "", [(f"/runs/{run_id}", f"Run {run_id}")])
    state.broadcaster.publish(run_id)
    return redirect(f"/runs/{run_id}")


NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@router.get("/add-repository")
def add_repository_form(request: Request) -> Response:
    sess = session_of(request)
    return page(request, sess, "add_repository.html", kinds=REVIEW_KINDS, error=None,
                values={"repo": "", "name": "", "review_kind": "git", "review_project": ""})


@router.post("/add-repository")
def add_repository(request: Request, csrf: str = Form(""), repo: str = Form(""), name: str = Form(""),
                   review_kind: str = Form("git"), review_project: str = Form("")) -> Response:
    sess = require_login(request, csrf)
    state = _state(request)
    values = {"repo": repo.strip(), "name": name.strip(), "review_kind": review_kind,
              "review_project": review_project.strip()}

    def again(status: int, message: str, hint: str = "") -> Response:
        return page(request, sess, "add_repository.html", status, kinds=REVIEW_KINDS,
                    error={"message": message, "hint": hint}, values=values)

    if not values["repo"]:
        return again(400, "The repository is missing.",
                     "Give a git URL or a path on the server, e.g. /srv/git/app.git.")
    if review_kind not in dict(REVIEW_KINDS):
        return again(400, f"Unknown review kind {review_kind!r}.", "Choose one of the listed kinds.")
    if values["name"] and not NAME_OK.match(values["name"]):
        return again(400, f"The name {values['name']!r} cannot be used.",
                     "Use letters, digits, '.', '_' and '-' (it becomes part of page addresses).")
    try:
        with state.db.session() as s:
            p, _info = access.add_project(s, state.settings, sess.who, values["repo"], values["name"] or None,
                                          review_kind=review_kind, review_project=values["review_project"] or None,
                                          actor=sess.user)
            s.flush()
            created = p.name
    except services.ServiceError as err:
        return again(err.status, err.message, err.hint or "")
    return redirect(f"/projects/{quote(created, safe='')}/setup?new=1")


# ------------------------------------------------------------------ login
def _login_page(request: Request, sess: UISession, status: int = 200, *, next_path: str = "/", error: str | None = None,
                method: str = "password", user: str = "") -> Response:
    sessions = _ui(request).sessions
    return page(request, sess, "login.html", status, methods=list(sessions.methods.values()),
                redirects=list(sessions.redirects.values()), next=next_path, error=error, method=method, user=user)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    sess = session_of(request)
    error = None
    if sess.expired in ("idle", "expired"):
        error = ("Your session ended (it was idle too long)" if sess.expired == "idle"
                 else "Your session ended (sessions last a limited time after logging in)") + "; log in again."
    return _login_page(request, sess, next_path=safe_next(next), error=error)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return await _threadpool(_login, request, fields)


def _login(request: Request, fields: dict[str, str]) -> Response:
    ui, state = _ui(request), _state(request)
    sess = session_of(request)
    next_path = safe_next(fields.get("next"))
    key = fields.get("method", "token")
    method = ui.sessions.methods.get(key)

    def again(status: int, message: str, retry_after: int = 0) -> Response:
        resp = _login_page(request, sess, status, next_path=next_path, error=message, method=key,
                           user=fields.get("user", "")[:200])
        if retry_after:
            resp.headers["Retry-After"] = str(retry_after)
        return resp

    if not sess.check_csrf(fields.get("csrf")):
        return again(403, "The login form expired (its CSRF token does not match this browser's session). "
                          "Try again: this page has a fresh form.")
    if method is None:
        return again(400, "Unknown login method.")
    ctx = LoginContext(state, client_address(request))
    with state.db.session() as s:
        outcome = method.authenticate(s, fields, ctx)
        new = ui.sessions.login(s, method.key, outcome, ctx.address) if not isinstance(outcome, LoginFailed) else None
    if isinstance(outcome, LoginFailed) or new is None:  # the failure was recorded (committed) above
        failed = outcome if isinstance(outcome, LoginFailed) else LoginFailed("That login is not valid.")
        return again(failed.status, failed.message, failed.retry_after)
    resp = redirect(next_path)
    ui.sessions.set_cookie(resp, new)
    return resp


@router.get("/login/{key}/start")
def login_start(request: Request, key: str, next: str = "/") -> Response:
    """Send the browser to the identity provider; what comes back is checked against this browser's cookie."""
    import secrets

    ui = _ui(request)
    method = ui.sessions.redirects.get(key)
    if method is None:
        raise UIError(404, "No such login method", f"This server has no login method {key!r}.", "",
                      [("/login", "Log in")])
    sess = ui.sessions.anonymous()
    sess.pending = {"k": key, "s": secrets.token_urlsafe(24), "n": secrets.token_urlsafe(24),
                    "v": secrets.token_urlsafe(48), "next": safe_next(next)}
    with service_errors("/login"):
        url = method.start(redirect_uri=_callback_url(request, key), state=sess.pending["s"],
                           nonce=sess.pending["n"], code_verifier=sess.pending["v"])
    resp = RedirectResponse(url, status_code=303, headers=HEADERS)
    ui.sessions.set_cookie(resp, sess)
    return resp


def _callback_url(request: Request, key: str) -> str:
    return f"{_state(request).settings.base_url}/login/{quote(key, safe='')}/callback"


@router.get("/login/{key}/callback")
def login_callback(request: Request, key: str) -> Response:
    """The identity provider sends the browser back here with a code (or an error)."""
    import hmac

    ui, state = _ui(request), _state(request)
    sess = session_of(request)
    method = ui.sessions.redirects.get(key)
    pending = sess.pending or {}
    params = {k: v for k, v in request.query_params.items()}
    if method is None or pending.get("k") != key or not hmac.compare_digest(str(pending.get("s", "")),
                                                                             params.get("state", "")):
        return _login_page(request, ui.sessions.anonymous(), 400,
                           error="This sign-on answer does not belong to a login started in this browser "
                                 "(its state does not match); nothing was done. Start again.")
    address = client_address(request)
    with state.db.session() as s:
        outcome = method.finish(s, params, redirect_uri=_callback_url(request, key), nonce=str(pending["n"]),
                                code_verifier=str(pending["v"]), address=address)
        new = ui.sessions.login(s, key, outcome, address) if not isinstance(outcome, LoginFailed) else None
    if isinstance(outcome, LoginFailed) or new is None:
        failed = outcome if isinstance(outcome, LoginFailed) else LoginFailed("That login is not valid.")
        with state.db.session() as s:
            access.record_login(s, user=None, method=str(getattr(method, "source", key)), via="ui", ok=False,
                                address=address)
        return _login_page(request, ui.sessions.anonymous(), failed.status, error=failed.message)
    resp = redirect(safe_next(str(pending.get("next", "/"))))
    ui.sessions.set_cookie(resp, new)
    return resp


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    sess = session_of(request)
    if sess.logged_in and not sess.check_csrf(csrf):
        raise UIError(403, "The form has expired", "Reload the page and log out again.", "", [("/", "Dashboard")])
    ui = _ui(request)
    if sess.logged_in:
        with _state(request).db.session() as s:
            ui.sessions.logout(s, sess)
    resp = redirect("/")
    ui.sessions.clear_cookie(resp)
    return resp


async def _threadpool(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
