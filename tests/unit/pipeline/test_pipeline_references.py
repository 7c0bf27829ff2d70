"""Static checks of ${stage.key} references: caught at load time, with positions."""

from __future__ import annotations

from pipeline_helpers import errors_of, load_text

TERMBOX = """\
pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: production
        publish:
          image:
            id: '${candidate.imageID}'
            tags: [stable]
"""


def test_termbox_reference_to_a_stage_of_no_pipeline():
    (e,) = errors_of(TERMBOX, "termbox.yaml")
    assert (e.source, e.line, e.column) == ("termbox.yaml", 12, 17)
    assert e.path == "pipelines.publish.stages[0].publish.image.id"
    assert e.message == "`${candidate.imageID}`: pipeline `publish` has no stage `candidate`"
    assert "visible only inside their own pipeline" in e.hint


def test_parallel_branch_is_not_an_ancestor():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: a
                build: x
              - name: b
                build: y
              - name: c
                run: {image: '${b.imageID}'}
            execution: [[a, c], [b]]
    """)
    assert e.message == "`${b.imageID}`: stage `b` does not run before `c` in the execution graph"
    assert "[b, c]" in e.hint and e.line == 10


def test_missing_key_of_an_ancestor():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: candidate
                build: production
              - name: rehearsal
                deploy: {chart: {name: x}, image: '${candidate.imageName}', tag: '${candidate.imageTgs|x}'}
    """)
    # imageName needs a publish in candidate; the one with a default is fine
    assert e.message == "`${candidate.imageName}`: stage `candidate` binds no `imageName`"
    assert "stage, imageID, imageLocalName" in e.hint


def test_dot_image_id_without_build_and_default_values():
    errs = errors_of("""
        pipelines:
          p:
            stages:
              - name: built
                build: x
              - name: t
                run: true
    """)
    (e,) = errs
    assert e.message == ("`${.imageID}` is not bound when `run` runs in stage `t` "
                         "(the default of `run.image`)")
    assert "this stage has no `build`" in e.hint and "${built.imageID}" in e.hint
    assert (e.line, e.path) == (8, "pipelines.p.stages[1].run.image")


def test_copy_from_default_needs_a_run():
    (e,) = errors_of("pipelines:\n  p:\n    stages:\n      - name: s\n        build: x\n"
                     "        copy: [/out]\n")
    assert "`${.container}` is not bound when `copy` runs" in e.message
    assert "copy[0].from" in e.message


def test_values_bound_later_in_the_same_stage_are_not_visible():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: s
                build: {variant: 'v-${.imageTag}'}
                publish: {image: true}
                exports: {tag: '${.imageTag}', rel: '${.releaseName|none}'}
    """)
    assert e.message == "`${.imageTag}` is not bound when `build` runs in stage `s`"
    assert e.column == 26  # the quoted scalar


def test_exports_can_be_read_downstream_and_after_exports():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: a
                exports: {version: '1.0', '${setup.pipeline}-dyn': x}
                trigger: {name: j, parameters: {V: '${.version}'}}
              - name: b
                exports: {v: '${a.version}', w: '${a.anything}'}
    """)
    assert cfg.pipelines["p"].stages["a"].dynamic_exports  # so a.anything may exist
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: a
                exports: {x: '1', y: '${.x}'}
    """)
    assert "reads an export of the same stage" in e.message


def test_exports_cannot_rebind_step_values():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: a
                build: x
                exports: {imageID: other}
    """)
    assert "would overwrite the `imageID`" in e.message and (e.line, e.column) == (7, 19)


def test_setup_names():
    errs = errors_of("""
        pipelines:
          p:
            stages:
              - name: a
                build: x
                run:
                  env:
                    A: '${setup.projectShortname}'
                    B: '${setup.ZUUL_BRANCH}'
                    C: '${setup.params.ANYTHING} ${setup.httpProxy} ${setup.GIT_COMMIT} ${setup.nope|d}'
    """)
    assert [e.message for e in errs] == ["`${setup.projectShortname}`: setup binds no `projectShortname`",
                                         "`${setup.ZUUL_BRANCH}`: setup binds no `ZUUL_BRANCH`"]
    assert "did you mean `${setup.projectShortName}`?" in errs[0].hint
    assert "${setup.params.ZUUL_BRANCH}" in errs[1].hint


def test_self_reference_by_name_and_inside_each():
    (e,) = errors_of("pipelines:\n  p:\n    stages:\n      - name: a\n        exports: {x: '${a.stage}'}\n")
    assert "cannot refer to its own values by name" in e.message and "${.stage}" in e.hint
    load_text("""
        pipelines:
          p:
            stages:
              - name: a
                build: x
                run: {tail: 3}
                exports:
                  lines: {$each: l, $in: '${.output}', $yield: '${a.stage}: ${.l} ${l}'}
    """)


def test_each_variables_are_known_inside_yield_only():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: a
                exports:
                  xs: {$each: v, $in: '1 2', $delimiter: ' ', $yield: '${.v}'}
                  ys: '${.v}'
    """)
    assert e.path == "pipelines.p.stages[0].exports.ys"


def test_dotless_names_pass_through_with_a_warning_outside_run():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                run:
                  env: {BRANCH: '${ZUUL_BRANCH}'}
                publish:
                  image: {tag: '${setup.timestamp}-${ZUUL_BRANCH}-${stage}'}
    """)
    (w,) = cfg.warnings
    assert w.severity == "warning" and w.path == "pipelines.p.stages[0].publish.image.tag"
    assert "`${ZUUL_BRANCH}` is not a pipeline variable" in w.message


def test_inline_blubberfile_references_are_checked_per_building_stage():
    errs = errors_of("""
        pipelines:
          p:
            blubberfile:
              version: v4
              variants:
                x: {base: '${base.imageLocalName}'}
            stages:
              - name: base
                build: b
              - name: other
                build: o
              - name: x
            execution: [[base, x], [other]]
    """)
    # every building stage interpolates the pipeline's config: `base` would read itself by name
    # and `other` does not follow `base`
    assert [e.message for e in errs] == [
        "`${base.imageLocalName}`: a stage cannot refer to its own values by name",
        "`${base.imageLocalName}`: stage `base` does not run before `other` in the execution graph",
    ]
    assert {e.path for e in errs} == {"pipelines.p.blubberfile.variants.x.base"}


def test_shell_variables_in_an_inline_blubberfile_are_left_to_the_build():
    cfg = load_text("""
        pipelines:
          p:
            stages:
              - name: s
                build: x
                blubberfile:
                  version: v4
                  variants:
                    x: {builder: {command: [sh, -c, 'echo ${HOME} ${setup.commit}']}}
    """)
    assert cfg.warnings == []


def test_defaults_of_items_made_by_expressions_are_checked():
    (e,) = errors_of("""
        pipelines:
          p:
            stages:
              - name: a
                promote: {$merge: [{chart: m}], $with: [{chart: n, version: '1'}]}
                copy: {$each: f, $in: 'x y', $delimiter: ' ', $yield: {from: ctr, source: '${.f}'}}
    """)
    # promote's first item has no version: it defaults to ${.imageTag}, which `a` never binds;
    # every copy item names its container, so the ${.container} default is never used
    assert e.message == "`${.imageTag}` is not bound when `promote` runs in stage `a` " \
                        "(the default of `promote.*.version`)"
    assert e.line == 6
