"""The plan for the runner, resolving steps, and the publish/setup helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pipeline_helpers import load_text

from chute.config import EXIT_USAGE, ConfigError
from chute.pipeline import (
    SETUP,
    Context,
    PipelineRuntimeError,
    allowed_image_names,
    check_image_name,
    interpolate,
    make_plan,
    publish_exports,
    publish_tags,
    resolve_step,
    sanitise_copy_destination,
    sanitise_name,
    sanitise_tag,
    setup_bindings,
    step_exports,
    timestamp_label,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

CONFIG = """
pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: unit
      - name: lint
      - name: candidate
        build: production
    execution: [[unit, candidate], [lint, candidate], [other]]
  publish:
    stages:
      - name: other
"""


def setup(pipeline: str = "test", **kw) -> dict:
    args = {"project": "mediawiki/services/citoid", "commit": "abc123", "branch": "main", "tag": None,
            "timestamp": WHEN, "pipeline": pipeline}
    args.update(kw)
    return setup_bindings(**args)


def context_for(cfg, pipeline: str, **kw) -> Context:
    ctx = Context(cfg.pipelines[pipeline].graph, setup(pipeline, **kw))
    for name in cfg.pipelines[pipeline].stages:
        ctx.bind(name, "stage", name)
    return ctx


# -- plan -------------------------------------------------------------------------------------


def test_plan_all_pipelines_in_topological_order():
    text = CONFIG.replace(", [other]]", "]")
    cfg = load_text(text)
    plan = make_plan(cfg)
    assert [pp.name for pp in plan.pipelines] == ["test", "publish"]
    test = plan.pipelines[0]
    assert [s.name for s in test.stages] == ["unit", "lint", "candidate"]
    assert test.frames() == [["unit", "lint"], ["candidate"]]
    assert test.blubberfile == "blubber.yaml" and test.directory == "."
    assert plan.pipelines[1].blubberfile == "publish/blubber.yaml"


def test_plan_stage_filter_keeps_ancestors():
    cfg = load_text(CONFIG.replace(", [other]]", "]"))
    plan = make_plan(cfg, ["test"], stage="candidate")
    assert [s.name for s in plan.pipelines[0].stages] == ["unit", "lint", "candidate"]
    plan = make_plan(cfg, stage="unit")
    assert [(pp.name, [s.name for s in pp.stages]) for pp in plan.pipelines] == [("test", ["unit"])]
    assert plan.pipelines[0].graph.nodes == ("unit",)


def test_plan_unknown_names_are_usage_errors():
    cfg = load_text(CONFIG.replace(", [other]]", "]"))
    with pytest.raises(ConfigError) as ei:
        make_plan(cfg, ["tset"])
    assert ei.value.exit_code == EXIT_USAGE
    assert ei.value.problems[0].message == "pipeline `tset` is not defined in config.yaml"
    assert ei.value.problems[0].hint == "pipelines: test, publish"
    with pytest.raises(ConfigError) as ei:
        make_plan(cfg, ["publish"], stage="unit")
    assert "stage `unit` is not defined in pipeline `publish`" in ei.value.problems[0].message
    with pytest.raises(ConfigError):
        make_plan(cfg, stage="nowhere")


# -- setup values -----------------------------------------------------------------------------


def test_setup_bindings():
    values = setup(change="12345", patchset="3", params={"ZUUL_BRANCH": "main"}, remote="https://g/r/x",
                   log_url="https://chute/runs/1/log")
    assert values["project"] == "mediawiki/services/citoid" and values["projectShortName"] == "citoid"
    assert values["timestamp"] == "2026-01-02-030405" and values["tag"] == "" and values["stage"] == SETUP
    assert values["change"] == "12345" and values["patchset"] == "3"
    assert values["params.ZUUL_BRANCH"] == "main"
    assert values["imageLabels"] == {"ci.project": "mediawiki/services/citoid", "ci.pipeline": "test",
                                     "ci.commit": "abc123", "ci.change": "12345"}
    assert values["remote"] == "https://g/r/x" and values["logURL"] == "https://chute/runs/1/log"
    plain = setup(project="/r/operations/mediawiki-config", tag="v1.2")
    assert plain["project"] == "operations/mediawiki-config" and plain["tag"] == "v1.2"
    assert "change" not in plain and "patchset" not in plain and "httpProxy" not in plain


def test_timestamp_is_utc():
    assert timestamp_label(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02-030405"
    tz = timezone(timedelta(hours=2))
    assert timestamp_label(datetime(2026, 1, 2, 1, 0, 0, tzinfo=tz)) == "2026-01-01-230000"


# -- resolving steps --------------------------------------------------------------------------


def test_resolve_name_only_stage_steps():
    cfg = load_text(CONFIG.replace(", [other]]", "]"))
    st = cfg.pipelines["test"].stages["unit"]
    ctx = context_for(cfg, "test")
    assert resolve_step(st, "build", ctx) == {"variant": "unit", "context": ".", "imagePullPolicy": "always"}
    ctx.bind("unit", "imageID", "deadbeef")
    assert resolve_step(st, "run", ctx) == {"image": "deadbeef", "arguments": [], "env": {},
                                            "credentials": [], "tail": 0}
    assert resolve_step(st, "publish", ctx) is None


def test_resolve_publish_with_defaults_and_tags():
    cfg = load_text("""
        pipelines:
          publish:
            stages:
              - name: production
                build: production
                publish:
                  image:
                    tags: [latest, '${setup.tag}', '${setup.branch}']
    """)
    st = cfg.pipelines["publish"].stages["production"]
    ctx = context_for(cfg, "publish", branch="wmf/1.45")
    ctx.bind("production", "imageID", "f00d")
    img = resolve_step(st, "publish", ctx)["image"]
    assert img == {"id": "f00d", "name": "mediawiki/services/citoid", "tag": "2026-01-02-030405-production",
                   "tags": ["latest", "", "wmf/1.45"]}
    tags = publish_tags(img["tag"], img["tags"])
    assert tags == ["2026-01-02-030405-production", "latest", "wmf-1.45"]
    name = check_image_name(img["name"], "mediawiki/services/citoid", "production")
    exports = publish_exports(name, tags, "registry.example:5000", "wikimedia")
    assert exports == {
        "imageName": "mediawiki-services-citoid",
        "imageFullName": "registry.example:5000/wikimedia/mediawiki-services-citoid",
        "imageTag": "2026-01-02-030405-production",
        "imageTags": tags,
        "publishedImage": "registry.example:5000/wikimedia/mediawiki-services-citoid:"
                          "2026-01-02-030405-production",
    }


def test_published_tag_and_image_tag_agree():
    tags = publish_tags("My/Tag", ["Latest", "My/Tag", ""])
    exports = publish_exports("svc", tags)
    assert tags == ["my-tag", "latest"]
    assert exports["imageTag"] == "my-tag" and exports["publishedImage"] == "svc:my-tag"


def test_resolve_run_env_arguments_credentials():
    cfg = load_text("""
        pipelines:
          test:
            stages:
              - name: built
                build: codehealth
              - name: coverage
                run:
                  image: '${built.imageID}'
                  arguments: ['--branch=${ZUUL_BRANCH}', '${NOT_A_PARAM}']
                  env:
                    SONAR_BRANCH_TARGET: ${ZUUL_BRANCH}
                    SONAR_BRANCH_NAME: '${ZUUL_CHANGE}-${ZUUL_PATCHSET}'
                    '${setup.projectShortName}_KEY': x
                  credentials:
                    - {id: SONAR_API_KEY, name: SONAR_API_KEY}
                  tail: 5
    """)
    ctx = context_for(cfg, "test", params={"ZUUL_BRANCH": "main", "ZUUL_CHANGE": "42", "ZUUL_PATCHSET": "7"})
    ctx.bind("built", "imageID", "cafe")
    run = resolve_step(cfg.pipelines["test"].stages["coverage"], "run", ctx)
    assert run == {
        "image": "cafe",
        "arguments": ["--branch=main", "${NOT_A_PARAM}"],
        "env": {"SONAR_BRANCH_TARGET": "main", "SONAR_BRANCH_NAME": "42-7", "citoid_KEY": "x"},
        "credentials": [{"id": "SONAR_API_KEY", "name": "SONAR_API_KEY"}],
        "tail": 5,
    }


def test_resolve_copy_and_promote_expressions_fill_defaults():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                run: {tail: 3}
                copy:
                  $each: f
                  $in: '${.output}'
                  $yield: {source: '/out/${.f}', archive: true}
                publish: {image: true}
                promote:
                  $merge: [{chart: first}]
                  $with:
                    $each: env
                    $in: 'eqiad codfw'
                    $delimiter: ' '
                    $yield: {chart: c, environments: ['${.env}']}
    """)
    st = cfg.pipelines["p"].stages["s"]
    ctx = context_for(cfg, "p")
    for k, v in {"imageID": "i", "container": "plib-run-1", "output": "a\nb\n", "imageTag": "t1"}.items():
        ctx.bind("s", k, v)
    assert resolve_step(st, "copy", ctx) == [
        {"from": "plib-run-1", "source": "/out/a", "destination": "/out/a", "archive": True},
        {"from": "plib-run-1", "source": "/out/b", "destination": "/out/b", "archive": True},
    ]
    assert resolve_step(st, "promote", ctx) == [
        {"chart": "first", "environments": [], "version": "t1"},
        {"chart": "c", "environments": ["eqiad"], "version": "t1"},
        {"chart": "c", "environments": ["codfw"], "version": "t1"},
    ]


