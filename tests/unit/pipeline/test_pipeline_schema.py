"""Loading: the v0 structure, §2.5 normalisation (Elvis defaults), and located errors."""

from __future__ import annotations

import pytest
from pipeline_helpers import errors_of, load_text, problems_of

from chute.config import EXIT_INVALID, EXIT_READ, ConfigError
from chute.pipeline import Fetch, parse_pipeline_config


def stage(text_stage: str, **kw):
    """Load one pipeline `p` holding the given stage YAML; return the first stage."""
    cfg = load_text("pipelines:\n  p:\n    stages:\n" + text_stage, **kw)
    return next(iter(cfg.pipelines["p"].stages.values()))


# -- name-only shorthand ---------------------------------------------------------------------


def test_name_only_stage_builds_and_runs_its_variant():
    st = stage("      - name: test\n")
    assert st.name_only
    assert st.build == {"variant": "${.stage}", "context": ".", "imagePullPolicy": "always"}
    assert st.run == {"image": "${.imageID}", "arguments": [], "env": {}, "credentials": [], "tail": 0}
    assert st.steps() == ["build", "run"]


def test_name_plus_any_key_gets_no_implicit_steps():
    st = stage("      - name: test\n        notify: {email: {to: a@b.c}}\n")
    assert not st.name_only and st.steps() == []
    assert st.notify["email"]["to"] == ["a@b.c"]


def test_stage_without_steps_is_a_warning():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: a
                blubberfile: other.yaml
    """)
    (w,) = cfg.warnings
    assert w.severity == "warning" and "has no steps" in w.message and w.line == 5


# -- step normalisation ----------------------------------------------------------------------


def test_build_string_and_mapping():
    assert stage("      - name: s\n        build: production\n").build == {
        "variant": "production", "context": ".", "imagePullPolicy": "always"}
    st = stage("      - name: s\n        build: {context: src, excludes: [.git], imagePullPolicy: never}\n")
    assert st.build == {"variant": "${.stage}", "context": "src", "imagePullPolicy": "never",
                        "excludes": [".git"]}
    assert st.steps() == ["build"]


def test_elvis_defaults_replace_falsy_values():
    st = stage("""      - name: s
        build: {variant: '', context: ''}
        run: {image: '', tail: 0, arguments: [], env: {}}
        copy: [{source: /out, destination: '', from: ''}]
        publish: {image: {id: '', name: '', tag: ''}}
        promote: [{chart: '', version: ''}]
        deploy: {chart: {name: '', version: ''}, image: '', tag: '', timeout: 0, test: false}
""")
    assert st.build["variant"] == "${.stage}" and st.build["context"] == "."
    assert st.run["image"] == "${.imageID}" and st.run["tail"] == 0
    assert st.copy == [{"from": "${.container}", "source": "/out", "destination": "/out", "archive": False}]
    assert st.publish["image"] == {"id": "${.imageID}", "name": "${setup.project}",
                                   "tag": "${setup.timestamp}-${.stage}", "tags": ["${setup.tag}"]}
    assert st.promote == [{"chart": "${setup.projectShortName}", "environments": [],
                           "version": "${.imageTag}"}]
    assert st.deploy == {"chart": {"name": "${setup.projectShortName}", "version": ""},
                         "image": "${.imageName}", "tag": "${.imageTag}", "cluster": "ci",
                         "test": False,  # only null becomes true
                         "timeout": None, "overrides": {}}


def test_run_true_false_and_empty():
    assert stage("      - name: s\n        build: x\n        run: true\n").run["image"] == "${.imageID}"
    st = stage("      - name: s\n        build: x\n        run: false\n")
    assert st.run is None and st.steps() == ["build"]


def test_empty_step_values_count_as_absent_with_a_warning():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                run: {}
                publish: {image: {}}
    """)
    st = cfg.pipelines["p"].stages["s"]
    assert st.run is None and st.publish is None
    messages = [w.message for w in cfg.warnings]
    assert any("`run` is empty" in m for m in messages)
    assert any("`image: {}` is empty" in m for m in messages)


def test_copy_string_items():
    st = stage("      - name: s\n        build: x\n        run: true\n"
               "        copy: [/srv/out/, {source: /a, archive: true}]\n")
    assert st.copy == [
        {"from": "${.container}", "source": "/srv/out/", "destination": "/srv/out/", "archive": False},
        {"from": "${.container}", "source": "/a", "destination": "/a", "archive": True},
    ]


