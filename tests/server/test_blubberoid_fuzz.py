"""Every malformed request to the Blubberoid service gets a 4xx with a message, never a 5xx.

Hypothesis sends random methods, paths (percent-encoded or not), media types,
Accept headers and bodies (random bytes, invalid UTF-8, mutated configs,
deeply nested YAML and JSON, bodies around the 1 MiB limit) to the
stand-alone app with a policy loaded at start, as ``chute serve
--blubberoid-only -p`` runs it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chute.server.blubberoid import MAX_BODY, create_app

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

CONFIG = """\
version: v4
base: registry.example/debian:bookworm
apt: {packages: [git]}
lives: {in: /srv/app}
variants:
  build:
    copies: [local]
    builder: {command: [make], requirements: [Makefile]}
  test: {includes: [build], entrypoint: [make, test]}
  production: {copies: [build], entrypoint: [./app], runs: {environment: {PORT: "8080"}}}
"""
POLICY = "enforcements:\n  - {path: base, rule: startswith=registry.example/}\n" \
         "  - {path: variants.production.runs.insecurely, rule: isfalse}\n"
MEDIA = ["application/yaml", "application/x-yaml", "application/json", "APPLICATION/JSON; charset=latin-1",
         "text/plain", "application/x-www-form-urlencoded", "", ";;;", "application/yaml; charset", "*/*",
         "text/yaml", "multipart/form-data; boundary=x"]
METHODS = ["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE", "FOO"]
VARIANTS = ["test", "production", "build", "", "nope", "Test", "%74est", "te%2573t", "te%25zz", "a/b", "a%2Fb",
            "test/", "..", "%00", "%ff", "ünï", "x" * 300, "%E2%82%AC", "test?x=1", "test#frag"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    policy = tmp_path_factory.mktemp("fuzz") / "policy.yaml"
    policy.write_text(POLICY)
    with TestClient(create_app(str(policy)), raise_server_exceptions=True) as c:
        yield c


def _mutate(text: str, r: random.Random) -> str:
    chars = list(text)
    for _ in range(r.randrange(1, 8)):
        op = r.randrange(4)
        pos = r.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, r.choice(["{", "}", "[", "]", ":", "-", "\n", " ", "\t", "&a", "*a", "!!int", "'", '"',
                                        "#", "%", "\\", "\x00", "\u2028", "on", "~", "<<: *a"]))
        elif op == 2 and chars:
            i = min(pos, len(chars) - 1)
            chars[i] = r.choice("abc0123:-[]{}\n ")
        else:
            a, b = sorted((r.randrange(len(chars) + 1), r.randrange(len(chars) + 1)))
            chars[a:a] = chars[a:b]
    return "".join(chars)


def _body(kind: int, seed: int) -> bytes:
    r = random.Random(seed)
    if kind == 0:  # random bytes, often invalid UTF-8
        return bytes(r.randrange(256) for _ in range(r.randrange(0, 300)))
    if kind == 1:  # a mutated config
        return _mutate(CONFIG, r).encode("utf-8", "surrogatepass")
    if kind == 2:  # the config as JSON, mutated or with odd values
        data = json.loads(json.dumps(__import__("yaml").safe_load(CONFIG)))
        data["variants"]["test"][r.choice(["runs", "lives", "entrypoint", "bogus", "includes", "copies"])] = \
            r.choice([None, 1, 1.5, True, [], {}, "x", [1, [2]], {"a": {"b": None}}, "NaN", 10**30])
        text = json.dumps(data)
        return (_mutate(text, r) if r.random() < 0.5 else text).encode()
    if kind == 3:  # deep nesting
        depth = r.choice([50, 199, 201, 1000, 20_000])
        if r.random() < 0.5:
            return ('{"version": "v4", "variants": {"test": {"runs": {"environment": '
                    + "[" * depth + "]" * depth + "}}}}").encode()
        return ("version: v4\nvariants:\n  test:\n    entrypoint: " + "[" * depth + "]" * depth).encode()
    if kind == 4:  # around the size limit
        size = r.choice([MAX_BODY - 10, MAX_BODY, MAX_BODY + 1, 3 * MAX_BODY])
        return (CONFIG + "#" * size)[:size].encode()
    if kind == 5:  # YAML aliases that expand exponentially
        lines = ["version: v4", "a0: &a0 [x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]" for i in range(1, r.randrange(2, 9))]
        return "\n".join(lines).encode()
    return CONFIG.encode()  # a good one


@FUZZ
@given(method=st.sampled_from(METHODS), variant=st.one_of(st.sampled_from(VARIANTS), st.text(max_size=20)),
       encode=st.booleans(), media=st.one_of(st.sampled_from(MEDIA), st.none(), st.text(max_size=30)),
       accept=st.sampled_from([None, "application/json", "text/plain", "*/*", "application/json;q=0", "garbage;;q=x"]),
       kind=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_any_request_gets_an_answer_and_never_a_5xx(client: TestClient, method: str, variant: str, encode: bool,
                                                    media: str | None, accept: str | None, kind: int,
                                                    seed: int) -> None:
    body = _body(kind, seed)
    path = "/v1/" + (quote(variant, safe="") if encode else quote(variant, safe="/%?#"))
    headers: dict[str, str | bytes] = {}
    if media is not None:  # any bytes a client could send (not CR/LF, which would end the header)
        headers["Content-Type"] = media.encode("latin-1", "replace").replace(b"\r", b"").replace(b"\n", b"")
    if accept is not None:
        headers["Accept"] = accept
    r = client.request(method, path, content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if method == "HEAD":
        return
    if r.status_code == 200:
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.text.startswith("FROM ") and 'LABEL blubber.variant="' in r.text
        return
    assert 400 <= r.status_code < 500
    if r.headers["content-type"] == "application/json":
        assert r.json()["error"]
    else:
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.text.strip() and r.text.endswith("\n")


def test_fuzz_bodies_reach_the_compiler(client: TestClient) -> None:
    """The generators are not all rejected early: good configs compile, mutated ones mostly do not."""
    codes = {kind: [client.post("/v1/test", content=_body(kind, seed),
                                headers={"Content-Type": "application/json" if kind == 2 else "application/yaml"}
                                ).status_code for seed in range(40)] for kind in (1, 2, 6)}
    assert set(codes[6]) == {200}
    assert 200 in codes[1] and (400 in codes[1] or 422 in codes[1])
    assert 200 in codes[2] and (400 in codes[2] or 422 in codes[2])


def test_fuzz_module_has_a_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with TestClient(create_app(str(policy))) as c:
        r = c.post("/v1/test", content=CONFIG.replace("registry.example/", "elsewhere/"),
                   headers={"Content-Type": "application/yaml"})
        assert r.status_code == 422 and "policy" in r.text
