"""Blubberoid-compatible service: ``POST /v1/{variant}`` with a Blubber config, get a Dockerfile.

Wikimedia's Blubberoid answered the same route; tools and people still call
it. Status codes (spec/blubber.md §7, with its bugs fixed, see docs/compat.md):
200 text/plain Dockerfile; 400 unparsable body; 404 no variant in the path;
415 unsupported media type; 422 invalid config, unknown variant or policy
violation (the problem list as JSON when the client accepts application/json).

The route reads the raw body and does no request validation of its own, so
that the compiler's located errors are what the caller sees, and so that the
per-request overhead stays small (this endpoint is benchmarked against Go).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from chute import __version__

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json"})
# Bodies larger than this are refused (Go's Blubberoid read without a limit).
MAX_BODY = 1 << 20

_STATUS = {2: 400, 3: 422, 4: 422, 5: 500, 6: 422}

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "A Blubber config (`version: v4`) as YAML or JSON.",
    "content": {
        "application/yaml": {"schema": {"type": "string"},
                             "example": "version: v4\nbase: debian:bookworm\nvariants:\n  test: {}\n"},
        "application/x-yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The Dockerfile", "content": {"text/plain": {"schema": {"type": "string"}}}},
    400: {"description": "The body is not valid YAML/JSON, or has the wrong shape"},
    404: {"description": "No variant name in the path"},
    413: {"description": "The body is larger than 1 MiB"},
    415: {"description": "Unsupported Content-Type"},
    422: {"description": "The config is invalid, the variant does not exist, or a policy is violated",
          "content": {"application/json": {"schema": {"type": "object"}}, "text/plain": {}}},
}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept


def _error(request: Request, status: int, err: Any) -> Response:
    if _wants_json(request):
        body = err.to_dict() if hasattr(err, "to_dict") else {"error": str(err), "problems": []}
        return JSONResponse(body, status_code=status)
    text = err.format() if hasattr(err, "format") else str(err)
    return PlainTextResponse(text + "\n", status_code=status)


def make_router(policy: Any = None) -> APIRouter:
    router = APIRouter(tags=["blubberoid"])

    @router.post("/v1/{variant}", summary="Compile a Blubber config variant to a Dockerfile",
                 openapi_extra={"requestBody": _REQUEST_BODY}, responses=_RESPONSES,
                 response_class=PlainTextResponse)
    async def compile_route(variant: str, request: Request) -> Response:
        from chute.blubber import compile_variant, parse_config
        from chute.config import ConfigError

        ctype = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
        if ctype and ctype not in YAML_TYPES and ctype not in JSON_TYPES:
            return PlainTextResponse(
                f"'{ctype}' media type is not supported; send application/yaml, application/x-yaml "
                "or application/json\n", status_code=415)
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("the config is larger than 1 MiB\n", status_code=413)
        if not body.strip():
            return PlainTextResponse("the request body is empty: send a Blubber config\n", status_code=400)
        try:
            cfg = parse_config(body, "request body")
            return PlainTextResponse(compile_variant(cfg, variant, policy=policy))
        except ConfigError as err:
            return _error(request, _STATUS.get(err.exit_code, 422), err)

    @router.post("/v1/", include_in_schema=False)
    @router.post("/v1", include_in_schema=False)
    async def no_variant() -> Response:
        return PlainTextResponse("request a variant at /v1/{variant}\n", status_code=404)

    return router


def create_app() -> FastAPI:
    """The stand-alone service (``chute serve --blubberoid-only``)."""
    policy = None
    uri = os.environ.get("CHUTE_BLUBBER_POLICY")
    if uri:
        from chute.blubber import load_policy

        policy = load_policy(uri)  # a bad policy stops start-up, as Blubberoid's -p did
    app = FastAPI(title="chute Blubberoid", version=__version__, docs_url="/api/docs", openapi_url="/openapi.json",
                  redoc_url=None,
                  description="Blubberoid-compatible API: POST a Blubber config to /v1/{variant}, get a Dockerfile.")
    app.include_router(make_router(policy))
    return app
