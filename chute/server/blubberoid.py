"""Blubberoid-compatible service: ``POST /v1/{variant}`` with a Blubber config, get a Dockerfile.

Wikimedia's Blubberoid answered the same route; tools and people still call
it. Status codes (spec/blubber.md §7, with its bugs fixed, see docs/compat.md):

* 200 ``text/plain`` Dockerfile;
* 400 the body cannot be read (not UTF-8, not YAML/JSON, wrong shape, empty);
* 404 no variant in the path (``/v1``, ``/v1/``, ``/v1/x/``, ``/v1/a/b``);
* 405 a method other than POST;
* 413 a body over 1 MiB;
* 415 a Content-Type other than YAML or JSON (none at all means JSON, as in Go);
* 422 an invalid config, an unknown variant or a policy violation.

Error bodies are the located problems as text ending in a newline, or
``{"error", "exit_code", "problems": [...]}`` when the client accepts
``application/json``.

The route is a plain ASGI handler, not a FastAPI endpoint: it is benchmarked
against Go (bench/blubberoid_http.py) and FastAPI's parameter handling cost
more than a tenth of a request. :func:`make_router` mounts it under ``/v1``
and adds a documentation-only route so that the OpenAPI document (served at
``/openapi.json`` and ``/api/docs``) describes it; :func:`create_app`, the
stand-alone service, sends ``/v1`` requests to it before any routing at all.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from starlette.routing import Mount

from chute import __version__
from chute.blubber import compile_variant, decode_document, parse_config
from chute.config import EXIT_EXPAND, EXIT_POLICY_VIOLATION, EXIT_READ, ConfigError, Document, Problem, load_yaml

if TYPE_CHECKING:
    from chute.blubber import Policy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SOURCE = "request body"  # the "file" named in problem locations
MAX_BODY = 1 << 20  # larger bodies are refused with 413 (Go's Blubberoid read without a limit)
THREAD_BODY = 64 << 10  # compile bodies larger than this off the event loop
JSON_TYPE = "application/json"
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
USAGE = "request a variant at /v1/{variant}, e.g. POST /v1/test with the config as the body"

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_STATUS = {EXIT_READ: 400}  # every other ConfigError (3 expand, 4 invalid, 6 policy) is 422
_SUMMARY = {EXIT_READ: "cannot read the config in the request body", EXIT_EXPAND: "cannot expand the variant",
            EXIT_POLICY_VIOLATION: "the config fails the policy"}


class Reply:
    """What the handler answers: status, body and its content type, extra headers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: bytes = _TEXT,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", self.content_type),
                                (b"content-length", str(len(self.body)).encode()), *self.headers]})
        await send({"type": "http.response.body", "body": self.body})


def error_reply(status: int, message: str, wants_json: bool, *,
                headers: tuple[tuple[bytes, bytes], ...] = ()) -> Reply:
    """An error that is not about the config's content: one message, no problems."""
    if wants_json:
        return Reply(status, json.dumps({"error": message, "problems": []}).encode(), _JSON, headers)
    return Reply(status, (message + "\n").encode(), _TEXT, headers)


def config_error_reply(err: ConfigError, wants_json: bool) -> Reply:
    """400 when the body cannot be read, 422 when the config cannot be used; every problem located."""
    status = _STATUS.get(err.exit_code, 422)
    if wants_json:
        body = err.to_dict()
        body["error"] = err.summary or _SUMMARY.get(err.exit_code, "the config is invalid")
        return Reply(status, json.dumps(body).encode(), _JSON)
    return Reply(status, (err.format() + "\n").encode(), _TEXT)


def media_type(content_type: str | None) -> str:
    """The lower-case media type without parameters; no header or an empty type means JSON (as in Go)."""
    if content_type is None:
        return JSON_TYPE
    return content_type.partition(";")[0].strip().lower() or JSON_TYPE


