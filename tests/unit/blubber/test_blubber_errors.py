"""Invalid configs: every problem at once, located, with its field path, a hint and Blubber's exit code."""

from __future__ import annotations

import textwrap

import pytest
from blubber_helpers import config

from chute.blubber import ConfigError, compile_variant, load_config, parse_config


def problems(text: str) -> tuple[int, list[tuple[int | None, int | None, str, str]]]:
    with pytest.raises(ConfigError) as ei:
        parse_config(textwrap.dedent(text), "b.yaml")
    err = ei.value
    for p in err.problems:
        assert p.source == "b.yaml" and p.hint, p
    return err.exit_code, [(p.line, p.column, p.path, p.message) for p in err.problems]


def test_v3_is_unsupported() -> None:
    code, found = problems("""
        version: v3
        base: debian:buster
        artifacts: [{from: build}]
        variants: {test: {copies: build}}
    """)
    assert code == 4
    assert found == [(2, 10, "version", 'config version "v3" is unsupported')]


@pytest.mark.parametrize(("text", "code", "message"), [
    ("", 4, "version is required"),
    ("variants: {}\n", 4, "version is required"),
    ("- version: v4\n", 2, "must be a mapping"),
    ("version: 4\nvariants: {}\n", 2, "must be the string v4, not the number 4"),
    ("version: v5\nvariants: {}\n", 4, 'config version "v5" is unsupported'),
    ("version: v4\nvariants: [a, b]\n", 2, "mapping of variant names"),
])
def test_top_level_shape(text: str, code: int, message: str) -> None:
    got_code, found = problems(text)
    assert got_code == code and message in found[0][3]


def test_broken_yaml_is_a_read_error_with_position() -> None:
    code, found = problems("version: v4\nvariants:\n  test:\n    copies: [local\n  prod: {}\n")
    assert code == 2
    assert found[0][0] == 5 and "invalid YAML" in found[0][3]


def test_unknown_keys_nested_and_case_insensitive() -> None:
    code, found = problems("""
        VERSION: v4
        Base: debian:bookworm
        Lives: {IN: /srv/x, ass: nobody}
        variants:
          test:
            Copies: [local]
            runs: {enviroment: {A1: b}}
            builders:
              - custom: {comand: [make]}
    """)
    assert code == 2
    assert found == [
        (4, 21, "Lives.ass", "unknown field 'ass'"),  # Lives and IN themselves are accepted, as in Go
        (8, 12, "variants.test.runs.enviroment", "unknown field 'enviroment'"),
        (10, 18, "variants.test.builders[0].custom.comand", "unknown field 'comand'"),
    ]


def test_unknown_key_hints() -> None:
    with pytest.raises(ConfigError) as ei:
        config("version: v4\nincludes: [x]\nsharedvolume: true\nvariants: {test: {enviroment: {}}}\n")
    hints = {p.path: p.hint for p in ei.value.problems}
    assert "only allowed inside a variant" in hints["includes"]
    assert "removed" in hints["sharedvolume"]
    assert "a variant accepts" in hints["variants.test.enviroment"]


def test_bad_variant_names() -> None:
    code, found = problems("""
        version: v4
        variants:
          ab: {}
          my_variant: {}
          ends-with-: {}
          Good.Name-1: {}
    """)
    assert code == 4
    assert [(f[0], f[2]) for f in found] == [(4, "variants.ab"), (5, "variants.my_variant"),
                                             (6, "variants.ends-with-")]


def test_bad_paths() -> None:
    code, found = problems("""
        version: v4
        lives: {in: /}
        runs: {in: relative}
        variants:
          test:
            lives: {in: /srv/..}
            copies:
              - {from: local, source: /etc/passwd, destination: x}
              - {from: local, source: ../up, destination: x}
              - {from: local, source: ..foo, destination: x}
    """)
    assert code == 4
    assert [(f[0], f[2]) for f in found] == [
        (3, "lives.in"), (4, "runs.in"), (7, "variants.test.lives.in"),
        (9, "variants.test.copies[0].source"), (10, "variants.test.copies[1].source"),
        (11, "variants.test.copies[2].source")]


