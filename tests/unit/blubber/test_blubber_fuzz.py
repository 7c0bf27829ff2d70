"""Fuzzing the loader and compiler: any input gives a Dockerfile or a ConfigError, quickly.

Three generators, 10,500 cases in all: random YAML documents built from
Blubber's vocabulary, structured configs that exercise includes/copies graphs,
builders, mounts, caches and exclude patterns, and random mutations of the
real corpus files. Hypothesis draws a seed and the document is built from it
with :mod:`random` (much faster than nested strategies; a failure prints the
seed, which reproduces the document). The deadline turns pathological
slowness, e.g. regex backtracking, into a failure.
"""

from __future__ import annotations

import random
from typing import Any

import yaml
from blubber_helpers import corpus_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chute.blubber import ConfigError, compile_variant, lint_config, parse_config

FUZZ = settings(deadline=3000, database=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)

NAMES = ["build", "test", "prod", "Prod", "ab", "bad_name", "local"]
KEYS = ["version", "variants", "base", "apt", "packages", "sources", "proxies", "node", "php", "python",
        "builder", "builders", "custom", "lives", "runs", "entrypoint", "arguments", "includes", "copies",
        "requirements", "command", "script", "mounts", "caches", "from", "source", "destination", "exclude",
        "in", "as", "uid",
        "gid", "environment", "insecurely", "env", "use-npm-ci", "poetry", "venv", "no-deps", "pip-version",
        "id", "access", "url", "distribution", "components", "signed-by", "Base", "bogus"]
WORDS = ["local", "build", "test", "prod", "v4", "v3", "/srv/app", "rel/dir", "../up", "debian:12", "python3",
         "*.md", "!HEAD", "**/x", "${GOPATH}/pkg", "a b,c", "x:y", "true", "on", "%s", "%", "\n", "0", "-1",
         "http://proxy:8080", "bookworm", "locked", "scratch", "", "ünï", "a" * 300]


def _scalar(r: random.Random) -> Any:
    kind = r.randrange(7)
    if kind == 0:
        return None
    if kind == 1:
        return r.random() < 0.5
    if kind == 2:
        return r.choice([0, 1, 2, -1, 900, 65533, 2**64, 2**70, 3.5, float("inf")])
    if kind == 3:
        return "".join(chr(r.randrange(32, 0x2FF)) for _ in range(r.randrange(6)))
    return r.choice(WORDS)


def _value(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if depth > 4 or roll < 0.45:
        return _scalar(r)
    if roll < 0.65:
        return [_value(r, depth + 1) for _ in range(r.randrange(4))]
    return {r.choice(KEYS) if r.random() < 0.9 else r.choice(WORDS): _value(r, depth + 1)
            for _ in range(r.randrange(5))}


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)


def _exercise(text: str, *, lint: bool = True) -> None:
    try:
        cfg = parse_config(text, "fuzz.yaml")
    except ConfigError as err:
        assert err.problems and err.exit_code in (2, 4)
        for p in err.problems:
            assert str(p)  # every problem renders
        return
    if lint:
        lint_config(cfg)
    for name in cfg.variant_names():
        try:
            out = compile_variant(cfg, name)
        except ConfigError as err:
            assert err.exit_code in (3, 4) and err.problems
        else:
            assert out.startswith("FROM ") and "\nLABEL blubber.variant=" in out


@settings(FUZZ, max_examples=5000)
@given(SEEDS)
def test_random_documents(seed: int) -> None:
    r = random.Random(seed)
    doc: dict[str, Any] = {"version": r.choice(["v4", "v4", "v4", "v3", 4, None])}
    for key in r.sample(KEYS[2:14], r.randrange(5)):
        doc[key] = _value(r, 1)
    if r.random() < 0.9:
        doc["variants"] = {r.choice(NAMES) if r.random() < 0.9 else _scalar(r): _value(r, 1)
                           for _ in range(r.randrange(4))}
    _exercise(_dump(doc))


def _ref(r: random.Random) -> str:
    return r.choice(["build", "test", "prod", "local", "docker.io/x:1", "nope"])


def _path(r: random.Random) -> str:
    return r.choice(["/srv/app", "./out", "out/", ".", "/opt/lib", "${GOCACHE}", "a b", "", "x/../..", "/"])


def _artifact(r: random.Random) -> Any:
    if r.random() < 0.3:
        return _ref(r)
    art: dict[str, Any] = {"from": _ref(r)}
    for key in r.sample(["source", "destination", "exclude"], r.randrange(4)):
        patterns = ["*.md", "!HEAD", "src/**", "[a-z]", "a^b", "\\", ""]
        art[key] = _path(r) if key != "exclude" else r.sample(patterns, r.randrange(3))
    return art


