"""Policies (``-p``) from a file and over HTTP (a real http.server on 127.0.0.1)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from blubber_helpers import config

from chute.blubber import ConfigError, compile_variant, load_policy
from chute.blubber.policy import parse_policy

CONFIG = """
version: v4
base: registry.example/debian:12
runs: {insecurely: false}
variants:
  test:
    runs: {insecurely: true}
  production:
    base: registry.example/debian:12
    entrypoint: [server]
"""

POLICY = """
enforcements:
  - path: base
    rule: oneof=registry.example/debian:12 registry.example/debian:11
  - path: variants.production.runs.insecurely
    rule: isfalse
  - path: variants.production.base
    rule: omitempty,startswith=registry.example/
  - path: variants.missing.base
    rule: required
"""


def test_policy_from_a_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    policy = load_policy(str(path))
    assert len(policy.enforcements) == 4
    out = compile_variant(config(CONFIG), "production", policy)
    assert out.startswith("FROM registry.example/debian:12\n")


def test_violation_reports_value_and_rule() -> None:
    policy = parse_policy("enforcements: [{path: variants.test.runs.insecurely, rule: isfalse}]", "p.yaml")
    cfg = config(CONFIG)
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "test", policy)
    err = ei.value
    assert err.exit_code == 6
    assert err.summary == "configuration fails policy check against: p.yaml"
    p = err.problems[0]
    assert p.message == 'value true violates policy rule "isfalse"'
    assert (p.path, p.line) == ("variants.test.runs.insecurely", 7)
    assert "p.yaml line 1" in p.hint


def test_the_whole_config_is_checked_even_other_variants() -> None:
    # As in Blubber: building "production" still fails on test's insecurely (raw form).
    policy = parse_policy("enforcements: [{path: variants.test.runs.insecurely, rule: isfalse}]", "p")
    with pytest.raises(ConfigError):
        compile_variant(config(CONFIG), "production", policy)


def test_requested_variant_is_checked_expanded() -> None:
    cfg = config("""
        version: v4
        base: registry.example/debian:12
        variants:
          build: {}
          test: {includes: [build]}
    """)
    policy = parse_policy("enforcements: [{path: variants.test.base, rule: required}]", "p")
    compile_variant(cfg, "test", policy)  # inherited from the top level through the expansion
    with pytest.raises(ConfigError):
        compile_variant(cfg, "build", policy)  # test is then checked as written: no base


def test_every_violation_is_reported() -> None:
    policy = parse_policy("""
        enforcements:
          - {path: base, rule: "eq=registry.example/debian:11"}
          - {path: variants.test.runs.insecurely, rule: isfalse}
          - {path: lives.uid, rule: "gt=70000|eq=0"}
          - {path: variants.production.entrypoint, rule: "max=0"}
    """, "p")
    with pytest.raises(ConfigError) as ei:
        compile_variant(config(CONFIG), "production", policy)
    assert [p.message for p in ei.value.problems] == [
        'value "registry.example/debian:12" violates policy rule "eq=registry.example/debian:11"',
        'value true violates policy rule "isfalse"',
        'value 65533 violates policy rule "gt=70000|eq=0"',
        'value ["server"] violates policy rule "max=0"',
    ]


@pytest.mark.parametrize(("rule", "ok"), [
    ("required", True), ("omitempty,imageref", True), ("abspath", False), ("baseimage", True),
    ("startswith=registry.", True),
    ("endswith=:12", True), ("contains=debian", True), ("ne=x", True), ("max=26", True), ("min=27", False),
    ("len=26", True), ("oneof=a b", False), ("excludes=ubuntu", True), ("lowercase", True),
    ("uppercase|required", True), ("isdefault", False),
])
def test_rules_on_a_string(rule: str, ok: bool) -> None:
    policy = parse_policy(f"enforcements: [{{path: base, rule: '{rule}'}}]", "p")
    if ok:
        compile_variant(config(CONFIG), "production", policy)
    else:
        with pytest.raises(ConfigError):
            compile_variant(config(CONFIG), "production", policy)


def test_dive_applies_a_rule_to_each_item() -> None:
    cfg = config("version: v4\nbase: debian:12\napt: {packages: [curl, wget]}\nvariants: {app: {}}\n")
    ok = parse_policy("enforcements: [{path: apt.packages, rule: 'dive,oneof=curl wget git'}]", "p")
    compile_variant(cfg, "app", ok)
    bad = parse_policy("enforcements: [{path: apt.packages, rule: 'dive,oneof=curl'}]", "p")
    with pytest.raises(ConfigError):
        compile_variant(cfg, "app", bad)


@pytest.mark.parametrize(("text", "message"), [
    ("enforcements: [{path: base, rule: notarule}]", "unknown rule 'notarule'"),
    ("enforcements: [{path: base, rule: startswith}]", "startswith needs =<value>"),
    ("enforcements: [{path: base, rule: 'isfalse=1'}]", "isfalse takes no parameter"),
])
def test_unknown_rule_is_a_load_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_policy(text, "p.yaml")
    assert ei.value.exit_code == 5
    assert message in ei.value.problems[0].message
    assert ei.value.problems[0].line == 1


def test_path_typo_is_a_load_error() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_policy("enforcements:\n  - {path: variants.prod.runs.insecurly, rule: isfalse}\n"
                     "  - {path: base, rule: required, severity: high}\n", "p.yaml")
    err = ei.value
    assert err.exit_code == 5
    assert [(p.line, p.path) for p in err.problems] == [(2, "enforcements[0].path"),
                                                        (3, "enforcements[1].severity")]
    assert "did you mean 'insecurely'" in err.problems[0].message


def test_unreadable_or_broken_policy(tmp_path: Path) -> None:
    for uri in (str(tmp_path / "missing.yaml"), "file:///etc/hostname"):
        with pytest.raises(ConfigError) as ei:
            load_policy(uri)
        assert ei.value.exit_code == 5
    broken = tmp_path / "broken.yaml"
    broken.write_text("enforcements: [{path: base\n")
    with pytest.raises(ConfigError) as ei:
        load_policy(str(broken))
    assert ei.value.exit_code == 5 and ei.value.problems[0].line is not None


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/policy.yaml":
            body = POLICY.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/yaml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def policy_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_policy_over_http(policy_server: str) -> None:
    policy = load_policy(policy_server + "/policy.yaml")
    assert policy.uri.endswith("/policy.yaml") and len(policy.enforcements) == 4
    cfg = config(CONFIG.replace("base: registry.example/debian:12\n    entrypoint", "base: docker.io/debian\n"
                                "    entrypoint"))
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "production", policy)
    assert ei.value.exit_code == 6
    assert ei.value.problems[0].path == "variants.production.base"


def test_policy_http_errors(policy_server: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_policy(policy_server + "/nope.yaml")
    assert ei.value.exit_code == 5 and "HTTP 404" in ei.value.problems[0].message
    with pytest.raises(ConfigError) as ei:
        load_policy("http://127.0.0.1:9/policy.yaml")  # nothing listens on the discard port
    assert ei.value.exit_code == 5 and "cannot fetch" in ei.value.problems[0].message