def test_tags_default_and_explicit_empty_list():
    st = stage("      - name: s\n        build: x\n        publish: {image: true}\n")
    assert st.publish["image"]["tags"] == ["${setup.tag}"]
    # chute: an explicit empty list means "no extra tags" (PipelineLib fell back to the default)
    st = stage("      - name: s\n        build: x\n        publish: {image: {tags: []}}\n")
    assert st.publish["image"]["tags"] == []
    st = stage("      - name: s\n        build: x\n"
               "        publish: {image: {tags: [latest, '${setup.tag}']}}\n")
    assert st.publish["image"]["tags"] == ["latest", "${setup.tag}"]


def test_promote_true_and_version_are_accepted():
    st = stage("      - name: s\n        build: x\n        publish: {image: true}\n        promote: true\n")
    assert st.promote == [{"chart": "${setup.projectShortName}", "environments": [],
                           "version": "${.imageTag}"}]
    st = stage("      - name: s\n        build: x\n        publish: {image: true}\n"
               "        promote: [{chart: c, environments: [eqiad], version: '1.2'}]\n")
    assert st.promote == [{"chart": "c", "environments": ["eqiad"], "version": "1.2"}]


def test_trigger_and_exports():
    st = stage("      - name: s\n        exports: {v: '${setup.commit}'}\n"
               "        trigger: {name: job, parameters: {A: 1}}\n")
    assert st.trigger == {"name": "job", "parameters": {"A": "1"}, "propagate": True, "wait": False}
    assert st.exports == {"v": "${setup.commit}"}
    assert st.exported_names() == ("stage", "v")


def test_loose_scalars_read_as_written():
    st = stage("      - name: s\n        build: x\n"
               "        run: {env: {FLAG: 1, OTHER: yes, F: 1.10}, arguments: [1]}\n")
    assert st.run["env"] == {"FLAG": "1", "OTHER": "yes", "F": "1.10"}
    assert st.run["arguments"] == ["1"]


def test_step_order_is_fixed_whatever_the_yaml_order():
    st = stage("""      - name: s
        trigger: {name: j}
        exports: {a: b}
        deploy: {chart: {name: c}}
        promote: true
        publish: {image: true}
        copy: [/x]
        run: true
        build: v
""")
    assert st.steps() == ["build", "run", "copy", "publish", "promote", "deploy", "exports", "trigger"]


# -- notify ------------------------------------------------------------------------------------


def test_pipeline_notify_applies_to_every_stage_with_defaults():
    cfg = load_text("""
        pipelines:
          p:
            notify: {email: {to: team@example.org, subject: custom}}
            stages:
              - name: a
              - name: b
                build: x
                notify: {email: {body: stage body}}
    """)
    a, b = cfg.pipelines["p"].stages.values()
    assert cfg.pipelines["p"].notify == {"email": {"to": ["team@example.org"], "subject": "custom"}}
    assert a.notify["email"]["to"] == ["team@example.org"] and a.notify["email"]["subject"] == "custom"
    assert "${.stage}" in a.notify["email"]["body"]
    # the stage's own values win, the pipeline's custom subject survives (PipelineLib bug #3)
    assert b.notify == {"email": {"to": ["team@example.org"], "subject": "custom", "body": "stage body"}}
    assert a.name_only  # a pipeline-level notify does not change the name-only rule


def test_notify_without_recipients_is_an_error():
    (e,) = errors_of("""
        pipelines:
          p:
            notify: {email: {subject: s}}
            stages: [{name: a}, {name: b}]
    """)
    assert "no recipients" in e.message and e.path == "pipelines.p.notify"


# -- pipeline level ----------------------------------------------------------------------------


def test_pipeline_defaults():
    cfg = load_text("pipelines:\n  test:\n    stages: [{name: a}, {name: b}]\n")
    p = cfg.pipelines["test"]
    assert p.blubberfile == "test/blubber.yaml" and p.blubberfile_fallback is None
    assert p.directory == "." and p.fetch == Fetch(True, 20, True, False)
    assert p.execution == [["a", "b"]] and p.notify is None and p.helm_config is None
    assert list(p.stages) == ["a", "b"]


def test_pipeline_settings():
    cfg = load_text("""
        pipelines:
          p:
            blubberfile: {version: v4, variants: {a: {}}}
            directory: src/svc/
            fetch: {shallow: false, depth: 50, tags: true}
            helmConfig: p/helm.yaml
            execution: []
            stages: [{name: a}]
    """)
    p = cfg.pipelines["p"]
    assert p.blubberfile == {"version": "v4", "variants": {"a": {}}}
    assert p.directory == "src/svc/" and p.fetch == Fetch(False, 50, True, True)
    assert p.helm_config == "p/helm.yaml" and p.execution == [["a"]]  # [] is falsy: the default


