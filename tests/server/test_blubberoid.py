"""The Blubberoid-compatible service: status codes, bodies, content types, OpenAPI, the full app.

The stand-alone app is built as ``chute serve --blubberoid-only -p POLICY``
builds it, with a policy file loaded at start. Expected Dockerfiles are
compiled with chute.blubber directly, so these tests are about the HTTP layer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from chute.blubber import compile_variant, load_policy, parse_config
from chute.server.blubberoid import MAX_BODY, THREAD_BODY, create_app, make_router

CONFIG = """\
version: v4
base: registry.example/nodejs-slim
apt: { packages: [librsvg2-2] }
lives:
  in: /srv/service
variants:
  build:
    base: registry.example/nodejs-devel
    copies: [local]
    node: { requirements: [package.json] }
  test:
    includes: [build]
    entrypoint: [npm, test]
  prep:
    includes: [build]
    node: { env: production }
  production:
    copies: [prep]
    entrypoint: [node, server.js]
"""
JSON_CONFIG = json.dumps(yaml.safe_load(CONFIG))
POLICY = """\
enforcements:
  - path: base
    rule: startswith=registry.example/
  - path: variants.production.runs.insecurely
    rule: isfalse
"""
YAML = {"Content-Type": "application/yaml"}
WANT_JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def client(policy_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(policy_path))) as c:
        yield c


def expected(variant: str, text: str = CONFIG) -> str:
    return compile_variant(parse_config(text, "request body"), variant)


def assert_text_error(r, status: int, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text.endswith("\n") and r.text.strip()
    for needle in needles:
        assert needle in r.text, r.text


# ---- 200 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["application/yaml", "application/x-yaml", "Application/X-YAML; charset=utf-8",
                                   "APPLICATION/YAML;charset=UTF-8;foo=bar", "text/yaml"])
def test_yaml_media_types_compile(client: TestClient, ctype: str) -> None:
    r = client.post("/v1/production", content=CONFIG, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == expected("production")
    assert r.text.startswith("FROM registry.example/nodejs-devel AS prep\n")
    assert 'LABEL blubber.variant="production"' in r.text


@pytest.mark.parametrize("headers", [{"Content-Type": "application/json"}, {"Content-Type": "Application/JSON"},
                                     {}, {"Content-Type": ";;;"}])
def test_json_bodies_and_missing_content_type_mean_json(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/v1/test", content=JSON_CONFIG, headers=headers)
    assert r.status_code == 200, r.text
    assert r.text == expected("test")


def test_yaml_body_without_content_type_is_read_as_json(client: TestClient) -> None:
    r = client.post("/v1/test", content=CONFIG)
    assert_text_error(r, 400, "request body:1:1: error: invalid JSON", "Content-Type: application/yaml")


def test_json_body_is_read_by_a_json_parser(client: TestClient) -> None:
    """Surrogate pairs are JSON that YAML 1.1 (libyaml) rejects; NaN is not JSON at all."""
    body = ('{"version": "v4", "base": "registry.example/debian", '
            '"variants": {"app": {"entrypoint": ["echo", "\\ud83d\\ude00"]}}}')
    r = client.post("/v1/app", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert 'ENTRYPOINT ["echo", "\U0001f600"]' in r.text
    r = client.post("/v1/app", content='{"version": "v4", "variants": {"app": {"lives": {"uid": NaN}}}}')
    assert_text_error(r, 400, "invalid JSON", "NaN")


def test_loose_json_scalars_are_read_as_written_like_yaml(client: TestClient) -> None:
    body = json.dumps({"version": "v4", "base": "registry.example/debian",
                       "variants": {"app": {"runs": {"environment": {"PORT": 8080}}}}})
    r = client.post("/v1/app", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert 'PORT="8080"' in r.text


def test_big_config_is_compiled_off_the_event_loop(client: TestClient) -> None:
    packages = ", ".join(f"pkg{i}" for i in range(12_000))
    body = CONFIG.replace("librsvg2-2", packages)
    assert THREAD_BODY < len(body) < MAX_BODY
    r = client.post("/v1/test", content=body, headers=YAML)
    assert r.status_code == 200, r.text[:300]
    assert '"pkg11999"' in r.text


# ---- 4xx --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/v1/test/", "/v1/a/b", "/v1/a%2Fb"])
def test_no_variant_in_the_path_is_404(client: TestClient, path: str) -> None:
    r = client.post(path, content=CONFIG, headers=YAML)
    assert_text_error(r, 404, "request a variant at /v1/{variant}")


def test_unknown_variant_is_422_with_the_defined_variants(client: TestClient) -> None:
    r = client.post("/v1/prod", content=CONFIG, headers=YAML)
    assert_text_error(r, 422, "variant 'prod' does not exist", "hint: defined variants: build, test, prep, production")


def test_invalid_config_is_422_with_every_problem_located(client: TestClient) -> None:
    body = CONFIG.replace("in: /srv/service", "in: relative").replace("base: registry.example/nodejs-devel",
                                                                         "base: Not An Image")
    r = client.post("/v1/test", content=body, headers=YAML)
    assert_text_error(r, 422, "request body:5:7: error: lives.in: 'relative' is not a valid absolute non-root path",
                      "request body:8:11: error: variants.build.base: 'Not An Image' is not a valid base image")


def test_json_error_list_shape(client: TestClient) -> None:
    body = CONFIG.replace("in: /srv/service", "in: relative")
    r = client.post("/v1/test", content=body, headers={**YAML, **WANT_JSON})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["error"] == "the config is invalid" and data["exit_code"] == 4
    assert data["problems"] == [{
        "severity": "error", "file": "request body", "line": 5, "column": 7, "path": "lives.in",
        "message": "'relative' is not a valid absolute non-root path",
        "hint": "write an absolute path such as /srv/app",
    }]
    r = client.post("/v1/nope", content=CONFIG, headers={**YAML, **WANT_JSON})
    assert r.status_code == 422
    assert r.json()["problems"][0]["message"] == "variant 'nope' does not exist"


def test_policy_violation_is_422(client: TestClient, policy_path: Path) -> None:
    body = CONFIG.replace("base: registry.example/nodejs-slim", "base: docker.io/library/node")
    r = client.post("/v1/test", content=body, headers=YAML)
    assert_text_error(r, 422, f"configuration fails policy check against: {policy_path}",
                      'violates policy rule "startswith=registry.example/"')
    r = client.post("/v1/test", content=body, headers={**YAML, **WANT_JSON})
    assert r.json()["error"] == f"configuration fails policy check against: {policy_path}"
    assert r.json()["exit_code"] == 6
    # Another variant that is fine but breaks the policy elsewhere: the whole config is checked.
    body = CONFIG.replace("entrypoint: [node, server.js]",
                          "entrypoint: [node, server.js]\n    runs: {insecurely: true}")
    r = client.post("/v1/test", content=body, headers=YAML)
    assert_text_error(r, 422, 'value true violates policy rule "isfalse"')


@pytest.mark.parametrize(("body", "ctype", "needle"), [
    ("version: v4\nvariants: [", "application/yaml", "request body:3:1: error: invalid YAML"),
    ('{"version": "v4",', "application/json", "request body:1:18: error: invalid JSON"),
    (b"version: v4\nbase: \xff\n", "application/yaml", "not UTF-8"),
    (b'{"version": "\xff"}', "application/json", "not UTF-8"),
    ("- version: v4\n", "application/yaml", "must be a mapping, not a list"),
    ("version: v4\nvariants: {test: {bogus: 1}}\n", "application/yaml", "unknown field 'bogus'"),
    ("   \n", "application/yaml", "the request body is empty"),
    ("", "application/json", "the request body is empty"),
])
def test_unreadable_body_is_400(client: TestClient, body: str | bytes, ctype: str, needle: str) -> None:
    r = client.post("/v1/test", content=body, headers={"Content-Type": ctype})
    assert_text_error(r, 400, needle)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/yamlx", "foo"])
def test_unsupported_media_type_is_415(client: TestClient, ctype: str) -> None:
    r = client.post("/v1/test", content=CONFIG, headers={"Content-Type": ctype})
    assert_text_error(r, 415, f"'{ctype}' media type is not supported", "application/yaml")
    r = client.post("/v1/test", content=CONFIG, headers={"Content-Type": ctype, **WANT_JSON})
    assert r.status_code == 415
    assert r.json() == {"error": r.json()["error"], "problems": []} and ctype in r.json()["error"]


def test_body_over_1_mib_is_413(client: TestClient) -> None:
    big = "# " + "x" * MAX_BODY + "\n" + CONFIG
    assert_text_error(client.post("/v1/test", content=big, headers=YAML), 413, "larger than 1048576 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(20):
            yield b"#" * 65536 + b"\n"

    r = client.post("/v1/test", content=chunks(), headers=YAML)
    assert "content-length" not in r.request.headers
    assert_text_error(r, 413, "larger than 1048576 bytes")
    assert client.post("/v1/test", content=CONFIG + "#" * (MAX_BODY - len(CONFIG) - 1) + "\n",
                       headers=YAML).status_code == 200  # exactly 1 MiB is fine


def test_deep_nesting_is_400(client: TestClient) -> None:
    deep_yaml = "version: v4\nvariants:\n  test:\n    runs:\n      environment:\n        X: " + "[" * 5000
    assert_text_error(client.post("/v1/test", content=deep_yaml, headers=YAML), 400)
    deep_json = '{"version": "v4", "variants": {"test": {"entrypoint": ' + "[" * 100_000 + "]" * 100_000 + "}}}"
    assert_text_error(client.post("/v1/test", content=deep_json), 400, "nested too deeply")
    nested = '{"version": "v4", "variants": {"test": {"entrypoint": ' + "[" * 500 + "]" * 500 + "}}}"
    r = client.post("/v1/test", content=nested)
    assert r.status_code == 400, r.text  # JSON's parser reads it; the config decoder says what is wrong


def test_error_bodies_are_json_only_when_json_is_accepted(client: TestClient) -> None:
    cases = {"application/json": True, "application/json, text/plain, */*": True,
             "text/plain;q=0.5, application/json": True, "application/json;q=0": False,
             "text/plain, application/json;q=0.9": False, "*/*": False, "text/html": False}
    for accept, wants_json in cases.items():
        r = client.post("/v1/nope", content=CONFIG, headers={**YAML, "Accept": accept})
        assert r.status_code == 422
        if wants_json:
            assert r.headers["content-type"] == "application/json", accept
            assert r.json()["problems"][0]["path"] == "variants"
        else:
            assert r.headers["content-type"] == "text/plain; charset=utf-8", accept
            assert r.text.endswith("\n")
    r = client.post("/v1/test", content=CONFIG, headers={**YAML, **WANT_JSON})
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"  # success is text


# ---- deliberate differences from Go's Blubberoid (docs/compat.md) ------------------------------


def test_blubberoid_only_post_compiles(client: TestClient) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        r = client.request(method, "/v1/test", content=CONFIG, headers=YAML)
        assert_text_error(r, 405, f"use POST to compile a config, not {method}")
        assert r.headers["allow"] == "POST"


def test_blubberoid_empty_variant_is_404(client: TestClient) -> None:
    assert_text_error(client.post("/v1/", content=CONFIG, headers=YAML), 404, "request a variant")  # Go: 422


def test_blubberoid_unknown_variant_stays_422(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/v1/{variant}"]["post"]["responses"]
    assert "variant does not exist" in responses["422"]["description"]  # documented where it happens
    assert client.post("/v1/nope", content=CONFIG, headers=YAML).status_code == 422


def test_blubberoid_spec_at_openapi_json(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert client.get("/?spec").json() == spec  # Go's ?spec still answers, with the same document
    r = client.get("/api/docs")
    assert r.status_code == 200 and "/openapi.json" in r.text
    assert_text_error(client.get("/"), 404, "request a variant at /v1/{variant}", "/api/docs")
    assert_text_error(client.get("/v2/test"), 404, "request a variant at /v1/{variant}")


def test_blubberoid_body_limit_and_media_types(client: TestClient) -> None:
    # Go read any size, refused text/yaml, and read a Content-Type it could not parse (e.g. "foo") as JSON.
    assert client.post("/v1/test", content=CONFIG, headers={"Content-Type": "text/x-yaml"}).status_code == 200
    assert client.post("/v1/test", content=JSON_CONFIG, headers={"Content-Type": "foo"}).status_code == 415
    assert client.post("/v1/test", content=JSON_CONFIG, headers={"Content-Type": ";;;"}).status_code == 200
    assert client.post("/v1/test", content="#" * (MAX_BODY + 1), headers=YAML).status_code == 413


def test_blubberoid_errors_are_located_problems(client: TestClient) -> None:
    # Go: "Failed to read 'application/json' config from request body. Error: json: unknown field ..."
    r = client.post("/v1/test", content='{"version": "v4", "variants": {"test": {"bogus": 1}}}',
                    headers={"Content-Type": "application/json"})
    assert_text_error(r, 400, "request body:1:41: error: variants.test.bogus: unknown field 'bogus'", "hint: ")


def test_blubberoid_policy_load_failure_stops_start_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("enforcements:\n  - {path: variants.x.runs.insecurly, rule: isfalse}\n")
    with pytest.raises(SystemExit) as exc:
        create_app(str(bad))
    assert exc.value.code == 5
    err = capsys.readouterr().err
    assert "insecurly" in err and "Traceback" not in err


# ---- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_documents_the_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert list(spec["paths"]) == ["/v1/{variant}"]
    op = spec["paths"]["/v1/{variant}"]["post"]
    assert op["parameters"] == [{"name": "variant", "in": "path", "required": True,
                                 "description": "the variant to compile",
                                 "schema": {"type": "string", "description": "the variant to compile",
                                            "title": "Variant"}}]
    body = op["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/yaml", "application/x-yaml", "application/json"}
    assert body["content"]["application/json"]["schema"]["type"] == "object"
    assert set(op["responses"]) >= {"200", "400", "404", "413", "415", "422"}
    assert list(op["responses"]["200"]["content"]) == ["text/plain"]
    problems = op["responses"]["422"]["content"]["application/json"]["schema"]["properties"]["problems"]
    assert set(problems["items"]["properties"]) == {"severity", "file", "line", "column", "path", "message", "hint"}


def test_documentation_route_answers_like_the_mount() -> None:
    """Should routing ever reach the documented route instead of the mount, it answers the same."""
    from fastapi import FastAPI
    from starlette.routing import Mount

    router = make_router(load_policy_from_text(POLICY))
    router.routes[:] = [r for r in router.routes if not isinstance(r, Mount)]
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as c:
        r = c.post("/v1/test", content=CONFIG, headers=YAML)
        assert r.status_code == 200 and r.text == expected("test")
        r = c.post("/v1/nope", content=CONFIG, headers={**YAML, **WANT_JSON})
        assert r.status_code == 422 and r.json()["exit_code"] == 3
        assert_text_error(c.post("/v1", content=CONFIG), 404, "request a variant")


def load_policy_from_text(text: str):  # type: ignore[no-untyped-def]
    from chute.blubber.policy import parse_policy

    return parse_policy(text, "policy.yaml")


# ---- the full server ---------------------------------------------------------------------------


def test_full_app_serves_blubberoid(server: TestClient) -> None:
    r = server.post("/v1/production", content=CONFIG, headers=YAML)
    assert r.status_code == 200 and r.text == expected("production")
    assert_text_error(server.post("/v1/production/", content=CONFIG, headers=YAML), 404, "request a variant")
    assert_text_error(server.post("/v1", content=CONFIG, headers=YAML), 404, "request a variant")
    assert_text_error(server.get("/v1/production"), 405, "use POST")
    r = server.post("/v1/nope", content=CONFIG, headers={**YAML, **WANT_JSON})
    assert r.status_code == 422 and r.json()["problems"][0]["hint"].startswith("defined variants:")
    op = server.get("/openapi.json").json()["paths"]["/v1/{variant}"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/yaml", "application/x-yaml", "application/json"}


def test_full_app_checks_a_policy(tmp_path: Path) -> None:
    from fastapi import FastAPI

    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    app = FastAPI()
    app.include_router(make_router(load_policy(str(path))))
    with TestClient(app) as c:
        body = CONFIG.replace("base: registry.example/nodejs-slim", "base: docker.io/library/node")
        assert_text_error(c.post("/v1/test", content=body, headers=YAML), 422, "fails policy check")
        assert c.post("/v1/test", content=CONFIG, headers=YAML).status_code == 200


def test_standalone_service_tunes_the_garbage_collector_while_it_runs(policy_path: Path) -> None:
    import gc

    original = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    try:
        with TestClient(create_app(str(policy_path))) as c:
            assert gc.get_threshold() == (10_000, 10, 10) and gc.get_freeze_count() > 0
            assert c.post("/v1/test", content=CONFIG, headers=YAML).status_code == 200
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*original)
