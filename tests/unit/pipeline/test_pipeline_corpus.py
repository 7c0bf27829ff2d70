"""Real `.pipeline/config.yaml` files (spec §6): the valid ones lint clean, the broken ones get
located errors. The corpus lives in ``../shared/testdata/pipeline-configs`` (``$CHUTE_SHARED``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import errors_of, load_text, shared_dir, simulate_run

from chute.config import EXIT_INVALID, EXIT_READ, ConfigError
from chute.pipeline import expand_config, lint_pipeline_config, load_pipeline_config, make_plan

# Files of the public corpus that do not load, and the first error each must get.
INVALID = {
    # the legacy `publish: {type: image, tags: [...]}` (schema-invalid)
    "wikimedia__mediawiki-services-kartotherian.yaml":
        (EXIT_INVALID, 8, 11, "unknown key `type` in `publish`"),
    # `tags` indented under `image: true`
    "wikimedia__machinelearning-liftwing-inference-services__invalid-yaml-066ba966.yaml":
        (EXIT_READ, 13, 17, "invalid YAML: mapping values are not allowed in this context"),
}

# Load-time warnings expected on valid files (anything new here is a regression or a new check).
WARNINGS = {
    "wikimedia__mediawiki-services-mobileapps.yaml": [
        (18, "`${ZUUL_BRANCH}` is not a pipeline variable and stays as written"),
    ],
}


def corpus_files() -> list[tuple[str, str]]:
    shared = shared_dir()
    if shared is None:
        return []
    index = shared / "testdata" / "pipeline-configs" / "INDEX.tsv"
    with open(index, newline="") as fh:
        return [(row["file"], row["kind"]) for row in csv.DictReader(fh, delimiter="\t")]


FILES = corpus_files()


def test_index_matches_the_files(corpus_dir: Path):
    on_disk = {p.name for p in corpus_dir.glob("*.yaml")}
    assert on_disk == {f for f, _kind in FILES}
    assert set(INVALID) | set(WARNINGS) <= on_disk


@pytest.mark.parametrize(("name", "kind"), [f for f in FILES if f[0] not in INVALID] or
                         [pytest.param("", "", marks=pytest.mark.skip(reason="the shared corpus is absent"))])
def test_valid_corpus_file_lints_clean(corpus_dir: Path, name: str, kind: str):
    if kind == "not-pipelinelib":
        pytest.skip("not a PipelineLib file")
    path = corpus_dir / name
    cfg = load_pipeline_config(str(path))
    problems = lint_pipeline_config(cfg, str(corpus_dir), check_blubber=False)
    assert [p for p in problems if p.severity == "error"] == []
    assert [(p.line, p.message) for p in problems] == WARNINGS.get(name, [])
    # every pipeline plans and resolves step by step, and the canonical form loads back to itself
    plan = make_plan(cfg)
    assert [pp.name for pp in plan.pipelines] == list(cfg.pipelines)
    for pipeline in cfg.pipelines:
        simulate_run(cfg, pipeline, params={"ZUUL_BRANCH": "main", "ZUUL_CHANGE": "1", "ZUUL_PATCHSET": "2"})
    expanded = expand_config(cfg)
    again = load_text(yaml.safe_dump(expanded), f"expanded-{name}")
    assert expand_config(again) == expanded


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_corpus_file_has_a_located_error(corpus_dir: Path, name: str):
    code, line, column, message = INVALID[name]
    with pytest.raises(ConfigError) as ei:
        load_pipeline_config(str(corpus_dir / name))
    err = ei.value
    first = next(p for p in err.problems if p.severity == "error")
    assert err.exit_code == code
    assert (first.source, first.line, first.column, first.message) == (str(corpus_dir / name), line, column,
                                                                       message)
    assert first.hint


def test_corpus_shapes(corpus_dir: Path):
    """Spot checks of what the corpus files mean once loaded."""
    cfg = load_pipeline_config(str(corpus_dir / "wikimedia__mediawiki-services-function-evaluator.yaml"))
    g = cfg.pipelines["test"].graph
    assert g.frames()[0] == ["build-python3-executor", "build-format-python3", "build-javascript-executor",
                             "build"]
    assert cfg.pipelines["test"].stages["build"].run is None
    cfg = load_pipeline_config(str(corpus_dir / "marxarelli__blubber.yaml"))
    prod = cfg.pipelines["publish"].stages["production"]
    assert prod.promote == [{"chart": "${setup.projectShortName}", "environments": [],
                             "version": "${.imageTag}"}]  # `promote: true`, rejected by the v0 schema
    assert prod.publish["image"]["id"] == "${candidate.imageID}" and prod.build is None
    cfg = load_pipeline_config(str(corpus_dir / "wikimedia__operations-mediawiki-config.yaml"))
    st = cfg.pipelines["wmf-publish"].stages["prepare-mw-versions"]
    reqs = st.blubberfile["variants"]["multiversion"]["builder"]["requirements"]
    assert reqs["$merge"]["$each"] == "version" and reqs["$with"] == ["."]
    assert cfg.pipelines["wmf-publish"].stages["apply-security-patches"].notify["email"]["subject"] == \
        "Security patch application failed"
    cfg = load_pipeline_config(str(corpus_dir / "wikimedia__machinelearning-liftwing-inference-services"
                                                ".yaml"))
    assert cfg.pipelines["editquality"].blubberfile == "editquality/blubber.yaml"  # the default
    assert cfg.pipelines["editquality"].directory == "revscoring/editquality"


# -- negative examples of spec §6.3 that are not in the public subset (written out here) --------

CITOID_2020 = """\
pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: production
        build: production
        publish:
          image:
            tags: [stable]
        promote: true