def test_resolve_deploy_exports_trigger_notify():
    cfg = load_text("""
        pipelines:
          p:
            notify: {email: {to: [a@example.org]}}
            stages:
              - name: candidate
                build: production
                publish: {image: true}
              - name: rehearsal
                deploy:
                  chart: {name: '${setup.projectShortName}', version: 1.2.3}
                  image: '${candidate.imageName}'
                  tag: '${candidate.imageTag}'
                  overrides: {main_app: {'${setup.pipeline}': '${candidate.imageTag}'}}
                exports: {url: 'http://${.releaseName}', list: ['${candidate.imageTag}', 2]}
                trigger: {name: 'job-${x}', parameters: {TAG: '${candidate.imageTag}'}, wait: true}
    """)
    ctx = context_for(cfg, "p")
    ctx.bind("candidate", "imageName", "mediawiki-services-citoid")
    ctx.bind("candidate", "imageTag", "2026-01-02-030405-candidate")
    ctx.bind("rehearsal", "releaseName", "r4nd0m")
    st = cfg.pipelines["p"].stages["rehearsal"]
    assert resolve_step(st, "deploy", ctx) == {
        "chart": {"name": "citoid", "version": "1.2.3"},
        "image": "mediawiki-services-citoid", "tag": "2026-01-02-030405-candidate",
        "cluster": "ci", "test": True, "timeout": None,
        "overrides": {"main_app": {"p": "2026-01-02-030405-candidate"}},
    }
    assert resolve_step(st, "exports", ctx) == {"url": "http://r4nd0m",
                                                "list": ["2026-01-02-030405-candidate", 2]}
    assert resolve_step(st, "trigger", ctx) == {"name": "job-${x}",  # never interpolated
                                                "parameters": {"TAG": "2026-01-02-030405-candidate"},
                                                "propagate": True, "wait": True}
    notify = resolve_step(st, "notify", ctx)
    assert notify["email"]["to"] == ["a@example.org"]
    assert notify["email"]["subject"] == "[Pipeline] citoid p/rehearsal failed"
    assert notify["email"]["body"].startswith("Pipeline p for project mediawiki/services/citoid failed "
                                              "during stage rehearsal.")