def test_empty_stages_is_a_valid_placeholder():
    p = load_text("pipelines:\n  p:\n    stages: []\n").pipelines["p"]
    assert p.stages == {} and p.execution == [] and p.graph.topological_order() == []


def test_top_level_extras_environments_and_ignored_keys():
    cfg = load_text("""
        version: 2
        x-anchors: &a {name: t}
        environments: {staging: {target: podman}}
        pipelines: {test: {stages: [*a]}}
    """)
    assert cfg.environments_raw == {"staging": {"target": "podman"}}
    assert cfg.warnings == [] and list(cfg.pipelines) == ["test"]


def test_pipelines_order_is_file_order():
    cfg = load_text("pipelines:\n  z: {stages: []}\n  a: {stages: []}\n  m: {stages: []}\n")
    assert list(cfg.pipelines) == ["z", "a", "m"]


# -- errors ------------------------------------------------------------------------------------


def test_near_miss_of_pipelines_gets_did_you_mean():
    (e,) = errors_of("pipeline:\n  test:\n    stages: [{name: t}]\n", "wikifeeds.yaml")
    assert (e.source, e.line, e.column) == ("wikifeeds.yaml", 1, 1)
    assert "did you mean `pipelines`" in e.message


def test_missing_pipelines():
    (e,) = errors_of("other: 1\n")
    assert e.message == "the config has no `pipelines`"
    (e,) = errors_of("- a\n- b\n")
    assert "must be a mapping" in e.message


def test_unknown_stage_key_with_position_path_and_hint():
    (e,) = errors_of("""
        pipelines:
          test:
            stages:
              - name: a
                buidl: x
    """)
    assert (e.line, e.column) == (6, 9)
    assert e.path == "pipelines.test.stages[0].buidl"
    assert "did you mean `build`" in e.hint
    assert str(e).startswith("config.yaml:6:9: error: pipelines.test.stages[0].buidl: unknown key")


def test_nameless_and_reserved_and_duplicate_stages():
    errs = errors_of("""
        pipelines:
          test:
            stages:
              - build: x
              - name: setup
              - name: teardown
              - name: a
              - name: a
                build: y
    """)
    msgs = [(e.line, e.message) for e in errs]
    assert (5, "this stage has no `name`") in msgs
    assert (6, "setup is a reserved stage name") in msgs
    assert (7, "teardown is a reserved stage name") in msgs
    dup = [e for e in errs if "defined twice" in e.message]
    assert dup and dup[0].line == 9 and "first at line 8" in dup[0].message


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as ei:
        parse_pipeline_config("""
pipelines:
  a:
    stages:
      - name: x
        run: {tail: many}
  b:
    fetch: {depth: -1}
    stages:
      - name: y
        publish: {image: {tags: latest}}
      - name: z
        deploy: {chart: https://example.org/chart.tgz}
""", "c.yaml")
    err = ei.value
    assert err.exit_code == EXIT_INVALID
    assert [(p.line, p.path) for p in err.problems if p.severity == "error"] == [
        (6, "pipelines.a.stages[0].run.tail"),
        (8, "pipelines.b.fetch.depth"),
        (11, "pipelines.b.stages[0].publish.image.tags"),
        (13, "pipelines.b.stages[1].deploy.chart"),
    ]
    assert "write `[latest]`" in err.problems[2].hint
    assert err.format().startswith("c.yaml: 4 errors in the pipeline config\nc.yaml:6:")


def test_kartotherian_legacy_publish_type():
    errs = errors_of("""
        pipelines:
          kartotherian:
            stages:
              - name: production-kartotherian
                publish:
                  type: image
                  tags: [kartotherian]
    """)
    assert [(e.line, e.column, e.path) for e in errs] == [
        (7, 11, "pipelines.kartotherian.stages[0].publish.type"),
        (8, 11, "pipelines.kartotherian.stages[0].publish.tags"),
    ]
    assert "publish: {image: {tags: […]}}" in errs[0].hint


def test_yaml_errors_exit_2():
    with pytest.raises(ConfigError) as ei:
        parse_pipeline_config("pipelines:\n  p:\n    stages:\n      - name: a\n        publish:\n"
                              "          image: true\n            tags: [stable]\n", "l.yaml")
    assert ei.value.exit_code == EXIT_READ
    p = ei.value.problems[0]
    assert (p.line, p.column) == (7, 17)
    assert "`tags` is indented under `image: true` (line 6)" in p.hint


