"""Fuzzing the loader: whatever the input, the only exception is a ConfigError.

Three sources: random text, random structures built from the config's own vocabulary (so they
get deep into the checks), and line mutations of the real corpus files. Inputs that load are
also planned, linted, expanded (and the expansion must load back to itself) and every step is
run in simulation (every step resolved in order, as the runner does).
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import shared_dir, simulate_run

from chute.config import EXIT_READ, ConfigError
from chute.pipeline import (
    PipelineConfig,
    expand_config,
    lint_pipeline_config,
    make_plan,
    parse_pipeline_config,
)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["pipelines", "pipeline", "environments", "stages", "execution", "blubberfile", "directory", "fetch",
        "notify", "helmConfig", "name", "build", "run", "copy", "publish", "promote", "deploy", "exports",
        "trigger", "image", "tags", "tag", "id", "variant", "context", "excludes", "imagePullPolicy",
        "arguments", "env", "credentials", "tail", "source", "destination", "from", "archive", "chart",
        "version", "environments", "cluster", "test", "timeout", "overrides", "parameters", "propagate",
        "wait", "email", "to", "subject", "body", "shallow", "depth", "submodules", "production",
        "$each", "$in", "$delimiter", "$yield", "$merge", "$with", "a", "b", "setup"]
STRINGS = ["a", "b", "test", "production", "setup", "teardown", "${.stage}", "${.imageID}", "${a.imageID}",
           "${b.output}", "${setup.tag}", "${setup.nope}", "${ZUUL_BRANCH}", "${", "${}", "${VAR:-x}",
           "${a.b|d}", "${.v}", "1 2", "", "/out", "../x", "http://x/y", "|", "\n"]

scalars = st.one_of(st.sampled_from(STRINGS), st.booleans(), st.none(), st.integers(-2, 30),
                    st.text(max_size=8))
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=40,
)
PIPELINE_KEYS = ["execution", "blubberfile", "directory", "fetch", "notify"]
stage_names = st.sampled_from(["a", "b", "c", "setup"])
# Plausible step values, so that many generated configs load and reach planning and resolving.
STEP_VALUES = {
    "build": ["x", "${.stage}", {"variant": "v", "excludes": [".git"]}, {"context": "http://x/y"}],
    "run": [True, False, {"arguments": ["a", "${.stage}"]}, {"env": {"A": "${setup.tag|none}"}, "tail": 2}],
    "copy": [["/out"], [{"source": "/a/", "destination": "../b", "archive": True}],
             {"$each": "f", "$in": "${.output}", "$yield": "/out/${.f}"}],
    "publish": [{"image": True}, {"image": {"tags": []}}, {"image": {"tag": "T/${.stage}", "tags": ["x"]}}],
    "promote": [True, [{"chart": "c", "version": "1"}],
                {"$merge": [{"chart": "m"}], "$with": [{"chart": "n", "environments": ["e"]}]}],
    "deploy": [{"chart": {"name": "c"}},
               {"test": False, "timeout": 5, "overrides": {"k": "${setup.commit}"}}],
    "exports": [{"k": "${setup.commit}"}, {"l": {"$each": "v", "$in": "1 2", "$delimiter": " "}}],
    "trigger": [{"name": "job", "parameters": {"P": "${.stage}"}}],
    "notify": [{"email": {"to": "a@example.org"}}],
    "blubberfile": ["blubber.yaml", {"version": "v4", "variants": {"x": {"base": "${setup.tag}"}}}],
}
plausible_stage = st.builds(
    lambda n, steps: {"name": n, **steps},
    stage_names,
    st.dictionaries(st.sampled_from(sorted(STEP_VALUES)), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(STEP_VALUES[k]) for k in keys})),
)
stages = st.lists(st.one_of(
    plausible_stage,
    plausible_stage,
    st.builds(lambda n: {"name": n}, stage_names),
    st.builds(lambda n, extra: {"name": n, **extra}, stage_names,
              st.dictionaries(st.sampled_from(KEYS[10:30]), structures, max_size=4)),
    structures,
), max_size=4)
pipelines = st.dictionaries(
    st.sampled_from(["test", "publish", "p"]),
    st.one_of(
        st.builds(lambda s, extra: {"stages": s, **extra}, stages,
                  st.dictionaries(st.sampled_from(PIPELINE_KEYS), structures, max_size=2)),
        st.builds(lambda e, s: {"stages": s, "execution": e}, st.lists(st.lists(stage_names, max_size=3),
                                                                      max_size=3), stages),
        structures,
    ),
    max_size=3,
)
documents = st.one_of(st.builds(lambda p: {"pipelines": p}, pipelines), structures)


@st.composite
def plausible_documents(draw):
    """Mostly valid configs: unique stage names, arcs over them, plausible steps."""
    out = {}
    for pname in draw(st.lists(st.sampled_from(["test", "publish", "rehearse"]), unique=True,
                               min_size=1, max_size=2)):
        names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=4))
        stages_ = []
        for n in names:
            stage = draw(plausible_stage)
            stage["name"] = n
            if draw(st.booleans()):
                stage = {"name": n}
            stages_.append(stage)
        pipeline = {"stages": stages_}
        if names and draw(st.booleans()):
            order = draw(st.permutations(names))
            cut = draw(st.integers(1, len(order)))
            pipeline["execution"] = [list(order[:cut]), [order[0], *order[cut:]]]
        if draw(st.booleans()):
            pipeline["notify"] = {"email": {"to": ["team@example.org"], "subject": "s"}}
        out[pname] = pipeline
    if draw(st.booleans()):
        out["short"] = {"stages": draw(st.fixed_dictionaries(
            {}, optional={"test": st.lists(st.sampled_from(["u", "v"]), unique=True),
                          "production": st.sampled_from(["p", False])}))}
    return {"pipelines": out}


def exercise(cfg: PipelineConfig, *, must_run: bool = False) -> None:
    """Use a loaded config the way lint and the runner do; only ConfigError may escape.

    With ``must_run`` the simulated run must not fail at all: a config that loads (and so
    passed the static reference checks) resolves every step at run time.
    """
    lint_pipeline_config(cfg, "/nonexistent", check_blubber=False)
    expanded = expand_config(cfg)
    again = parse_pipeline_config(yaml.safe_dump(expanded), "expanded.yaml")
    assert expand_config(again) == expanded
    assert [pp.name for pp in make_plan(cfg).pipelines] == list(cfg.pipelines)
    for name in cfg.pipelines:
        try:
            simulate_run(cfg, name)
        except ConfigError:
            if must_run:
                raise


def load_and_exercise(text: str, *, must_run: bool = False) -> None:
    try:
        cfg = parse_pipeline_config(text, "fuzz.yaml")
    except ConfigError as err:
        assert err.problems
        for p in err.problems:  # every problem says what, where and what to do
            assert p.message and p.hint and p.source == "fuzz.yaml"
            assert p.line is not None or err.exit_code == EXIT_READ  # unreadable bytes have none
        return
    exercise(cfg, must_run=must_run)


@FUZZ
@given(st.text(max_size=200))
def test_random_text(text):
    load_and_exercise(text)


@FUZZ
@given(documents)
def test_random_structures(doc):
    load_and_exercise(yaml.safe_dump(doc, sort_keys=False))


@FUZZ
@given(plausible_documents())
def test_plausible_configs(doc):
    load_and_exercise(yaml.safe_dump(doc, sort_keys=False), must_run=True)


def corpus_texts() -> list[str]:
    shared = shared_dir()
    if shared is None:
        return []
    return [p.read_text() for p in sorted((shared / "testdata" / "pipeline-configs").glob("*.yaml"))]


CORPUS = corpus_texts()
MUTATIONS = ["delete", "duplicate", "indent", "dedent", "swap", "replace"]


@pytest.mark.skipif(not CORPUS, reason="the shared corpus is absent: set CHUTE_SHARED")
@FUZZ
@given(st.data())
def test_mutated_corpus_files(data):
    lines = data.draw(st.sampled_from(CORPUS)).split("\n")
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(MUTATIONS))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i]
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            old = data.draw(st.sampled_from(KEYS + STRINGS[:12]))
            new = data.draw(st.sampled_from(KEYS + STRINGS))
            lines[i] = lines[i].replace(old, new, 1)
    load_and_exercise("\n".join(lines))