def test_many_problems_at_once() -> None:
    code, found = problems("""
        version: v4
        base: Debian:buster
        apt:
          packages:
            "not a release": [curl]
            default: [a, OK]
        lives: {as: root, uid: -1}
        runs: {as: my_user, environment: {A: x, B1: y}, insecurely: 2}
        node: {env: dev-elopment}
        variants:
          test:
            includes: [prod, nope]
            copies:
              - {source: x}
              - {from: bulid, destination: y}
              - {from: local, source: x}
              - {from: local, source: x}
            entrypoint: npm test
            python: {poetry: {version: "1.0 beta"}, pip-version: "?"}
          prod: {}
    """)
    assert code == 2  # type errors (uid -1, insecurely 2, entrypoint string) are decode errors
    assert [(f[0], f[1], f[2]) for f in found] == [
        (3, 7, "base"),
        (6, 5, "apt.packages.not a release"),
        (7, 15, "apt.packages.default[0]"),
        (7, 18, "apt.packages.default[1]"),
        (8, 13, "lives.as"),
        (8, 24, "lives.uid"),
        (9, 12, "runs.as"),
        (9, 35, "runs.environment.A"),
        (9, 61, "runs.insecurely"),
        (10, 13, "node.env"),
        (13, 22, "variants.test.includes[1]"),
        (15, 9, "variants.test.copies[0]"),
        (16, 9, "variants.test.copies[1]"),
        (18, 9, "variants.test.copies[3]"),
        (19, 17, "variants.test.entrypoint"),
        (20, 32, "variants.test.python.poetry.version"),
        (20, 58, "variants.test.python.pip-version"),
    ]
    messages = dict((f[2], f[3]) for f in found)
    assert messages["variants.test.copies[0]"] == "from is required"
    assert messages["variants.test.copies[1]"] == 'source is required if "destination" is also set'
    assert messages["variants.test.copies[3]"] == "cannot contain duplicates"
    assert messages["variants.test.includes[1]"] == "references an unknown variant 'nope'"


def test_unknown_copies_variant_that_is_not_an_image() -> None:
    code, found = problems("version: v4\nvariants:\n  prod: {copies: [Buidl_x]}\n  build: {}\n")
    assert code == 4 and found[0][2] == "variants.prod.copies[0]" and "unknown variant" in found[0][3]


def test_unknown_variant_lists_the_defined_ones() -> None:
    cfg = config("version: v4\nvariants: {build: {}, test: {}}\n")
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "tset")
    assert ei.value.exit_code == 3
    p = ei.value.problems[0]
    assert p.message == "variant 'tset' does not exist"
    assert p.hint == "did you mean 'test'? defined variants: build, test"


def test_include_loop() -> None:
    cfg = config("""
        version: v4
        variants:
          aaa: {includes: [bbb]}
          bbb: {includes: [ccc]}
          ccc: {includes: [aaa]}
    """)
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "aaa")
    assert ei.value.exit_code == 3
    p = ei.value.problems[0]
    assert p.message == "includes loop: aaa -> bbb -> ccc -> aaa"
    assert (p.line, p.path) == (6, "variants.ccc.includes[0]")


def test_builders_with_an_inherited_python_is_invalid_after_merging() -> None:
    cfg = config("""
        version: v4
        python: {version: python3, requirements: [r.txt]}
        variants:
          fine: {}
          bad: {builders: [{custom: {command: make}}]}
    """)
    compile_variant(cfg, "fine")
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "bad")
    assert ei.value.exit_code == 4
    assert ei.value.problems[0].path == "variants.bad.builders"
    assert "python" in ei.value.problems[0].message


def test_exclude_errors() -> None:
    cfg = config("""
        version: v4
        variants:
          app: {copies: [{from: local, exclude: ["*.md"]}]}
          odd: {base: debian:bookworm, copies: [{from: local, exclude: ["a^b"]}]}
    """)
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "app")
    assert ei.value.exit_code == 4 and "no base image" in ei.value.problems[0].message
    with pytest.raises(ConfigError) as ei:
        compile_variant(cfg, "odd")
    assert "cannot use exclude" in ei.value.problems[0].message


def test_unreadable_file(tmp_path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "missing.yaml"))
    assert ei.value.exit_code == 2 and "cannot read" in ei.value.problems[0].message
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: v4\nbase: \xff\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(bad))
    assert ei.value.exit_code == 2 and "UTF-8" in ei.value.problems[0].message


def test_json_config_like_a_blubberoid_body() -> None:
    body = b'{"version": "v4", "base": "debian:buster", "variants": {"test": {"copies": ["local"]}}}'
    cfg = parse_config(body, "request")
    assert compile_variant(cfg, "test").startswith("FROM debian:buster\n")
    with pytest.raises(ConfigError) as ei:
        parse_config('{"version": "v4", "variants": {"test": {"bogus": 1}}}', "request")
    assert ei.value.exit_code == 2 and ei.value.problems[0].path == "variants.test.bogus"
