"""The 2019 shorthand `stages: {test: [...], production: x}` expands to canonical stages."""

from __future__ import annotations

import yaml
from pipeline_helpers import errors_of, load_text

from chute.pipeline import expand_config, make_plan, parse_pipeline_config

SHORTHAND = """
pipelines:
  serviceOne:
    directory: src/serviceOne
    helmConfig: serviceOne/helm.yaml
    stages:
      test: [phpunit, mocha]
      production: foo
"""


def test_expansion_of_tests_and_production():
    p = load_text(SHORTHAND).pipelines["serviceOne"]
    assert p.shorthand and p.helm_config == "serviceOne/helm.yaml" and p.directory == "src/serviceOne"
    assert list(p.stages) == ["phpunit", "mocha", "production"]
    assert p.execution == [["phpunit", "production"], ["mocha", "production"]]
    assert p.graph.frames() == [["phpunit", "mocha"], ["production"]]
    phpunit, _mocha, prod = p.stages.values()
    assert phpunit.name_only and phpunit.steps() == ["build", "run"]
    assert prod.build["variant"] == "foo" and prod.steps() == ["build", "publish"]
    assert prod.publish["image"]["tag"] == "${setup.timestamp}-${.stage}"
    # the default blubberfile falls back to blubber.yaml, decided against a checkout
    assert p.blubberfile == "serviceOne/blubber.yaml" and p.blubberfile_fallback == "blubber.yaml"


def test_production_false_and_defaults():
    p = load_text("pipelines:\n  s:\n    stages: {test: [a, b], production: false}\n").pipelines["s"]
    assert list(p.stages) == ["a", "b"] and p.execution == [["a"], ["b"]]
    p = load_text("pipelines:\n  s:\n    stages: {}\n").pipelines["s"]
    assert list(p.stages) == ["test", "production"] and p.execution == [["test", "production"]]
    assert p.stages["production"].build["variant"] == "production"
    p = load_text("pipelines:\n  s:\n    stages: {test: [], production: prod}\n").pipelines["s"]
    assert list(p.stages) == ["production"] and p.execution == [["production"]]
    p = load_text("pipelines:\n  s:\n    stages: {test: unit, production: false}\n").pipelines["s"]
    assert list(p.stages) == ["unit"]


def test_explicit_blubberfile_has_no_fallback():
    p = load_text("pipelines:\n  s:\n    blubberfile: b.yaml\n    stages: {}\n").pipelines["s"]
    assert p.blubberfile == "b.yaml" and p.blubberfile_fallback is None


def test_blubberfile_fallback_resolved_against_the_repository(tmp_path):
    cfg = load_text("pipelines:\n  one:\n    stages: {}\n  two:\n    stages: {}\n")
    (tmp_path / ".pipeline" / "one").mkdir(parents=True)
    (tmp_path / ".pipeline" / "one" / "blubber.yaml").write_text("version: v4\n")
    plan = make_plan(cfg, repo_root=str(tmp_path))
    assert [pp.blubberfile for pp in plan.pipelines] == ["one/blubber.yaml", "blubber.yaml"]
    assert plan.pipelines[1].blubberfile_for("test") == "blubber.yaml"
    expanded = expand_config(cfg, str(tmp_path))
    assert expanded["pipelines"]["two"]["blubberfile"] == "blubber.yaml"
    # without a checkout the first candidate stands
    assert make_plan(cfg).pipelines[1].blubberfile == "two/blubber.yaml"


def test_expand_config_shows_the_canonical_form_and_loads_again():
    cfg = load_text(SHORTHAND)
    expanded = expand_config(cfg)
    entry = expanded["pipelines"]["serviceOne"]
    assert entry["stages"][2] == {
        "name": "production",
        "build": {"variant": "foo", "context": ".", "imagePullPolicy": "always"},
        "publish": {"image": {"id": "${.imageID}", "name": "${setup.project}",
                              "tag": "${setup.timestamp}-${.stage}", "tags": ["${setup.tag}"]}},
    }
    assert entry["execution"] == [["phpunit", "production"], ["mocha", "production"]]
    again = parse_pipeline_config(yaml.safe_dump(expanded), "expanded.yaml")
    assert expand_config(again) == expanded


def test_shorthand_errors():
    (e,) = errors_of("pipelines:\n  s:\n    stages: {tests: [a]}\n")
    assert e.message == "unknown key `tests` in the shorthand `stages` mapping"
    assert "only `test`" in e.hint
    (e,) = errors_of("pipelines:\n  s:\n    execution: [[a]]\n    stages: {test: [a]}\n")
    assert "cannot be combined with the shorthand" in e.message and e.line == 3
    (e,) = errors_of("pipelines:\n  s:\n    stages: {test: [production]}\n")
    assert "cannot be called `production`" in e.message
    (e,) = errors_of("pipelines:\n  s:\n    stages: {production: 3}\n")
    assert "must be a variant name or false" in e.message
    (e,) = errors_of("pipelines:\n  s:\n    stages: {test: [a, a]}\n")
    assert "listed twice" in e.message