def test_type_errors_name_what_is_expected():
    cases = {
        "build: true": "`build` takes a variant name or a mapping",
        "run: yes please": "`run` takes true/false or a mapping",
        "copy: /x": "`copy` must be a list",
        "publish: true": "`publish` must be a mapping",
        "promote: chart": "`promote` takes true or a list",
        "deploy: [a]": "`deploy` must be a mapping",
        "exports: [a]": "`exports` must be a mapping",
        "trigger: {parameters: {}}": "`trigger` has no job `name`",
        "notify: {email: yes}": "`notify.email` must be a mapping",
        "blubberfile: 3": "`blubberfile` must be a path",
        "run: {credentials: [{id: X}]}": "this credential has no `name`",
        "copy: [{destination: x}]": "this `copy` item has no `source`",
    }
    for line, expected in cases.items():
        errs = errors_of(f"pipelines:\n  p:\n    stages:\n      - name: s\n        {line}\n")
        assert any(expected in e.message for e in errs), (line, [e.message for e in errs])
        assert all(e.line == 5 for e in errs), line


def test_execution_must_be_a_list_of_lists():
    (e,) = errors_of("pipelines:\n  p:\n    execution: [a, b]\n    stages: [{name: a}, {name: b}]\n")
    assert e.message == "`execution` graph must be a list of lists (graph branches)"
    assert "[[a, b]]" in e.hint


def test_paths_outside_the_repository_are_rejected():
    errs = errors_of("""
        pipelines:
          p:
            directory: ../elsewhere
            blubberfile: ../../etc/blubber.yaml
            stages: [{name: a}]
    """)
    assert ["outside the repository" in e.message for e in errs] == [True, True]
    # ../ from .pipeline is still inside the repository
    load_text("pipelines:\n  p:\n    blubberfile: ../blubber.yaml\n    stages: [{name: a}]\n")


def test_credentials_and_copy_expressions():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                run:
                  credentials: {$each: c, $in: 'A B', $delimiter: ' ', $yield: {id: '${.c}', name: '${.c}'}}
    """)
    assert "`$each` and `$merge` are not supported here" in e.message
    # copy and promote as whole-list expressions load (and are filled in by resolve_step)
    st = stage("      - name: s\n        build: x\n        run: true\n        publish: {image: true}\n"
               "        copy: {$each: f, $in: 'a b', $delimiter: ' ', $yield: '/out/${.f}'}\n"
               "        promote: {$merge: [{chart: a}], $with: [{chart: b}]}\n")
    assert st.copy["$each"] == "f" and st.promote["$merge"] == [{"chart": "a"}]


def test_malformed_expressions_are_located():
    errs = errors_of("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                run:
                  arguments: {$each: v, $yield: x}
                exports:
                  a: {$merge: [1], $with: [2], extra: 3}
                  b: {$each: 5, $in: x}
    """)
    got = {(e.line, e.message.split(":")[0]) for e in errs}
    assert (8, "`$each` needs `$in`") in got
    assert (10, "unknown key `extra` in a `$merge` expression") in got
    assert (11, "`$each` must be a variable name or a list of names") in got


def test_lexer_errors_are_located_at_the_column():
    errs = errors_of("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                run:
                  env:
                    A: ok ${VAR:-x}
                  arguments: ['${.stage', '${}']
    """)
    assert [(e.line, e.column, e.path) for e in errs] == [
        (9, 19, "pipelines.p.stages[0].run.env.A"),  # plain scalar: the column of the ${
        (10, 23, "pipelines.p.stages[0].run.arguments[0]"),  # quoted: the start of the scalar
        (10, 35, "pipelines.p.stages[0].run.arguments[1]"),
    ]
    assert errs[0].message == "invalid variable expression (invalid character following name): ${VAR:-x}"
    assert "missing the end delimiter" in errs[1].message
    assert "name is missing" in errs[2].message


def test_fields_that_are_not_interpolated_are_not_lexed():
    st = stage("      - name: s\n        trigger: {name: 'job-${x'}\n"
               "        build: x\n        run: {credentials: [{id: '${VAR:-1}', name: N}]}\n")
    assert st.trigger["name"] == "job-${x" and st.run["credentials"][0]["id"] == "${VAR:-1}"


def test_problems_render_with_hint():
    (e,) = problems_of("pipelines:\n  p:\n    stages:\n      - test\n")
    assert str(e) == ("config.yaml:4:9: error: pipelines.p.stages[0]: a stage must be a mapping with a "
                      "`name`, got a string\n"
                      "    hint: write `- name: test` to build and run the variant `test`")


def test_unknown_pipeline_keys_are_warnings():
    cfg = load_text("pipelines:\n  p:\n    exectuion: [[a]]\n    stages: [{name: a}]\n")
    (w,) = cfg.warnings
    assert w.message == "unknown key `exectuion` in pipeline `p` is ignored"
    assert w.hint.startswith("did you mean `execution`?") and (w.line, w.column) == (3, 5)
