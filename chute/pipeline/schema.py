"""Models of ``.pipeline/config.yaml`` (PipelineLib v0 plus chute's additions) and their checks.

Loading runs three passes and reports every problem at once (:class:`ConfigError`, exit 4):

1. **Structure** (the v0 JSON schema, with located messages): types, unknown keys, required
   keys. Each step is normalised as it is checked (spec §2.5: the name-only shorthand and the
   Elvis ``?:`` defaults, where a falsy value counts as missing).
2. **Graph**: duplicate and reserved stage names, ``execution`` names without a stage, stages no
   arc reaches, cycles. PipelineLib says nothing about the first three; chute rejects them.
3. **References**: every interpolated string is lexed, and each ``${stage.key}`` whose parts are
   literal is checked: the stage exists, is an ancestor, binds that key before the step that
   reads it (``${.imageID}`` in a stage without ``build`` is an error here, not at run time).

Step configs stay plain data (``dict``/``list``) with canonical keys, still un-interpolated;
:func:`chute.pipeline.plan.resolve_step` interpolates one for the runner.
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from chute.config import EXIT_INVALID, ConfigError, Document, Problem, format_path

from .expressions import (
    EACH_KEYS,
    MERGE_KEYS,
    NAME_CHARS,
    SETUP,
    TEARDOWN,
    VAR_START,
    ExpressionSyntaxError,
    Variable,
    is_expression,
    is_falsy,
    tokenize,
)
from .graph import Graph

Path = tuple[str | int, ...]

# The fixed order of steps inside a stage (notify runs only when a step fails).
STEP_ORDER = ("build", "run", "copy", "publish", "promote", "deploy", "exports", "trigger")
ACTIONS = (*STEP_ORDER, "notify")
STAGE_KEYS = ("name", "blubberfile", *STEP_ORDER, "notify")
PIPELINE_KEYS = ("stages", "execution", "blubberfile", "directory", "fetch", "notify", "helmConfig")
TOP_LEVEL_KEYS = ("pipelines", "environments")
RESERVED_STAGE_NAMES = (SETUP, TEARDOWN)

# What each step binds in the stage's namespace (spec §3.3); every stage also binds ``stage``.
STEP_EXPORTS: dict[str, tuple[str, ...]] = {
    "build": ("imageID", "imageLocalName"),
    "run": ("container", "output"),
    "copy": ("artifactURLs",),
    "publish": ("imageName", "imageFullName", "imageTag", "imageTags", "publishedImage"),
    "deploy": ("releaseName",),
}

# ``${setup.*}`` names chute binds (see setup_bindings); the conditional ones may be missing.
SETUP_KEYS = ("stage", "pipeline", "project", "projectShortName", "commit", "branch", "remote", "tag",
              "timestamp", "imageLabels", "logURL", "GIT_COMMIT", "GIT_BRANCH", "GIT_URL")
SETUP_CONDITIONAL_KEYS = ("change", "patchset", "httpProxy")

DEFAULT_NOTIFY_SUBJECT = "[Pipeline] ${setup.projectShortName} ${setup.pipeline}/${.stage} failed"
DEFAULT_NOTIFY_BODY = ("Pipeline ${setup.pipeline} for project ${setup.project} failed during stage "
                       "${.stage}.\n${setup.logURL}")

# Fields whose values are used as written (spec §3.5), per step.
RAW_FIELDS: dict[str, frozenset[str]] = {
    "run": frozenset({"credentials", "tail"}),
    "deploy": frozenset({"test", "cluster"}),
    "trigger": frozenset({"name", "propagate", "wait"}),
}


# --------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class Fetch:
    """Git options for the checkout (``fetch``)."""

    shallow: bool = True
    depth: int = 20
    submodules: bool = True
    tags: bool = False


@dataclass(eq=False)
class Stage:
    """One stage, its steps normalised (defaults filled) but not interpolated.

    Step values (``None`` when the stage does not have the step):

    * ``build``: ``{variant, context, imagePullPolicy[, excludes]}``
    * ``run``: ``{image, arguments, env, credentials: [{id, name}], tail}``
    * ``copy``: ``[{from, source, destination, archive}]``, or a ``$each``/``$merge`` mapping
      that :func:`~chute.pipeline.plan.resolve_step` expands and fills
    * ``publish``: ``{image: {id, name, tag, tags}}``
    * ``promote``: ``[{chart, environments, version}]`` or a ``$each``/``$merge`` mapping
    * ``deploy``: ``{chart: {name, version}, image, tag, cluster, test, timeout, overrides}``
    * ``exports``: ``{name: value}`` or a ``$merge`` mapping
    * ``trigger``: ``{name, parameters, propagate, wait}``
    * ``notify``: ``{email: {to: [...], subject, body}}``, the pipeline's ``notify`` merged under
      the stage's own, with defaults; it runs only when a step fails
    * ``blubberfile``: this stage's own override (a path under ``.pipeline/`` or an inline
      mapping), None to use the pipeline's
    """

    name: str
    build: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    copy: list[Any] | dict[str, Any] | None = None
    publish: dict[str, Any] | None = None
    promote: list[Any] | dict[str, Any] | None = None
    deploy: dict[str, Any] | None = None
    exports: dict[str, Any] | None = None
    trigger: dict[str, Any] | None = None
    notify: dict[str, Any] | None = None
    blubberfile: str | dict[str, Any] | None = None
    name_only: bool = False  # written as just ``- name: x`` (build and run variant x)
    path: Path = ()  # where the stage is in the document (for error positions)

    def step(self, name: str) -> Any:
        """The normalised config of step ``name`` (one of ``STEP_ORDER`` or ``notify``)."""
        if name not in ACTIONS:
            raise KeyError(name)
        return getattr(self, name)

    def steps(self) -> list[str]:
        """The names of the present steps in PipelineLib's fixed order (build, run, copy,
        publish, promote, deploy, exports, trigger); ``step(name)`` gives each config. notify
        is not a step: it runs only when a step fails."""
        return [s for s in STEP_ORDER if getattr(self, s) is not None]

    def actions(self) -> list[str]:
        """The present steps plus ``notify`` (what the allowed-actions check looks at)."""
        return [s for s in ACTIONS if getattr(self, s) is not None]

    @property
    def dynamic_exports(self) -> bool:
        """True if ``exports`` has names that are only known at run time."""
        ex = self.exports
        return ex is not None and (is_expression(ex) or any(VAR_START in k for k in ex))

    def exported_names(self) -> tuple[str, ...]:
        """Names this stage binds (``stage``, each step's exports, literal ``exports`` keys)."""
        names = ["stage"]
        for s in STEP_ORDER:
            if getattr(self, s) is not None:
                names.extend(STEP_EXPORTS.get(s, ()))
        if self.exports is not None and not is_expression(self.exports):
            names.extend(k for k in self.exports if VAR_START not in k)
        return tuple(dict.fromkeys(names))

    def bound_before(self, step: str) -> set[str]:
        """Names bound in this stage's namespace when ``step`` starts (``notify``: all)."""
        names = {"stage"}
        for s in STEP_ORDER:
            if s == step:
                return names
            if getattr(self, s) is not None:
                names.update(STEP_EXPORTS.get(s, ()))
        return set(self.exported_names())


@dataclass(eq=False)
class Pipeline:
    """One named pipeline: its stages (in file order) and their execution graph."""

    name: str
    stages: dict[str, Stage]
    graph: Graph
    execution: list[list[str]]  # the arcs (the default is every stage in order, one arc)
    blubberfile: str | dict[str, Any]  # default "<name>/blubber.yaml"
    directory: str = "."
    fetch: Fetch = field(default_factory=Fetch)
    notify: dict[str, Any] | None = None  # pipeline-wide notify as written (``to`` made a list)
    helm_config: str | None = None  # ``helmConfig`` path under .pipeline/ (2019 shorthand)
    shorthand: bool = False  # written in the 2019 ``stages: {test: [...], production: x}`` form
    # The 2019 shorthand's default falls back to this file when ``<name>/blubber.yaml`` does not
    # exist; resolved against a checkout by plan.resolve_blubberfile.
    blubberfile_fallback: str | None = None
    path: Path = ()
    document: Document | None = field(default=None, repr=False)

    def blubberfile_for(self, stage: str) -> str | dict[str, Any]:
        """The Blubber config ``stage`` builds with (its override, else the pipeline's)."""
        own = self.stages[stage].blubberfile
        return own if own is not None else self.blubberfile


@dataclass(eq=False)
class PipelineConfig:
    """A loaded ``.pipeline/config.yaml``."""

    pipelines: dict[str, Pipeline]
    document: Document = field(repr=False)
    environments_raw: Any = None  # chute's top-level ``environments`` (validated by deploy)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.document.source


# --------------------------------------------------------------------------------------------
# Walking the interpolated parts of a step


def walk_strings(value: Any, path: Path, each_vars: frozenset[str] = frozenset()
                 ) -> Iterator[tuple[Path, str, frozenset[str], bool]]:
    """Every string interpolation will read in ``value``: ``(path, text, $each vars, is_key)``."""
    if isinstance(value, str):
        yield path, value, each_vars, False
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_strings(v, (*path, i), each_vars)
    elif isinstance(value, dict):
        if "$each" in value:
            yield from walk_strings(value.get("$in"), (*path, "$in"), each_vars)
            names = value.get("$each")
            names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
            inner = each_vars | {n for n in names if isinstance(n, str)}
            yield from walk_strings(value.get("$yield"), (*path, "$yield"), inner)
        elif "$merge" in value:
            yield from walk_strings(value.get("$merge"), (*path, "$merge"), each_vars)
            yield from walk_strings(value.get("$with"), (*path, "$with"), each_vars)
        else:
            for k, v in value.items():
                if isinstance(k, str):
                    yield (*path, k), k, each_vars, True
                yield from walk_strings(v, (*path, k), each_vars)


def map_interpolated(step: str, config: Any, fn: Callable[[Any, Path], Any]) -> Any:
    """Apply ``fn(value, subpath)`` to the parts of a step config that PipelineLib interpolates
    and keep the rest (``run.credentials``, ``run.tail``, ``copy[].archive``, ``deploy.test``,
    ``deploy.cluster``, ``trigger.name/propagate/wait``, ``trigger.parameters`` keys) as is."""
    if config is None:
        return None
    if step == "copy" and isinstance(config, list):
        out: list[Any] = []
        for i, item in enumerate(config):
            if isinstance(item, dict) and not is_expression(item):
                out.append({k: (v if k == "archive" else fn(v, (i, k))) for k, v in item.items()})
            else:
                out.append(fn(item, (i,)))
        return out
    if step == "trigger" and isinstance(config, dict):
        result = dict(config)
        params = config.get("parameters")
        if isinstance(params, dict):
            result["parameters"] = {k: fn(v, ("parameters", k)) for k, v in params.items()}
        return result
    raw = RAW_FIELDS.get(step)
    if raw and isinstance(config, dict) and not is_expression(config):
        return {k: (v if k in raw else fn(v, (k,))) for k, v in config.items()}
    return fn(config, ())


def step_strings(step: str, config: Any) -> Iterator[tuple[Path, str, frozenset[str], bool]]:
    """The interpolated strings of one step config (see :func:`walk_strings`)."""
    found: list[tuple[Path, str, frozenset[str], bool]] = []

    def collect(value: Any, sub: Path) -> Any:
        found.extend(walk_strings(value, sub))
        return value

    map_interpolated(step, config, collect)
    return iter(found)


# --------------------------------------------------------------------------------------------
# The checker


_BAD = object()  # a value that failed its check (already reported)


def _suggest(word: str, choices: tuple[str, ...] | list[str], cutoff: float = 0.6) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _escapes(path: str) -> bool:
    """True for an absolute path or one that climbs out of the repository."""
    if path.startswith("/"):
        return True
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


# Defaults filled into each item of a ``copy``/``promote`` list after a $each/$merge made it.
ITEM_DEFAULTS: dict[str, dict[str, str]] = {
    "copy": {"from": "${.container}"},
    "promote": {"chart": "${setup.projectShortName}", "version": "${.imageTag}"},
}


def _item_templates(expr: Any) -> Iterator[Any]:
    """What the items of a list expression look like before interpolation (None: unknown)."""
    if isinstance(expr, dict) and "$each" in expr:
        yield expr.get("$yield")
    elif isinstance(expr, dict) and "$merge" in expr:
        for side in (expr.get("$merge"), expr.get("$with")):
            if isinstance(side, list):
                yield from side
            elif is_expression(side):
                yield from _item_templates(side)
            else:
                yield None
    else:
        yield None


class _Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    # -- reporting

    def error(self, path: Path, message: str, hint: str | None = None, *, at_key: bool = False,
              severity: str = "error", offset: int | None = None) -> None:
        problem = self.doc.problem(path, message, hint, at_key=at_key, severity=severity)
        if problem.line is None:  # an empty document has no marks: point at its start
            problem = Problem(message, problem.path, problem.source, 1, 1, hint, severity)
        if offset:
            m = self.doc.marks.get(tuple(path))
            if m is not None and m.raw is not None and "\n" not in m.raw and not at_key:
                problem = Problem(problem.message, problem.path, problem.source, problem.line,
                                  (problem.column or 1) + offset, problem.hint, problem.severity)
        self.problems.append(problem)

    def warn(self, path: Path, message: str, hint: str | None = None, *, at_key: bool = False) -> None:
        self.error(path, message, hint, at_key=at_key, severity="warning")

    def error_count(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    def unknown_keys(self, value: dict[str, Any], path: Path, allowed: tuple[str, ...], what: str,
                     hints: dict[str, str] | None = None, severity: str = "error") -> None:
        for key in value:
            if key in allowed:
                continue
            hint = (hints or {}).get(key)
            if hint is None:
                near = _suggest(str(key), allowed)
                hint = (f"did you mean `{near}`? " if near else "") + f"{what} takes: {', '.join(allowed)}"
            message = f"unknown key `{key}` in {what}" + (" is ignored" if severity == "warning" else "")
            self.error((*path, key), message, hint, at_key=True, severity=severity)

    # -- scalar checks

    def string(self, value: Any, path: Path, *, loose: bool = False, merge: bool = False,
               what: str = "a string") -> Any:
        """A string (or a ``$merge`` when ``merge``); ``loose`` reads numbers and booleans as
        written (env values such as ``1``)."""
        if isinstance(value, str):
            return value
        if merge and isinstance(value, dict) and "$merge" in value:
            return self.expression(value, path, each=False)
        if loose and isinstance(value, int | float | bool):
            m = self.doc.marks.get(tuple(path))
            return m.raw if m is not None and m.raw is not None else str(value)
        if isinstance(value, dict) and "$each" in value:
            self.error(path, f"expected {what}, but `$each` gives a list", "use a plain string here")
            return _BAD
        self.error(path, f"expected {what}, got {_kind(value)}",
                   "quote the value" if isinstance(value, int | float | bool) else
                   "write a single value here" + (" (a list or mapping is not allowed)"
                                                  if isinstance(value, list | dict) else ""))
        return _BAD

    def boolean(self, value: Any, path: Path) -> Any:
        if isinstance(value, bool):
            return value
        self.error(path, f"expected true or false, got {_kind(value)}", "write `true` or `false` (unquoted)")
        return _BAD

    def integer(self, value: Any, path: Path, minimum: int = 0) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        got = f"{_kind(value)}" + (f" ({value!r})" if isinstance(value, int | float | str) else "")
        self.error(path, f"expected a whole number of at least {minimum}, got {got}",
                   "write a plain number such as `10` (unquoted)")
        return _BAD

    def string_list(self, value: Any, path: Path, *, expressions: bool = True, item_merge: bool = False,
                    what: str = "a list of strings") -> Any:
        if isinstance(value, list):
            out = [self.string(v, (*path, i), loose=True, merge=item_merge) for i, v in enumerate(value)]
            return _BAD if _BAD in out else out
        if expressions and is_expression(value):
            return self.expression(value, path)
        self.error(path, f"expected {what}, got {_kind(value)}",
                   f"write `[{value}]`" if isinstance(value, str) else "e.g. `[a, b]`")
        return _BAD

    def expression(self, value: dict[str, Any], path: Path, *, each: bool = True) -> Any:
        """Check a ``$each``/``$merge`` mapping's shape (deeper ones are checked when walked)."""
        if "$each" in value and not each:
            self.error(path, "`$each` gives a list, which is not allowed here",
                       "use `$merge`, or a plain value")
            return _BAD
        return value  # its shape is checked with every other expression in pass 3

    def expression_shape(self, value: dict[str, Any], path: Path) -> bool:
        before = self.error_count()
        if "$each" in value and "$merge" in value:
            self.error(path, "a mapping cannot be both a `$each` and a `$merge` expression",
                       "split it: `$merge: …, $with: {$each: …}`")
            return False
        if "$each" in value:
            self.unknown_keys(value, path, EACH_KEYS, "a `$each` expression")
            names = value["$each"]
            name_list = [names] if isinstance(names, str) else names
            if not isinstance(name_list, list) or not name_list or not all(
                    isinstance(n, str) and n and set(n) <= NAME_CHARS for n in name_list):
                self.error((*path, "$each"), "`$each` must be a variable name or a list of names",
                           "names use letters, digits, '.', '_' and '-', e.g. `$each: version`")
            if "$in" not in value:
                self.error(path, "`$each` needs `$in`: the string or list to iterate over",
                           "e.g. `$in: '${build.output}'`")
            if "$delimiter" in value and not isinstance(value["$delimiter"], str):
                self.error((*path, "$delimiter"), "`$delimiter` must be a string (a set of characters)",
                           "e.g. `$delimiter: '|'`; the default splits on newlines")
        else:
            self.unknown_keys(value, path, MERGE_KEYS, "a `$merge` expression")
            if "$with" not in value:
                self.error(path, "`$merge` needs `$with`: the value to merge into it",
                           "e.g. `{$merge: [a], $with: [b]}`")
        return self.error_count() == before

    # -- top level

    def config(self) -> PipelineConfig:
        doc = self.doc
        data = doc.data
        pipelines: dict[str, Pipeline] = {}
        env = None
        if not isinstance(data, dict):
            self.error((), f"the pipeline config must be a mapping with `pipelines`, got {_kind(data)}",
                       "start the file with `pipelines:`")
            return PipelineConfig(pipelines, doc)
        env = data.get("environments")
        near_misses = [k for k in data if k not in TOP_LEVEL_KEYS and isinstance(k, str)
                       and _suggest(k.lower(), ["pipelines"], 0.75)]
        env_misses = [k for k in data if k not in TOP_LEVEL_KEYS and isinstance(k, str)
                      and _suggest(k.lower(), ["environments"], 0.75)]
        if "pipelines" not in data:
            if near_misses:
                for k in near_misses:
                    self.error((k,), f"unknown top-level key `{k}`: did you mean `pipelines`?",
                               "the pipelines of a config go under `pipelines:`", at_key=True)
            else:
                self.error((), "the config has no `pipelines`",
                           "add `pipelines:` with at least one named pipeline, e.g. `test: {stages: "
                           "[{name: test}]}`")
        else:
            for k in near_misses:
                self.warn((k,), f"top-level key `{k}` is ignored (did you mean `pipelines`?)",
                          "remove it, or merge it into `pipelines`", at_key=True)
            raw = data["pipelines"]
            if not isinstance(raw, dict):
                self.error(("pipelines",), f"`pipelines` must be a mapping of pipeline names to "
                           f"pipelines, got {_kind(raw)}",
                           "e.g. `pipelines: {test: {stages: [{name: test}]}}`")
            else:
                if not raw:
                    self.warn(("pipelines",), "`pipelines` is empty, so there is nothing to run",
                              "add a pipeline, e.g. `test: {stages: [{name: test}]}`")
                for name, value in raw.items():
                    p = self.pipeline(str(name), value, ("pipelines", name))
                    if p is not None:
                        pipelines[str(name)] = p
        for k in env_misses:
            self.warn((k,), f"top-level key `{k}` is ignored (did you mean `environments`?)",
                      "chute's deployment environments go under `environments:`", at_key=True)
        return PipelineConfig(pipelines, doc, env)

    # -- pipelines

    def pipeline(self, name: str, raw: Any, path: Path) -> Pipeline | None:
        from .shorthand import expand_shorthand

        if not isinstance(raw, dict):
            self.error(path, f"pipeline `{name}` must be a mapping with `stages`, got {_kind(raw)}",
                       "e.g. `stages: [{name: test}]`")
            return None
        before = self.error_count()
        self.unknown_keys(raw, path, PIPELINE_KEYS, f"pipeline `{name}`", severity="warning",
                          hints={"stage": "did you mean `stages`?",
                                 "executions": "did you mean `execution`?"})
        stages_raw = raw.get("stages")
        shorthand = isinstance(stages_raw, dict)
        items: list[tuple[Any, Path]] = []
        arcs_raw: Any = raw.get("execution")
        arcs_from_config = not is_falsy(arcs_raw)
        blubber_default: Any = f"{name}/blubber.yaml"
        fallback: str | None = None
        if "stages" not in raw:
            near = [k for k in raw if isinstance(k, str) and _suggest(k, ["stages"], 0.7) and k != "stages"]
            self.error(path, f"pipeline `{name}` has no `stages`",
                       (f"`{near[0]}` is not a pipeline key: did you mean `stages`?" if near else
                        "add `stages:` with a list of stages, e.g. `- name: test`; use `stages: []` "
                        "for an empty placeholder pipeline"))
        elif shorthand:
            expanded = expand_shorthand(self, name, stages_raw, (*path, "stages"))
            if expanded is not None:
                items, arcs = expanded
                if "execution" in raw:
                    self.error((*path, "execution"), "`execution` cannot be combined with the shorthand "
                               "`stages: {test: […], production: …}`",
                               "the shorthand runs the tests in parallel, then production; write the "
                               "stages as a list to choose another order", at_key=True)
                arcs_raw, arcs_from_config = arcs, False
                fallback = "blubber.yaml"
        elif isinstance(stages_raw, list):
            items = [(v, (*path, "stages", i)) for i, v in enumerate(stages_raw)]
        else:
            self.error((*path, "stages"), f"`stages` must be a list of stages, got {_kind(stages_raw)}",
                       "e.g. `stages: [{name: test}]`")

        # pipeline-level settings
        blubberfile = raw.get("blubberfile")
        if is_falsy(blubberfile):
            blubberfile = blubber_default
        else:
            blubberfile = self.blubberfile(blubberfile, (*path, "blubberfile"))
            fallback = None
        directory = raw.get("directory")
        if is_falsy(directory):
            directory = "."
        elif self.string(directory, (*path, "directory")) is not _BAD:
            if _escapes(directory):
                self.error((*path, "directory"), f"`directory` {directory!r} is outside the repository",
                           "give a path relative to the repository root, e.g. `src/service`")
        else:
            directory = "."
        fetch = self.fetch(raw.get("fetch"), (*path, "fetch"))
        notify = self.notify(raw.get("notify"), (*path, "notify"))
        helm = raw.get("helmConfig")
        if helm is not None:
            helm = self.string(helm, (*path, "helmConfig"), what="a path under .pipeline/")
            if helm is _BAD:
                helm = None
            elif _escapes(posixpath.join(".pipeline", helm)):
                self.error((*path, "helmConfig"), f"`helmConfig` {helm!r} is outside the repository",
                           "give a path relative to .pipeline/")

        stages: dict[str, Stage] = {}
        first_seen: dict[str, Path] = {}
        for value, spath in items:
            st = self.stage(value, spath, notify if notify is not _BAD else None, path)
            if st is None:
                continue
            if st.name in stages:
                m = self.doc.mark((*first_seen[st.name], "name"))
                where = f" (first at line {m.line})" if m else ""
                self.error((*spath, "name"),
                           f"stage `{st.name}` is defined twice in pipeline `{name}`{where}",
                           "stage names must be unique within a pipeline; rename one of them")
                continue
            stages[st.name] = st
            first_seen[st.name] = spath

        arcs = self.execution(arcs_raw, (*path, "execution"), stages, arcs_from_config, name)
        graph = Graph.from_arcs(arcs)
        cycle = graph.find_cycle()
        if cycle is not None:
            self.error((*path, "execution"), "cycle detected in the execution graph: " + " -> ".join(cycle),
                       "a stage cannot (indirectly) follow itself; remove one of these edges", at_key=True)
        pipe = Pipeline(
            name=name, stages=stages, graph=graph, execution=arcs,
            blubberfile=blubberfile if blubberfile is not _BAD else blubber_default,
            directory=directory, fetch=fetch if fetch is not _BAD else Fetch(),
            notify=notify if notify is not _BAD else None, helm_config=helm, shorthand=shorthand,
            blubberfile_fallback=fallback, path=path, document=self.doc,
        )
        # Syntax of every interpolated string is always checked; references only when the
        # pipeline's structure is sound (otherwise they would repeat the same mistake).
        self.lex_pipeline(pipe)
        if self.error_count() == before:
            self.references(pipe)
        return pipe

    def execution(self, raw: Any, path: Path, stages: dict[str, Stage], explicit: bool,
                  pipeline: str) -> list[list[str]]:
        if not explicit:
            if raw and isinstance(raw, list):  # from the shorthand
                return [list(a) for a in raw]
            return [list(stages)] if stages else []
        if not isinstance(raw, list):
            self.error(path, f"`execution` must be a list of arcs (lists of stage names), got {_kind(raw)}",
                       "e.g. `execution: [[build, test], [build, lint]]`")
            return [list(stages)] if stages else []
        arcs: list[list[str]] = []
        if all(isinstance(a, str) for a in raw):
            self.error(path, "`execution` graph must be a list of lists (graph branches)",
                       f"write `execution: [[{', '.join(raw)}]]` for one sequence")
            return [list(stages)] if stages else []
        for i, arc in enumerate(raw):
            if not isinstance(arc, list):
                self.error((*path, i), f"an `execution` arc must be a list of stage names, got {_kind(arc)}",
                           f"write `[{arc}]`" if isinstance(arc, str) else "e.g. `- [build, test]`")
                continue
            names: list[str] = []
            for j, n in enumerate(arc):
                if not isinstance(n, str):
                    self.error((*path, i, j), f"expected a stage name, got {_kind(n)}", "quote the name")
                    continue
                if n in names:
                    self.error((*path, i, j), f"`{n}` appears twice in this arc",
                               "an arc lists each stage once; a stage cannot follow itself")
                    continue
                if n not in stages:
                    near = _suggest(n, list(stages))
                    self.error((*path, i, j), f"`execution` names `{n}`, but pipeline `{pipeline}` has no "
                               f"such stage",
                               (f"did you mean `{near}`? " if near else "") + "define it under `stages` or "
                               "remove it (PipelineLib would run it as an empty stage)")
                names.append(n)
            arcs.append(names)
        mentioned = {n for a in arcs for n in a}
        for sname, st in stages.items():
            if sname not in mentioned:
                self.error((*st.path, "name"), f"stage `{sname}` is in no `execution` arc, so it would "
                           f"never run",
                           f"add it to an arc (e.g. `- [{sname}]` to run it on its own) or remove the stage")
        return arcs

    def fetch(self, raw: Any, path: Path) -> Any:
        if is_falsy(raw):
            return Fetch()
        if not isinstance(raw, dict):
            self.error(path, f"`fetch` must be a mapping, got {_kind(raw)}",
                       "e.g. `fetch: {depth: 50, submodules: false}`")
            return _BAD
        self.unknown_keys(raw, path, ("shallow", "depth", "submodules", "tags"), "`fetch`")
        values: dict[str, Any] = {}
        for key in ("shallow", "submodules", "tags"):
            if raw.get(key) is not None:
                values[key] = self.boolean(raw[key], (*path, key))
        if raw.get("depth") is not None:
            values["depth"] = self.integer(raw["depth"], (*path, "depth"), minimum=0)
        if _BAD in values.values():
            return _BAD
        return Fetch(**values)

    def blubberfile(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, dict):
            return raw
        if isinstance(raw, str):
            if VAR_START not in raw and _escapes(posixpath.join(".pipeline", raw)):
                self.error(path, f"blubberfile {raw!r} is outside the repository",
                           "give a path relative to .pipeline/, e.g. `blubber.yaml`")
                return _BAD
            return raw
        self.error(path, f"`blubberfile` must be a path under .pipeline/ or an inline Blubber mapping, "
                   f"got {_kind(raw)}", "e.g. `blubberfile: blubber.yaml`")
        return _BAD

    # -- stages

    def stage(self, raw: Any, path: Path, pipeline_notify: dict[str, Any] | None,
              pipeline_path: Path = ()) -> Stage | None:
        if not isinstance(raw, dict):
            hint = (f"write `- name: {raw}` to build and run the variant `{raw}`"
                    if isinstance(raw, str) else "e.g. `- name: test`")
            self.error(path, f"a stage must be a mapping with a `name`, got {_kind(raw)}", hint)
            return None
        self.unknown_keys(raw, path, STAGE_KEYS, "a stage",
                          hints={"variant": "put it under `build`: `build: {variant: …}`",
                                 "image": "put it under `publish` or `run`: `publish: {image: true}`",
                                 "stages": "stages cannot be nested; list them under the pipeline",
                                 "execution": "`execution` belongs to the pipeline, not a stage"})
        name = raw.get("name")
        if name is None or name == "":
            self.error(path, "this stage has no `name`",
                       "add `name: <stage>`; names link stages in `execution` and in `${stage.key}` "
                       "(PipelineLib would call it `null`)")
            return None
        if not isinstance(name, str):
            self.error((*path, "name"), f"a stage name must be a string, got {_kind(name)}", "quote it")
            return None
        if name in RESERVED_STAGE_NAMES:
            self.error((*path, "name"), f"{name} is a reserved stage name",
                       "`setup` and `teardown` are the implicit first and last stages; pick another name")
            return None
        if not set(name) <= NAME_CHARS or "." in name:
            self.warn((*path, "name"), f"stage name `{name}` cannot be used in `${{{name}.key}}` references",
                      "use letters, digits, '_' and '-' only")

        st = Stage(name=name, path=path)
        before = self.error_count()
        cfg = dict(raw)
        if set(cfg) == {"name"}:  # the name-only shorthand: build and run variant <name>
            st.name_only = True
            cfg["build"] = {"variant": "${.stage}"}
            cfg["run"] = {"image": "${.imageID}"}
        st.build = self.build(cfg.get("build"), (*path, "build"))
        st.run = self.run(cfg.get("run"), (*path, "run"))
        st.copy = self.copy(cfg.get("copy"), (*path, "copy"))
        st.publish = self.publish(cfg.get("publish"), (*path, "publish"))
        st.promote = self.promote(cfg.get("promote"), (*path, "promote"))
        st.deploy = self.deploy(cfg.get("deploy"), (*path, "deploy"))
        st.exports = self.exports(cfg.get("exports"), (*path, "exports"), st)
        st.trigger = self.trigger(cfg.get("trigger"), (*path, "trigger"))
        own_notify = self.notify(cfg.get("notify"), (*path, "notify"))
        st.notify = self.stage_notify(pipeline_notify, None if own_notify is _BAD else own_notify,
                                      (*path, "notify") if own_notify is not None else
                                      (*pipeline_path, "notify"))
        if cfg.get("blubberfile") is not None:
            bf = self.blubberfile(cfg["blubberfile"], (*path, "blubberfile"))
            st.blubberfile = None if bf is _BAD else bf
        for step in STEP_ORDER:
            if getattr(st, step) is _BAD:
                setattr(st, step, None)
        if not st.steps() and "notify" not in raw and not st.name_only and self.error_count() == before:
            self.warn((*path, "name"), f"stage `{name}` has no steps, so it does nothing",
                      "only a stage with just `name` gets the implicit build and run of its variant; "
                      "add `build: <variant>` and `run: true` to keep both")
        return st

    def _empty(self, raw: Any, path: Path, step: str, example: str) -> None:
        """Warn about ``step: {}``/``""``: PipelineLib treats a falsy value as no step."""
        if raw is not None and raw is not False:
            self.warn(path, f"`{step}` is empty, so this stage does not {step}",
                      f"an empty value counts as absent; {example}")

    def build(self, raw: Any, path: Path) -> Any:
        if is_falsy(raw):
            self._empty(raw, path, "build", "write `build: <variant>`")
            return None
        if isinstance(raw, str):
            cfg: dict[str, Any] = {"variant": raw}
        elif isinstance(raw, dict) and not is_expression(raw):
            self.unknown_keys(raw, path, ("variant", "context", "excludes", "imagePullPolicy"), "`build`")
            cfg = {}
            for key in ("variant", "context", "imagePullPolicy"):
                if raw.get(key) is not None:
                    cfg[key] = self.string(raw[key], (*path, key), merge=True)
            if raw.get("excludes") is not None:
                cfg["excludes"] = self.string_list(raw["excludes"], (*path, "excludes"))
            if _BAD in cfg.values():
                return _BAD
        else:
            self.error(path, f"`build` takes a variant name or a mapping, got {_kind(raw)}",
                       "e.g. `build: production` or `build: {variant: production, context: src}`")
            return _BAD
        out = {
            "variant": cfg.get("variant") or "${.stage}",
            "context": cfg.get("context") or ".",
            "imagePullPolicy": cfg.get("imagePullPolicy") or "always",
        }
        if "excludes" in cfg:
            out["excludes"] = cfg["excludes"]
            ctx = out["context"]
            if isinstance(ctx, str) and VAR_START not in ctx and urlparse(ctx).scheme:
                self.error((*path, "excludes"), "`excludes` cannot be used with a URL build context",
                           "excludes rewrite the local .dockerignore; drop them or build from a directory")
        policy = out["imagePullPolicy"]
        if isinstance(policy, str) and VAR_START not in policy and policy not in ("always", "never"):
            self.warn((*path, "imagePullPolicy"), f"imagePullPolicy `{policy}` is treated like `never` "
                      "(base images are not pulled)", "use `always` or `never`")
        return out

    def run(self, raw: Any, path: Path) -> Any:
        if raw is True:
            raw = {}
        elif is_falsy(raw):
            self._empty(raw, path, "run", "write `run: true`")
            return None
        elif not isinstance(raw, dict) or is_expression(raw):
            self.error(path, f"`run` takes true/false or a mapping, got {_kind(raw)}",
                       "e.g. `run: true` or `run: {arguments: [--verbose]}`")
            return _BAD
        self.unknown_keys(raw, path, ("image", "arguments", "env", "credentials", "tail"), "`run`")
        cfg: dict[str, Any] = {}
        if raw.get("image") is not None:
            cfg["image"] = self.string(raw["image"], (*path, "image"), merge=True)
        if raw.get("arguments") is not None:
            cfg["arguments"] = self.string_list(raw["arguments"], (*path, "arguments"))
        if raw.get("env") is not None:
            cfg["env"] = self.env(raw["env"], (*path, "env"))
        if raw.get("credentials") is not None:
            cfg["credentials"] = self.credentials(raw["credentials"], (*path, "credentials"))
        if raw.get("tail") is not None:
            cfg["tail"] = self.integer(raw["tail"], (*path, "tail"))
        if _BAD in cfg.values():
            return _BAD
        return {
            "image": cfg.get("image") or "${.imageID}",
            "arguments": cfg.get("arguments") or [],
            "env": cfg.get("env") or {},
            "credentials": cfg.get("credentials") or [],
            "tail": cfg.get("tail") or 0,
        }

    def env(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, dict) and "$merge" in raw:
            return self.expression(raw, path, each=False)
        if not isinstance(raw, dict) or "$each" in raw:
            self.error(path, f"`env` must be a mapping of variable names to values, got {_kind(raw)}",
                       "e.g. `env: {PIPELINE_RUNNING: '1'}`")
            return _BAD
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "" or "=" in key:
                self.error((*path, key), f"`{key}` is not a valid environment variable name",
                           "use letters, digits and '_'", at_key=True)
            out[key] = self.string(value, (*path, key), loose=True, merge=True)
        return _BAD if _BAD in out.values() else out

    def credentials(self, raw: Any, path: Path) -> Any:
        if is_expression(raw) or (isinstance(raw, list) and any(is_expression(v) for v in raw)):
            self.error(path, "`run.credentials` must be a plain list of `{id, name}`; `$each` and "
                       "`$merge` are not supported here",
                       "credential ids are never computed at run time; list each one")
            return _BAD
        if not isinstance(raw, list):
            self.error(path, f"`run.credentials` must be a list of `{{id, name}}`, got {_kind(raw)}",
                       "e.g. `credentials: [{id: SONAR_API_KEY, name: SONAR_API_KEY}]`")
            return _BAD
        out: list[Any] = []
        for i, item in enumerate(raw):
            ipath = (*path, i)
            if not isinstance(item, dict):
                self.error(ipath, f"a credential must be a mapping `{{id, name}}`, got {_kind(item)}",
                           "`id` is the credential's id, `name` the environment variable it becomes")
                out.append(_BAD)
                continue
            self.unknown_keys(item, ipath, ("id", "name", "as"), "a credential")
            entry: dict[str, Any] = {}
            for key in ("id", "name"):
                if item.get(key) is None:
                    self.error(ipath, f"this credential has no `{key}`",
                               "`id` is the credential's id, `name` the environment variable it becomes")
                    entry[key] = _BAD
                else:
                    entry[key] = self.string(item[key], (*ipath, key))
            # chute extension (docs/compat.md): `as: file` mounts the value as a read-only file at
            # /run/secrets/<id> and sets `name` to that path; `as: env` (the default) sets `name`
            # to the value.
            if item.get("as") is not None:
                if item["as"] not in ("env", "file"):
                    self.error((*ipath, "as"), "`as` must be `env` or `file`, got "
                               + (f"`{item['as']}`" if isinstance(item["as"], str) else _kind(item["as"])),
                               "`as: file` gives the step a file (its path in `name`); `env` the value itself")
                    entry["as"] = _BAD
                elif item["as"] == "file":
                    entry["as"] = "file"
            out.append(_BAD if _BAD in entry.values() else entry)
        return _BAD if _BAD in out else out

    def copy(self, raw: Any, path: Path) -> Any:
        if is_falsy(raw):
            return None
        if is_expression(raw):
            return self.expression(raw, path)
        if not isinstance(raw, list):
            self.error(path, f"`copy` must be a list of files to copy, got {_kind(raw)}",
                       "e.g. `copy: [{source: /srv/app/out, destination: out}]` or `copy: [/srv/app/out]`")
            return _BAD
        out: list[Any] = []
        for i, item in enumerate(raw):
            ipath = (*path, i)
            if isinstance(item, str):
                item = {"source": item}
            elif isinstance(item, dict) and "$merge" in item:
                out.append(self.expression(item, ipath, each=False))
                continue
            elif isinstance(item, dict) and "$each" in item:
                self.error(ipath, "a `$each` inside `copy` would make one item a list",
                           "put the `$each` around the whole list: `copy: {$each: …, $yield: {source: …}}`")
                out.append(_BAD)
                continue
            elif not isinstance(item, dict):
                self.error(ipath, f"a `copy` item must be a path or a mapping, got {_kind(item)}",
                           "e.g. `- source: /srv/app/out`")
                out.append(_BAD)
                continue
            self.unknown_keys(item, ipath, ("from", "source", "destination", "archive"), "a `copy` item")
            entry: dict[str, Any] = {}
            for key in ("from", "source", "destination"):
                if item.get(key) is not None:
                    entry[key] = self.string(item[key], (*ipath, key), merge=True)
            if item.get("archive") is not None:
                entry["archive"] = self.boolean(item["archive"], (*ipath, "archive"))
            if not entry.get("source"):
                self.error(ipath, "this `copy` item has no `source`",
                           "`source` is the path inside the container to copy out")
                entry["source"] = _BAD
            if _BAD in entry.values():
                out.append(_BAD)
                continue
            out.append({
                "from": entry.get("from") or "${.container}",
                "source": entry["source"],
                "destination": entry.get("destination") or entry["source"],
                "archive": entry.get("archive") or False,
            })
        return _BAD if _BAD in out else out

    def publish(self, raw: Any, path: Path) -> Any:
        if is_falsy(raw):
            self._empty(raw, path, "publish", "write `publish: {image: true}`")
            return None
        if not isinstance(raw, dict):
            self.error(path, f"`publish` must be a mapping such as `{{image: true}}`, got {_kind(raw)}",
                       "e.g. `publish: {image: {tags: [stable]}}`")
            return _BAD
        legacy = ("the 2018 form `publish: {type: image, tags: […]}` is gone; write "
                  "`publish: {image: {tags: […]}}`")
        self.unknown_keys(raw, path, ("image",), "`publish`",
                          hints={"type": legacy, "tags": legacy,
                                 "files": "publishing files was removed from PipelineLib in 2021; use "
                                          "`copy` with `archive: true`",
                                 "id": "put it under `image`", "name": "put it under `image`",
                                 "tag": "put it under `image`"})
        image = raw.get("image")
        if image is True:
            image = {}
        elif is_falsy(image):
            if image == {}:
                self.warn((*path, "image"), "`image: {}` is empty, so nothing is published",
                          "write `image: true` to publish with the defaults")
            return None
        elif not isinstance(image, dict) or is_expression(image):
            self.error((*path, "image"), f"`publish.image` takes true or a mapping, got {_kind(image)}",
                       "e.g. `image: true` or `image: {tags: [latest]}`")
            return _BAD
        ipath = (*path, "image")
        self.unknown_keys(image, ipath, ("id", "name", "tag", "tags"), "`publish.image`")
        cfg: dict[str, Any] = {}
        for key in ("id", "name", "tag"):
            if image.get(key) is not None:
                cfg[key] = self.string(image[key], (*ipath, key), loose=key == "tag", merge=True)
        if image.get("tags") is not None:
            cfg["tags"] = self.string_list(image["tags"], (*ipath, "tags"), item_merge=True)
        if _BAD in cfg.values():
            return _BAD
        # chute: an explicit `tags: []` means "no extra tags"; only a missing `tags` gets the
        # git-tag default (PipelineLib's Elvis turned [] back into the default).
        tags = cfg.get("tags", ["${setup.tag}"])
        return {"image": {
            "id": cfg.get("id") or "${.imageID}",
            "name": cfg.get("name") or "${setup.project}",
            "tag": cfg.get("tag") or "${setup.timestamp}-${.stage}",
            "tags": tags,
        }}

    def promote(self, raw: Any, path: Path) -> Any:
        default = {"chart": "${setup.projectShortName}", "environments": [], "version": "${.imageTag}"}
        if raw is True:
            return [dict(default)]
        if is_falsy(raw):
            return None
        if is_expression(raw):
            return self.expression(raw, path)
        if not isinstance(raw, list):
            self.error(path, f"`promote` takes true or a list of charts, got {_kind(raw)}",
                       "e.g. `promote: [{chart: my-service}]`")
            return _BAD
        out: list[Any] = []
        for i, item in enumerate(raw):
            ipath = (*path, i)
            if not isinstance(item, dict) or is_expression(item):
                self.error(ipath, f"a `promote` item must be a mapping, got {_kind(item)}",
                           f"write `- chart: {item}`" if isinstance(item, str) else "e.g. `- chart: foo`")
                out.append(_BAD)
                continue
            self.unknown_keys(item, ipath, ("chart", "environments", "version"), "a `promote` item")
            entry: dict[str, Any] = {}
            for key in ("chart", "version"):
                if item.get(key) is not None:
                    entry[key] = self.string(item[key], (*ipath, key), loose=key == "version", merge=True)
            if item.get("environments") is not None:
                entry["environments"] = self.string_list(item["environments"], (*ipath, "environments"))
            if _BAD in entry.values():
                out.append(_BAD)
                continue
            out.append({k: entry.get(k) or v for k, v in default.items()})
        return _BAD if _BAD in out else out

    def deploy(self, raw: Any, path: Path) -> Any:
        if is_falsy(raw):
            self._empty(raw, path, "deploy", "write `deploy: {chart: {name: <chart>}}`")
            return None
        if not isinstance(raw, dict) or is_expression(raw):
            self.error(path, f"`deploy` must be a mapping, got {_kind(raw)}",
                       "e.g. `deploy: {chart: {name: my-service}, test: true}`")
            return _BAD
        self.unknown_keys(raw, path, ("chart", "image", "tag", "cluster", "test", "timeout", "overrides"),
                          "`deploy`")
        cfg: dict[str, Any] = {}
        chart = raw.get("chart")
        chart_out: Any = {}
        if isinstance(chart, dict) and not is_expression(chart):
            self.unknown_keys(chart, (*path, "chart"), ("name", "version"), "`deploy.chart`")
            for key in ("name", "version"):
                if chart.get(key) is not None:
                    chart_out[key] = self.string(chart[key], (*path, "chart", key), loose=key == "version",
                                                 merge=True)
        elif chart is not None:
            self.error((*path, "chart"), f"`deploy.chart` must be a mapping `{{name, version}}`, got "
                       f"{_kind(chart)}", "since 2020 charts come from the chart repository: "
                       "`chart: {name: my-service}`")
            chart_out = _BAD
        for key in ("image", "tag"):
            if raw.get(key) is not None:
                cfg[key] = self.string(raw[key], (*path, key), loose=key == "tag", merge=True)
        if raw.get("cluster") is not None:
            cfg["cluster"] = self.string(raw["cluster"], (*path, "cluster"))
        if raw.get("test") is not None:
            cfg["test"] = self.boolean(raw["test"], (*path, "test"))
        if raw.get("timeout") is not None:
            cfg["timeout"] = self.integer(raw["timeout"], (*path, "timeout"), minimum=0)
        if raw.get("overrides") is not None:
            ov = raw["overrides"]
            if isinstance(ov, dict) and "$merge" in ov:
                cfg["overrides"] = self.expression(ov, (*path, "overrides"), each=False)
            elif isinstance(ov, dict) and "$each" not in ov:
                cfg["overrides"] = ov
            else:
                self.error((*path, "overrides"), f"`deploy.overrides` must be a mapping of Helm values, "
                           f"got {_kind(ov)}", "e.g. `overrides: {main_app: {replicas: 1}}`")
                cfg["overrides"] = _BAD
        if chart_out is _BAD or _BAD in cfg.values() or _BAD in chart_out.values():
            return _BAD
        return {
            "chart": {"name": chart_out.get("name") or "${setup.projectShortName}",
                      "version": chart_out.get("version") or ""},
            "image": cfg.get("image") or "${.imageName}",
            "tag": cfg.get("tag") or "${.imageTag}",
            "cluster": cfg.get("cluster") or "ci",
            "test": True if cfg.get("test") is None else cfg["test"],
            "timeout": cfg.get("timeout") or None,
            "overrides": cfg.get("overrides") or {},
        }

    def exports(self, raw: Any, path: Path, stage: Stage) -> Any:
        if is_falsy(raw):
            return None
        if isinstance(raw, dict) and "$merge" in raw:
            return self.expression(raw, path, each=False)
        if not isinstance(raw, dict) or "$each" in raw:
            self.error(path, f"`exports` must be a mapping of names to values, got {_kind(raw)}",
                       "e.g. `exports: {version: '${build.output}'}`")
            return _BAD
        bound = set()
        for s in STEP_ORDER[: STEP_ORDER.index("exports")]:
            if getattr(stage, s) not in (None, _BAD):
                bound.update(STEP_EXPORTS.get(s, ()))
        for key in raw:
            if VAR_START in key:
                continue
            if not key or not set(key) <= NAME_CHARS:
                self.error((*path, key), f"`{key}` cannot be an export name",
                           "names use letters, digits, '.', '_' and '-'", at_key=True)
            elif key == "stage" or key in bound:
                self.error((*path, key), f"`exports.{key}` would overwrite the `{key}` this stage already "
                           "binds", "values are written once per stage; export it under another name",
                           at_key=True)
        return raw

    def trigger(self, raw: Any, path: Path) -> Any:
        if is_falsy(raw):
            return None
        if not isinstance(raw, dict) or is_expression(raw):
            self.error(path, f"`trigger` must be a mapping with a job `name`, got {_kind(raw)}",
                       "e.g. `trigger: {name: downstream-job, parameters: {FOO: bar}}`")
            return _BAD
        self.unknown_keys(raw, path, ("name", "parameters", "propagate", "wait"), "`trigger`")
        cfg: dict[str, Any] = {}
        if raw.get("name") is None:
            self.error(path, "`trigger` has no job `name`", "e.g. `name: downstream-job`")
            cfg["name"] = _BAD
        else:
            cfg["name"] = self.string(raw["name"], (*path, "name"))
        params = raw.get("parameters")
        if params is not None:
            if not isinstance(params, dict) or is_expression(params):
                self.error((*path, "parameters"),
                           f"`trigger.parameters` must be a mapping, got {_kind(params)}",
                           "e.g. `parameters: {IMAGE: '${build.imageID}'}`")
                cfg["parameters"] = _BAD
            else:
                p_out = {k: self.string(v, (*path, "parameters", k), loose=True, merge=True)
                         for k, v in params.items()}
                cfg["parameters"] = _BAD if _BAD in p_out.values() else p_out
        for key in ("propagate", "wait"):
            if raw.get(key) is not None:
                cfg[key] = self.boolean(raw[key], (*path, key))
        if _BAD in cfg.values():
            return _BAD
        return {
            "name": cfg["name"],
            "parameters": cfg.get("parameters") or {},
            "propagate": True if cfg.get("propagate") is None else cfg["propagate"],
            "wait": False if cfg.get("wait") is None else cfg["wait"],
        }

    def notify(self, raw: Any, path: Path) -> Any:
        """A notify mapping as written, with a string ``to`` made a list (no defaults yet)."""
        if is_falsy(raw):
            return None
        if not isinstance(raw, dict):
            self.error(path, f"`notify` must be a mapping `{{email: …}}`, got {_kind(raw)}",
                       "e.g. `notify: {email: {to: [team@example.org]}}`")
            return _BAD
        self.unknown_keys(raw, path, ("email",), "`notify`")
        email = raw.get("email")
        if is_falsy(email):
            return None
        if not isinstance(email, dict) or is_expression(email):
            self.error((*path, "email"), f"`notify.email` must be a mapping, got {_kind(email)}",
                       "e.g. `email: {to: [team@example.org]}`")
            return _BAD
        epath = (*path, "email")
        self.unknown_keys(email, epath, ("to", "subject", "body"), "`notify.email`")
        out: dict[str, Any] = {}
        to = email.get("to")
        if isinstance(to, str):
            out["to"] = [to]
        elif to is not None:
            out["to"] = self.string_list(to, (*epath, "to"), item_merge=True)
        for key in ("subject", "body"):
            if email.get(key) is not None:
                out[key] = self.string(email[key], (*epath, key), merge=True)
        if _BAD in out.values():
            return _BAD
        return {"email": out}

    def stage_notify(self, pipeline: dict[str, Any] | None, own: dict[str, Any] | None,
                     path: Path) -> dict[str, Any] | None:
        """The stage's notify: its own settings over the pipeline's, then the defaults."""
        if pipeline is None and own is None:
            return None
        email = {**(pipeline or {}).get("email", {}), **(own or {}).get("email", {})}
        if not email.get("to"):
            self.error(path, "`notify.email` has no recipients (`to`)",
                       "add `to: [team@example.org]` here or in the pipeline's `notify`")
        return {"email": {
            "to": email.get("to") or [],
            "subject": email.get("subject") or DEFAULT_NOTIFY_SUBJECT,
            "body": email.get("body") or DEFAULT_NOTIFY_BODY,
        }}

    # -- pass 3: expressions and references

    def _stage_texts(self, pipe: Pipeline, st: Stage
                     ) -> Iterator[tuple[str, Path, str, frozenset[str], bool, bool]]:
        """``(step, path, text, each_vars, is_key, in_blubberfile)`` for every interpolated
        string; a Blubber config is interpolated when the stage builds."""
        for step in st.actions():
            cfg = st.step(step)
            for sub, text, each_vars, is_key in step_strings(step, cfg):
                yield step, (*st.path, step, *sub), text, each_vars, is_key, False
            if step in ITEM_DEFAULTS and is_expression(cfg):
                # the items an expression makes get their defaults at run time; check those too
                for key, default in ITEM_DEFAULTS[step].items():
                    if any(not (isinstance(t, dict) and t.get(key)) for t in _item_templates(cfg)):
                        yield step, (*st.path, step, "*", key), default, frozenset(), False, False
        if st.build is not None:
            if st.blubberfile is not None:
                bpath: Path = (*st.path, "blubberfile")
                bf: Any = st.blubberfile
            else:
                bpath, bf = (*pipe.path, "blubberfile"), pipe.blubberfile
            for sub, text, each_vars, is_key in walk_strings(bf, ()):
                yield "build", (*bpath, *sub), text, each_vars, is_key, True

    def lex_pipeline(self, pipe: Pipeline) -> None:
        seen: set[tuple[Path, bool]] = set()
        for st in pipe.stages.values():
            for _step, path, text, _vars, is_key, _sp in self._stage_texts(pipe, st):
                if (path, is_key) in seen or VAR_START not in text:
                    continue
                seen.add((path, is_key))
                try:
                    tokenize(text)
                except ExpressionSyntaxError as exc:
                    self.error(path, str(exc), exc.hint, at_key=is_key, offset=exc.offset)
        # $each/$merge shapes anywhere in interpolated data (typed fields were checked already)
        for st in pipe.stages.values():
            for value, path in self._free_form(pipe, st):
                self._check_nested_expressions(value, path)

    def _free_form(self, pipe: Pipeline, st: Stage) -> Iterator[tuple[Any, Path]]:
        for step in ACTIONS:
            cfg = getattr(st, step)
            if cfg is not None:
                yield cfg, (*st.path, step)
        if isinstance(st.blubberfile, dict):
            yield st.blubberfile, (*st.path, "blubberfile")
        if isinstance(pipe.blubberfile, dict) and st is next(iter(pipe.stages.values())):
            yield pipe.blubberfile, (*pipe.path, "blubberfile")

    def _check_nested_expressions(self, value: Any, path: Path) -> None:
        if isinstance(value, dict):
            if is_expression(value) and not self.expression_shape(value, path):
                return
            for k, v in value.items():
                self._check_nested_expressions(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._check_nested_expressions(v, (*path, i))

    def references(self, pipe: Pipeline) -> None:
        seen: set[tuple[Path, bool, str, int]] = set()
        for st in pipe.stages.values():
            for step, path, text, each_vars, is_key, in_blubberfile in self._stage_texts(pipe, st):
                if VAR_START not in text:
                    continue
                try:
                    tokens = tokenize(text)
                except ExpressionSyntaxError:
                    continue  # reported by lex_pipeline
                for tok in tokens:
                    if not isinstance(tok, Variable):
                        continue
                    key = (path, is_key, st.name, tok.offset)
                    if key in seen:
                        continue
                    seen.add(key)
                    self.reference(pipe, st, step, path, tok, each_vars, is_key, in_blubberfile)

    def reference(self, pipe: Pipeline, st: Stage, step: str, path: Path, var: Variable,
                  each_vars: frozenset[str], is_key: bool, in_blubberfile: bool) -> None:
        ns, key = var.namespace, var.key
        default_note = ""
        if tuple(path) not in self.doc.marks:
            default_note = f" (the default of `{format_path(path[len(st.path):])}`)"

        def report(message: str, hint: str | None, severity: str = "error") -> None:
            self.error(path, message + default_note, hint, at_key=is_key, severity=severity,
                       offset=var.offset)

        bound = st.bound_before(step) | set(each_vars)
        if ns is None:
            if key in bound or key in each_vars:
                return
            if in_blubberfile:
                return  # e.g. ${HOME} in a builder command: the build's shell expands it
            field_name = path[len(st.path) + 1] if len(path) > len(st.path) + 1 else None
            if step == "run" and field_name in ("env", "arguments"):
                return  # filled from the run's parameters when they have it (plan.resolve_step)
            report(f"`{var.source}` is not a pipeline variable and stays as written",
                   f"nothing expands it here; use `${{setup.params.{key}}}` for a run parameter "
                   f"or a `${{stage.key}}` value", "warning")
            return
        if ns == "":
            if key in bound or var.default is not None:
                return
            if st.dynamic_exports and step in ("trigger", "notify"):
                return
            if step == "exports" and key in st.exported_names():
                report(f"`{var.source}` reads an export of the same stage, which is not bound yet",
                       "exports are bound together after they are all interpolated")
                return
            providers = [s for s in pipe.graph.ancestors(st.name) if key in pipe.stages[s].exported_names()]
            hint = f"`{st.name}` binds {', '.join(sorted(bound))} before `{step}`"
            if key in STEP_EXPORTS.get("build", ()) and st.build is None:
                hint = "this stage has no `build`"
            elif key in STEP_EXPORTS.get("run", ()) and st.run is None:
                hint = "this stage has no `run`"
            elif key in STEP_EXPORTS.get("publish", ()) and st.publish is None:
                hint = "this stage does not publish"
            if providers:
                hint += f"; use an earlier stage's value such as `${{{sorted(providers)[0]}.{key}}}`"
            else:
                hint += "; add a `|default` or bind it earlier"
            report(f"`{var.source}` is not bound when `{step}` runs in stage `{st.name}`", hint)
            return
        if ns == SETUP:
            if var.default is not None or key in SETUP_KEYS or key in SETUP_CONDITIONAL_KEYS:
                return
            if key.startswith(("params.", "GIT_")):
                return
            if key.isupper() or key.startswith("ZUUL_"):
                hint = f"run parameters are `${{setup.params.{key}}}`"
            else:
                near = _suggest(key, [*SETUP_KEYS, *SETUP_CONDITIONAL_KEYS])
                hint = (f"did you mean `${{setup.{near}}}`? " if near else "") + \
                    "setup binds: " + ", ".join([*SETUP_KEYS, *SETUP_CONDITIONAL_KEYS, "params.<NAME>"])
            report(f"`{var.source}`: setup binds no `{key}`", hint)
            return
        if ns == st.name:
            if each_vars:  # inside $each the stage is an ancestor of the item's context
                return
            report(f"`{var.source}`: a stage cannot refer to its own values by name",
                   f"write `${{.{key}}}`")
            return
        if ns not in pipe.stages:
            near = _suggest(ns, list(pipe.stages))
            hint = (f"did you mean `{near}`? " if near else "") + (
                "stages are visible only inside their own pipeline; stages here: "
                + (", ".join(pipe.stages) or "none"))
            report(f"`{var.source}`: pipeline `{pipe.name}` has no stage `{ns}`", hint)
            return
        if ns not in pipe.graph.ancestors(st.name):
            report(f"`{var.source}`: stage `{ns}` does not run before `{st.name}` in the execution graph",
                   f"a stage reads only the stages it follows; add an arc `[{ns}, {st.name}]` to "
                   "`execution`, or move the value")
            return
        other = pipe.stages[ns]
        if var.default is None and not other.dynamic_exports and key not in other.exported_names():
            near = _suggest(key, list(other.exported_names()))
            report(f"`{var.source}`: stage `{ns}` binds no `{key}`",
                   (f"did you mean `${{{ns}.{near}}}`? " if near else "")
                   + f"`{ns}` binds: {', '.join(other.exported_names())}")


# --------------------------------------------------------------------------------------------
# Entry points


def check_document(doc: Document) -> PipelineConfig:
    """Validate and normalise a loaded document; raises :class:`ConfigError` (exit 4)."""
    checker = _Checker(doc)
    config = checker.config()
    unique = {(p.line, p.column, p.path, p.message, p.severity): p for p in checker.problems}
    problems = sorted(unique.values(), key=lambda p: (p.line or 0, p.column or 0))
    if any(p.severity == "error" for p in problems):
        count = sum(1 for p in problems if p.severity == "error")
        raise ConfigError(problems, EXIT_INVALID,
                          f"{doc.source}: {count} error{'s' if count != 1 else ''} in the pipeline config")
    config.warnings = problems
    return config
