"""``.pipeline/config.yaml``: PipelineLib v0 pipelines, checked, normalised and planned.

Loading
    :func:`load_pipeline_config` (a file) and :func:`parse_pipeline_config` (text) return a
    :class:`PipelineConfig` or raise :class:`chute.config.ConfigError` carrying *every* problem
    with ``file:line:column``, the field path (``pipelines.test.stages[2].publish.image.tag``)
    and a hint; exit code 2 for unreadable/invalid YAML, 4 for an invalid config. A loaded
    config is fully checked: structure (the v0 schema), the execution graph (unknown names,
    unreachable stages, cycles) and every statically visible ``${stage.key}`` reference.
    Non-fatal findings are in ``PipelineConfig.warnings``.

Model
    ``PipelineConfig.pipelines``: ``{name: Pipeline}`` in file order; ``.document`` (marks for
    positions); ``.environments_raw`` (chute's top-level ``environments``, raw, for the deploy
    package). Unknown top-level keys are ignored, except near-misses of ``pipelines``.

    :class:`Pipeline`: ``name``, ``directory``, ``blubberfile`` (path under ``.pipeline/`` or
    inline mapping; default ``<name>/blubber.yaml``), ``fetch`` (:class:`Fetch`), ``notify``,
    ``stages`` (``{name: Stage}`` in file order), ``execution`` (arcs), ``graph``
    (:class:`Graph`), ``helm_config`` and ``shorthand``/``blubberfile_fallback`` (2019 form).

    :class:`Stage`: ``name`` and the normalised, un-interpolated step configs ``build``,
    ``run``, ``copy``, ``publish``, ``promote``, ``deploy``, ``exports``, ``trigger``,
    ``notify`` (None when absent) plus ``blubberfile`` (the stage's own override).
    ``steps()`` lists the names of the present steps in the fixed order build, run, copy,
    publish, promote, deploy, exports, trigger (``notify`` runs only when a step fails);
    ``step(name)`` returns one config. ``exported_names()`` lists what the stage binds.

    :class:`Graph`: ``nodes``, ``edges``, ``predecessors(s)``, ``successors(s)``,
    ``ancestors(s)``, ``descendants(s)``, ``roots()``, ``leaves()``,
    ``topological_order()``, ``frames()`` (PipelineLib's level-by-level schedule),
    ``find_cycle()``; :class:`CycleError` names the cycle.

Running (for the runner)
    1. ``plan = make_plan(config, pipelines=None, stage=None, repo_root=None)``: selected
       pipelines in file order (:class:`PipelinePlan`: ``stages`` in topological order,
       ``graph``, ``blubberfile_for(stage)``, ``frames()``); ``stage`` keeps that stage and its
       ancestors. Unknown names raise ``ConfigError`` (exit 1).
    2. ``ctx = Context(plan_pipeline.graph, setup_bindings(project, commit, branch, tag,
       timestamp, pipeline, change=None, patchset=None, params=None, remote=None, *,
       log_url=None, http_proxy=None))``. ``params`` are the run parameters
       (``${setup.params.NAME}``; also what a dot-less ``${NAME}`` in ``run.env``/``run.arguments``
       resolves to). Pass ``http_proxy`` when builds go through a proxy: Blubber files use
       ``${setup.httpProxy}`` for ``apt.proxies``.
    3. Per stage (``stage.name`` is its namespace): ``ctx.bind(stage.name, "stage", stage.name)``;
       then per ``step`` in ``stage.steps()``: ``cfg = resolve_step(stage, step, ctx,
       source=config.source)`` (interpolated, defaults filled, types checked; raises
       :class:`PipelineRuntimeError`, a ``ConfigError`` naming stage, field and the available
       variables), run it, and bind what it produced with ``ctx.bind(stage.name, key, value)``
       for each key of ``step_exports(step)`` (build: imageID without ``sha256:``,
       imageLocalName; run: container, output; copy: artifactURLs; deploy: releaseName; publish:
       ``publish_exports(check_image_name(name, project), publish_tags(tag, tags), registry)``;
       exports: every key ``resolve_step`` returned). For ``copy`` destinations use
       ``sanitise_copy_destination``. The Blubber config for ``build`` is
       ``interpolate(plan_pipeline.blubberfile_for(stage.name), ctx, stage.name,
       field="blubberfile")`` (a path relative to ``.pipeline/`` or an inline mapping). When a
       step fails and ``stage.notify`` is set, ``resolve_step(stage, "notify", ctx)``.
       ``ctx.all_values("imageID")`` etc. list what teardown removes.
    Helpers: ``sanitise_name``, ``sanitise_tag``, ``allowed_image_names``,
    ``sanitise_copy_destination``, ``timestamp_label``, ``interpolate``, ``tokenize``.

Checking
    :func:`lint_pipeline_config` (``check_blubber`` loads the Blubber files with
    :mod:`chute.blubber` and checks literal variants), :func:`lint_command` (the body of
    ``chute lint [CONFIG] [--no-blubber] [--expand]``), :func:`expand_config` (the canonical
    form), :func:`check_allowed_actions` (spec §2.7; ``UNTRUSTED_ACTIONS``,
    ``PRIVILEGED_ACTIONS``).
"""