def test_resolve_errors_name_stage_field_and_variables():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: s
                build: {variant: '${setup.params.VARIANT}'}
                run: {arguments: {$merge: ['a'], $with: '${setup.params.X|b}'}}
    """)
    st = cfg.pipelines["p"].stages["s"]
    ctx = context_for(cfg, "p")
    with pytest.raises(PipelineRuntimeError) as ei:
        resolve_step(st, "build", ctx, source=".pipeline/config.yaml")
    err = ei.value
    assert (err.stage, err.field) == ("s", "build.variant")
    assert err.message == "no value bound for 'setup.params.VARIANT'"
    assert "setup.project" in err.available
    assert err.format().startswith(".pipeline/config.yaml: error: stage 's', build.variant:")
    ctx.bind("s", "imageID", "x")
    with pytest.raises(PipelineRuntimeError) as ei:
        resolve_step(st, "run", ctx)
    assert ei.value.message == "cannot merge a list with a string" and ei.value.field == "run.arguments"


def test_resolve_rejects_empty_required_values():
    cfg = load_text("pipelines:\n  p:\n    stages:\n      - name: s\n"
                    "        build: {variant: '${setup.tag}'}\n")
    ctx = context_for(cfg, "p")
    with pytest.raises(PipelineRuntimeError) as ei:
        resolve_step(cfg.pipelines["p"].stages["s"], "build", ctx)
    assert ei.value.field == "build.variant" and "empty" in ei.value.message


def test_blubberfile_for_stage_override_and_interpolation():
    cfg = load_text("""
        pipelines:
          p:
            blubberfile: blubber.yaml
            stages:
              - name: base
                build: b
              - name: top
                build: {variant: t, imagePullPolicy: never}
                blubberfile: {version: v4, variants: {t: {base: '${base.imageLocalName}'}}}
    """)
    pp = make_plan(cfg).pipelines[0]
    assert pp.blubberfile_for("base") == "blubber.yaml"
    ctx = context_for(cfg, "p")
    ctx.bind("base", "imageLocalName", "localhost/plib-image-abcd1234")
    bf = interpolate(pp.blubberfile_for("top"), ctx, "top", field="blubberfile")
    assert bf == {"version": "v4", "variants": {"t": {"base": "localhost/plib-image-abcd1234"}}}


# -- names, tags and paths --------------------------------------------------------------------


def test_sanitise_names_and_tags():
    assert sanitise_name("Mediawiki/Services/Citoid") == "mediawiki-services-citoid"
    assert sanitise_name("a b@c") == "a-b-c"
    assert sanitise_tag("wmf/1.45") == "wmf-1.45"
    assert sanitise_tag("2026-01-01-production-${ZUUL_BRANCH}") == "2026-01-01-production--zuul_branch-"
    assert sanitise_tag(".hidden") == "hidden" and sanitise_tag("") == ""
    assert len(sanitise_tag("x" * 300)) == 128


def test_image_name_prefix_rule():
    project = "machinelearning/liftwing/inference-services"
    assert allowed_image_names(project) == ["machinelearning-liftwing-inference-services",
                                            "inference-services"]
    assert check_image_name(f"{project}-editquality", project) == \
        "machinelearning-liftwing-inference-services-editquality"
    assert check_image_name("inference-services", project) == "inference-services"
    with pytest.raises(PipelineRuntimeError) as ei:
        check_image_name("mediawiki-multiversion", "operations/mediawiki-config", "publish")
    assert "not allowed for project 'operations/mediawiki-config'" in ei.value.message
    assert "'mediawiki-config' or start with 'mediawiki-config-'" in ei.value.hint
    with pytest.raises(PipelineRuntimeError):
        check_image_name("inference-servicesx", project)


def test_copy_destination_stays_inside():
    assert sanitise_copy_destination("/tmp/private/") == "tmp/private/"
    assert sanitise_copy_destination("../../etc/passwd") == "etc/passwd"
    assert sanitise_copy_destination("a/../../b") == "b"
    assert sanitise_copy_destination("patches") == "patches"
    assert sanitise_copy_destination("/") == "."


def test_step_exports():
    assert step_exports("build") == ("imageID", "imageLocalName")
    assert step_exports("publish") == ("imageName", "imageFullName", "imageTag", "imageTags",
                                       "publishedImage")
    assert step_exports("promote") == ()