def _builder(r: random.Random) -> dict[str, Any]:
    b: dict[str, Any] = {}
    if r.random() < 0.6:
        b["command"] = r.choice(["make %s", "go build", "a\nb", ["make", "%", "x y"], []])
    if r.random() < 0.2:
        b["script"] = r.choice(["#!/bin/bash\necho hi", "echo $HOME"])
    if r.random() < 0.5:
        b["requirements"] = [_artifact(r) if r.random() < 0.5 else r.choice(["Makefile", "src/", "/abs"])
                             for _ in range(r.randrange(3))]
    if r.random() < 0.3:
        b["mounts"] = [_artifact(r) for _ in range(r.randrange(3))]
    if r.random() < 0.3:
        b["caches"] = [_path(r) if r.random() < 0.5 else {"destination": _path(r), "access": r.choice(
            ["shared", "locked", "bogus"])} for _ in range(r.randrange(3))]
    return b


def _variant(r: random.Random) -> dict[str, Any]:
    v: dict[str, Any] = {}
    if r.random() < 0.4:
        v["base"] = r.choice(["debian:12", "", None, "scratch"])
    if r.random() < 0.5:
        v["includes"] = r.sample(["build", "test", "prod"], r.randrange(3))
    if r.random() < 0.6:
        v["copies"] = [_artifact(r) for _ in range(r.randrange(4))]
    if r.random() < 0.4:
        entries = []
        for _ in range(r.randrange(4)):
            kind = r.choice(["custom", "custom", "python", "node", "php"])
            if kind == "custom":
                entries.append({"custom": _builder(r)})
            elif kind == "python":
                entries.append({"python": {"version": "python3", "requirements": [_artifact(r), "r.txt"],
                                           "poetry": {"version": r.choice(["==1.5.1", "2", "bad", ""])}}})
            else:
                entries.append({kind: {"requirements": ["package.json"], **(
                    {"env": r.choice(["production", "dev"])} if kind == "node" else {})}})
        v["builders"] = entries
    if r.random() < 0.3:
        v["builder"] = _builder(r)
    if r.random() < 0.3:
        v["lives"] = {"in": _path(r), "uid": r.choice([0, 1000, 70000])}
    if r.random() < 0.3:
        v["runs"] = {"insecurely": r.random() < 0.5, "in": _path(r)}
    if r.random() < 0.2:
        v["arguments"] = {r.choice(["MAKE_TARGET", "X", "bad-name"]): r.choice(WORDS)}
    return v


@settings(FUZZ, max_examples=4000)
@given(SEEDS)
def test_structured_configs(seed: int) -> None:
    r = random.Random(seed)
    doc = {"version": "v4", "base": r.choice(["debian:12", ""]),
           "variants": {n: _variant(r) for n in ("build", "test", "prod") if r.random() < 0.8}}
    _exercise(_dump(doc))


def _corpus_texts() -> list[str]:
    folder = corpus_dir() / "configs"
    return [p.read_text() for p in sorted(folder.glob("*"))] if folder.is_dir() else []


CORPUS = _corpus_texts() or ["version: v4\nbase: debian:12\nvariants:\n  build: {copies: [local]}\n"]
TOKENS = [":", "- ", "  ", "\n", "{", "}", "[", "]", "'", '"', "&a", "*a", "<<: *a", "~", "!!str ", "\t", "#",
          "build", "local", "includes: [test]", "copies: [prod]", "exclude: ['*']"]


@settings(FUZZ, max_examples=1500)
@given(st.integers(0, len(CORPUS) - 1), SEEDS, st.integers(1, 6))
def test_mutated_corpus_files(index: int, seed: int, count: int) -> None:
    r = random.Random(seed)
    text = CORPUS[index]
    for _ in range(count):
        op = r.randrange(4)
        i = r.randrange(len(text) + 1)
        if op == 0:  # insert a token
            text = text[:i] + r.choice(TOKENS) + text[i:]
        elif op == 1:  # delete a span
            text = text[:i] + text[i + r.randrange(1, 20):]
        else:  # duplicate or swap lines
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                a, b = r.randrange(len(lines)), r.randrange(len(lines))
                if op == 2:
                    lines.insert(a, lines[b])
                else:
                    lines[a], lines[b] = lines[b], lines[a]
                text = "".join(lines)
    _exercise(text, lint=False)