from __future__ import annotations

import re

from chute.config import EXIT_READ, ConfigError, Problem, load_file, load_yaml

from .expressions import (
    SETUP,
    TEARDOWN,
    Context,
    ExpressionSyntaxError,
    Literal,
    PipelineRuntimeError,
    Variable,
    interpolate,
    is_falsy,
    merge_values,
    split_items,
    tokenize,
    variables,
)
from .graph import CycleError, Graph
from .lint import (
    ALL_ACTIONS,
    PRIVILEGED_ACTIONS,
    UNTRUSTED_ACTIONS,
    check_allowed_actions,
    lint_command,
    lint_pipeline_config,
)
from .plan import (
    PipelinePlan,
    Plan,
    allowed_image_names,
    check_image_name,
    expand_config,
    exported_names,
    make_plan,
    publish_exports,
    publish_tags,
    resolve_blubberfile,
    resolve_step,
    sanitise_copy_destination,
    sanitise_name,
    sanitise_tag,
    setup_bindings,
    step_exports,
    timestamp_label,
)
from .schema import (
    STEP_EXPORTS,
    STEP_ORDER,
    Fetch,
    Pipeline,
    PipelineConfig,
    Stage,
    check_document,
)

_KEY_WITH_SCALAR = re.compile(r"^(\s*)(?:-\s+)?([^\s:#][^:#]*):\s+([^\s#{\[&*|>][^#]*?)\s*(?:#.*)?$")


def _explain_yaml_error(err: ConfigError, text: str | bytes) -> ConfigError:
    """Name the usual cause of "mapping values are not allowed here": a key indented under a
    key that already has a value on its own line (``image: true`` then ``  tags: […]``)."""
    if err.exit_code != EXIT_READ or not err.problems:
        return err
    p = err.problems[0]
    if "mapping values are not allowed" not in p.message or p.line is None:
        return err
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = text.split("\n")
    row = p.line - 1
    prev = row - 1
    while prev >= 0 and (not lines[prev].strip() or lines[prev].lstrip().startswith("#")):
        prev -= 1
    if prev < 0 or row >= len(lines):
        return err
    m = _KEY_WITH_SCALAR.match(lines[prev])
    indent = len(lines[row]) - len(lines[row].lstrip())
    if m is None or indent <= len(m.group(1)):
        return err
    key, value = m.group(2).strip(), m.group(3).strip()
    child = lines[row].strip().split(":", 1)[0]
    hint = (f"`{child}` is indented under `{key}: {value}` (line {prev + 1}), which already has a "
            f"value; give `{key}` a mapping instead (e.g. `{key}: {{{child}: …}}`) or unindent "
            f"`{child}`")
    fixed = Problem(p.message, p.path, p.source, p.line, p.column, hint, p.severity)
    return ConfigError([fixed, *err.problems[1:]], err.exit_code, err.summary)


def parse_pipeline_config(text: str | bytes, source: str = "<input>") -> PipelineConfig:
    """Load a pipeline config from text; ``source`` names it in error messages.

    Raises :class:`chute.config.ConfigError` with every problem (exit 2 for YAML, 4 otherwise).
    """
    try:
        doc = load_yaml(text, source)
    except ConfigError as err:
        raise _explain_yaml_error(err, text) from None
    return check_document(doc)


def load_pipeline_config(path: str) -> PipelineConfig:
    """Load ``path`` (usually ``.pipeline/config.yaml``); see :func:`parse_pipeline_config`."""
    try:
        doc = load_file(path)
    except ConfigError as err:
        if err.exit_code == EXIT_READ and err.problems and err.problems[0].line is not None:
            try:
                with open(path, "rb") as fh:
                    raise _explain_yaml_error(err, fh.read()) from None
            except OSError:
                pass
        raise
    return check_document(doc)


__all__ = [
    "ALL_ACTIONS",
    "PRIVILEGED_ACTIONS",
    "SETUP",
    "STEP_EXPORTS",
    "STEP_ORDER",
    "TEARDOWN",
    "UNTRUSTED_ACTIONS",
    "Context",
    "CycleError",
    "ExpressionSyntaxError",
    "Fetch",
    "Graph",
    "Literal",
    "Pipeline",
    "PipelineConfig",
    "PipelinePlan",
    "PipelineRuntimeError",
    "Plan",
    "Stage",
    "Variable",
    "allowed_image_names",
    "check_allowed_actions",
    "check_image_name",
    "expand_config",
    "exported_names",
    "interpolate",
    "is_falsy",
    "lint_command",
    "lint_pipeline_config",
    "load_pipeline_config",
    "make_plan",
    "merge_values",
    "parse_pipeline_config",
    "publish_exports",
    "publish_tags",
    "resolve_blubberfile",
    "resolve_step",
    "sanitise_copy_destination",
    "sanitise_name",
    "sanitise_tag",
    "setup_bindings",
    "split_items",
    "step_exports",
    "timestamp_label",
    "tokenize",
    "variables",
]