def accepts_json(accept: str | None) -> bool:
    """Whether the client asks for JSON: ``application/json`` listed and not below ``text/plain``."""
    if not accept or "json" not in accept.lower():
        return False
    quality = {"application/json": 0.0, "text/plain": 0.0}
    for item in accept.lower().split(","):
        kind, _, params = item.partition(";")
        kind = kind.strip()
        if kind not in quality:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[kind] = max(quality[kind], q)
    return quality["application/json"] > 0 and quality["application/json"] >= quality["text/plain"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_document(body: bytes) -> Document:
    """The body read as JSON (Go's Blubberoid used a JSON parser, not YAML, for JSON bodies)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})",
                                   source=SOURCE, hint="send the config as UTF-8")], EXIT_READ) from None
    text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError([Problem(f"invalid JSON: {exc.msg}", source=SOURCE, line=exc.lineno, column=exc.colno,
                                   hint="send valid JSON, or YAML with Content-Type: application/yaml "
                                        "(no Content-Type means JSON)")], EXIT_READ) from None
    except ValueError as exc:
        raise ConfigError([Problem(f"invalid JSON: {exc}", source=SOURCE, hint="send valid JSON")],
                          EXIT_READ) from None
    return Document(data, SOURCE, {})


def compile_body(variant: str, media: str, body: bytes, policy: Policy | None = None) -> str:
    """The Dockerfile for ``variant`` of the config in ``body``; ConfigError for anything wrong with it.

    A JSON body is compiled as parsed by the JSON parser, without positions.
    Only if that fails is it read again as YAML (JSON is YAML) for positions,
    so that the problems are located and loose scalars (``"PORT": 8080``) are
    read as written, exactly as in a YAML body.
    """
    if media != JSON_TYPE:
        return compile_variant(parse_config(body, SOURCE), variant, policy)
    doc = _json_document(body)
    try:
        return compile_variant(decode_document(doc), variant, policy)
    except ConfigError as first:
        try:
            located = load_yaml(body, SOURCE)
        except ConfigError:  # JSON that YAML 1.1 cannot read (e.g. "\ud83d\ude00"): keep the first answer
            raise first from None
    return compile_variant(decode_document(located), variant, policy)


class BlubberoidHandler:
    """The ASGI application that answers ``/v1/{variant}``: path, headers and body in, a Reply out.

    It is mounted at ``/v1``: the variant is the request path after
    ``scope["root_path"]``, which Starlette's Mount (or the stand-alone app)
    sets to the mount point.
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets are not part of the API
            return
        reply = await self.answer(scope, receive)
        await reply.send(send)

    async def answer(self, scope: Scope, receive: Receive) -> Reply:
        content_type = accept = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        wants_json = accepts_json(accept)

        variant = scope["path"][len(scope.get("root_path", "")):]
        if variant.startswith("/"):
            variant = variant[1:]
        if not variant or "/" in variant:  # /v1, /v1/, /v1/name/, /v1/a/b
            return error_reply(404, USAGE, wants_json)
        if scope["method"] != "POST":
            return error_reply(405, f"use POST to compile a config, not {scope['method']}; {USAGE}", wants_json,
                               headers=((b"allow", b"POST"),))
        media = media_type(content_type)
        if media != JSON_TYPE and media not in YAML_TYPES:
            return error_reply(415, f"'{media}' media type is not supported: send the config as "
                                    "application/yaml, application/x-yaml or application/json", wants_json)
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return error_reply(413, f"the request body is larger than {MAX_BODY} bytes (1 MiB)", wants_json)
        body = await _read_body(receive)
        if body is None:
            return error_reply(413, f"the request body is larger than {MAX_BODY} bytes (1 MiB)", wants_json)
        if not body.strip():
            return error_reply(400, "the request body is empty: send a Blubber config (version: v4) as "
                                    "YAML or JSON", wants_json)
        try:
            if len(body) > THREAD_BODY:  # a big config must not stall every other request on this worker
                from starlette.concurrency import run_in_threadpool

                dockerfile = await run_in_threadpool(compile_body, variant, media, body, self.policy)
            else:
                dockerfile = compile_body(variant, media, body, self.policy)
        except ConfigError as err:
            return config_error_reply(err, wants_json)
        except RecursionError:
            return error_reply(400, "the config is nested too deeply", wants_json)
        return Reply(200, dockerfile.encode(), _TEXT)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None as soon as it is larger than MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


# ---- OpenAPI: the route as FastAPI documents it ------------------------------------------------

_EXAMPLE = """\
version: v4
base: docker-registry.example/debian:bookworm
variants:
  test:
    copies: [local]
    entrypoint: [make, test]
"""
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "A Blubber config (`version: v4`) as YAML or JSON. Without a Content-Type the body is read "
                   "as JSON, as Blubberoid did. At most 1 MiB.",
    "content": {
        "application/yaml": {"schema": {"type": "string"}, "example": _EXAMPLE},
        "application/x-yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object", "description": "the config as a JSON object",
                                         "required": ["version", "variants"],
                                         "properties": {"version": {"type": "string", "enum": ["v4"]},
                                                        "variants": {"type": "object"}}}},
    },
}
_PROBLEMS = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "exit_code": {"type": "integer", "description": "the `chute blubber` exit code for the same config"},
        "problems": {"type": "array", "items": {"type": "object", "properties": {
            "severity": {"type": "string"}, "file": {"type": "string"}, "line": {"type": "integer"},
            "column": {"type": "integer"}, "path": {"type": "string"}, "message": {"type": "string"},
            "hint": {"type": "string"}}}},
    },
}
_ERROR = {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": _PROBLEMS}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The Dockerfile", "content": {"text/plain": {"schema": {"type": "string"}}}},
    400: {"description": "The body cannot be read: not UTF-8, not valid YAML/JSON, not a mapping, or empty",
          "content": _ERROR},
    404: {"description": "No variant name in the path (`/v1/`, `/v1/name/`)", "content": _ERROR},
    405: {"description": "A method other than POST", "content": _ERROR},
    413: {"description": "The body is larger than 1 MiB", "content": _ERROR},
    415: {"description": "A Content-Type other than YAML or JSON", "content": _ERROR},
    422: {"description": "The config is invalid, the variant does not exist, or the service's policy is "
                         "violated. Text, one located problem a line, or JSON with `Accept: application/json`",
          "content": _ERROR},
}