"""


def test_citoid_2020_promote_true_is_accepted():
    cfg = load_text(CITOID_2020, "citoid.yaml")
    assert cfg.pipelines["publish"].stages["production"].promote[0]["version"] == "${.imageTag}"
    assert cfg.warnings == []


def test_wikifeeds_pipeline_typo():
    (e,) = errors_of(CITOID_2020.replace("pipelines:", "pipeline:"), "wikifeeds.yaml")
    assert (e.source, e.line, e.column) == ("wikifeeds.yaml", 1, 1)
    assert e.message == "unknown top-level key `pipeline`: did you mean `pipelines`?"


def test_termbox_candidate_reference_without_candidate_stage():
    text = CITOID_2020.replace("        build: production\n", "").replace(
        "          image:\n", "          image:\n            id: '${candidate.imageID}'\n")
    (e,) = errors_of(text, "termbox.yaml")
    assert (e.line, e.column, e.path) == (12, 17, "pipelines.publish.stages[0].publish.image.id")
    assert e.message == "`${candidate.imageID}`: pipeline `publish` has no stage `candidate`"


def test_corpus_is_found_or_skipped_with_a_reason():
    if shared_dir() is None:
        pytest.skip("the shared corpus is absent: set CHUTE_SHARED")
    assert len(FILES) >= 20


def test_simulated_run_of_a_power_user_config(corpus_dir: Path):
    """operations/mediawiki-config: tail output feeding an inline Blubber `$merge`/`$each`."""
    cfg = load_pipeline_config(str(corpus_dir / "wikimedia__operations-mediawiki-config.yaml"))
    done = simulate_run(cfg, "wmf-publish")
    reqs = done["prepare-mw-versions"]["blubberfile"]["variants"]["multiversion"]["builder"]["requirements"]
    assert reqs == [
        {"from": "docker-registry.wikimedia.org/wikimedia/mediawiki:wmf-one", "source": "/srv/mediawiki",
         "destination": "/srv/mediawiki/php-one"},
        {"from": "docker-registry.wikimedia.org/wikimedia/mediawiki:wmf-two", "source": "/srv/mediawiki",
         "destination": "/srv/mediawiki/php-two"},
        ".",
    ]
    patched = done["apply-security-patches"]["blubberfile"]["variants"]["patched"]["base"]
    assert patched == "localhost/plib-image-prepare-mw-versions"
    assert done["fetch-private"]["copy"] == [{"from": "plib-run-fetch-private", "source": "/tmp/private/",
                                              "destination": "private", "archive": False}]
    assert done["publish"]["publish"]["image"]["name"] == "mediawiki-multiversion"
    assert done["apply-security-patches"]["notify"]["email"]["subject"] == "Security patch application failed"
    cfg = load_pipeline_config(str(corpus_dir / "marxarelli__blubber.yaml"))
    done = simulate_run(cfg, "publish")
    assert done["rehearsal"]["deploy"]["tag"] == "2026-01-02-030405-candidate"
    assert done["production"]["promote"] == [{"chart": "citoid", "environments": [],
                                              "version": "2026-01-02-030405-production"}]