def _router(handler: BlubberoidHandler) -> APIRouter:
    router = APIRouter(tags=["blubberoid"])
    router.routes.append(Mount("/v1", app=handler))  # /v1/ and everything below it

    # Documents the mounted handler in the OpenAPI document. The mount above matches first, so
    # requests only get here if a future router changes that; then this answers just the same.
    @router.post("/v1/{variant}", summary="Compile a Blubber config variant to a Dockerfile",
                 description="Blubberoid-compatible: the config in the body, the variant in the path; the answer "
                             "is the Dockerfile as text. Problems are reported all at once with "
                             "`line:column` and field path.",
                 operation_id="blubberoid_compile", response_class=PlainTextResponse,
                 openapi_extra={"requestBody": _REQUEST_BODY}, responses=_RESPONSES)
    async def compile_dockerfile(variant: Annotated[str, PathParam(description="the variant to compile")],
                                 request: Request) -> Response:
        scope = dict(request.scope, root_path=request.scope.get("root_path", "") + "/v1")
        reply = await handler.answer(scope, request.receive)
        return Response(reply.body, reply.status, dict((k.decode(), v.decode()) for k, v in reply.headers),
                        media_type=reply.content_type.decode())

    @router.api_route("/v1", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
    async def no_variant(request: Request) -> Response:
        reply = error_reply(404, USAGE, accepts_json(request.headers.get("accept")))
        return Response(reply.body, reply.status, media_type=reply.content_type.decode())

    return router


def make_router(policy: Policy | None = None) -> APIRouter:
    """The Blubberoid route for an app (the full ``chute serve`` includes it), checking ``policy`` if given."""
    return _router(BlubberoidHandler(policy))


class StandaloneApp:
    """The stand-alone service: ``/v1…`` goes straight to the handler, the docs to FastAPI, the rest is 404.

    Skipping FastAPI's routing and middleware for ``/v1`` saves about a tenth
    of the cost of a request (bench/README.md).
    """

    DOCS = frozenset({"/openapi.json", "/api/docs", "/api/docs/oauth2-redirect"})

    def __init__(self, handler: BlubberoidHandler, docs: FastAPI) -> None:
        self.handler = handler
        self.docs = docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.DOCS:  # lifespan, docs
            await self.docs(scope, receive, send)
            return
        path = scope["path"]
        if path == "/v1" or path.startswith("/v1/"):
            await self.handler(dict(scope, root_path=scope.get("root_path", "") + "/v1"), receive, send)
            return
        wants_json = accepts_json(dict(scope["headers"]).get(b"accept", b"").decode("latin-1"))
        if path == "/" and scope.get("query_string") == b"spec":  # where Go's Blubberoid served its spec
            spec = json.dumps(self.docs.openapi()).encode()
            await Reply(200, spec, _JSON).send(send)
            return
        await error_reply(404, f"not found: {USAGE}; the API is described at /api/docs and /openapi.json",
                          wants_json).send(send)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Tune the garbage collector for this process, which does nothing but compile requests.

    A request allocates thousands of objects and leaves no cycles behind, so the
    default collector mostly re-scans the (frozen from here on) modules loaded at
    start: a quarter of the CPU of a request (bench/README.md).
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


POLICY_ENV = "CHUTE_BLUBBER_POLICY"  # set by ``chute serve -p``; read by every worker process


def policy_from_env() -> Policy | None:
    """The policy named by ``$CHUTE_BLUBBER_POLICY``, loaded (ConfigError exit 5 if it cannot be)."""
    import os

    uri = os.environ.get(POLICY_ENV)
    if not uri:
        return None
    from chute.blubber import load_policy

    return load_policy(uri)


def create_app(policy: Policy | str | None = None) -> StandaloneApp:
    """The stand-alone service (``chute serve --blubberoid-only``).

    ``policy`` is a loaded policy, a path or URL, or None to use
    ``$CHUTE_BLUBBER_POLICY``. A policy that cannot be loaded stops start-up
    with its problems and exit code 5, as Blubberoid's ``-p`` did. (With
    several workers each one loads it; ``chute serve`` checks it once before
    starting them, so that a bad policy does not make uvicorn restart workers
    forever.)
    """
    try:
        if policy is None:
            policy = policy_from_env()
        elif isinstance(policy, str):
            from chute.blubber import load_policy

            policy = load_policy(policy)
    except ConfigError as err:
        print(err.format(), file=sys.stderr)
        raise SystemExit(err.exit_code) from None

    docs = FastAPI(title="chute Blubberoid", version=__version__, docs_url="/api/docs", openapi_url="/openapi.json",
                   redoc_url=None, lifespan=_lifespan,
                   description="Blubberoid-compatible API: POST a Blubber config to /v1/{variant}, get a Dockerfile.")
    handler = BlubberoidHandler(policy)
    docs.include_router(_router(handler))
    return StandaloneApp(handler, docs)
