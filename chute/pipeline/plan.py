"""What the runner needs: the selected pipelines and stages, and pure helpers for the steps.

:func:`make_plan` picks pipelines (and optionally one stage plus its ancestors) and orders the
stages. :func:`resolve_step` interpolates one step of a stage for the run, applying the field
rules (some fields are never interpolated), filling defaults in lists made by ``$each``/``$merge``
and checking the resulting types. The rest are the small rules PipelineLib applies around
publishing (name and tag sanitisation, the image-name prefix rule, the exported names).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chute.config import EXIT_USAGE, ConfigError, Problem, format_path

from .expressions import SETUP, Context, PipelineRuntimeError, interpolate, to_text
from .graph import Graph
from .schema import (
    STEP_EXPORTS,
    STEP_ORDER,
    Path,
    Pipeline,
    PipelineConfig,
    Stage,
    map_interpolated,
)

# --------------------------------------------------------------------------------------------
# The plan


@dataclass(eq=False)
class PipelinePlan:
    """One selected pipeline: the stages to run, in an order that respects the graph."""

    pipeline: Pipeline
    stages: list[Stage]  # topological order (ties keep file order)
    graph: Graph  # the pipeline's graph restricted to ``stages``
    blubberfile: str | dict[str, Any]  # the pipeline's Blubber config, shorthand fallback applied

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def directory(self) -> str:
        return self.pipeline.directory

    def frames(self) -> list[list[str]]:
        """PipelineLib's level-by-level schedule (a runner may instead start each stage as soon
        as its predecessors finish)."""
        return self.graph.frames()

    def blubberfile_for(self, stage: str) -> str | dict[str, Any]:
        """The un-interpolated Blubber config ``stage`` builds with (a path relative to the
        ``.pipeline`` directory, even with ``directory``, or an inline mapping)."""
        own = self.pipeline.stages[stage].blubberfile
        return own if own is not None else self.blubberfile


@dataclass(eq=False)
class Plan:
    """The pipelines to run, in file order."""

    config: PipelineConfig = field(repr=False)
    pipelines: list[PipelinePlan]


def resolve_blubberfile(pipeline: Pipeline, config_dir: str | None) -> str | dict[str, Any]:
    """The pipeline's Blubber config; for the 2019 shorthand's default, ``<name>/blubber.yaml``
    if it exists under ``config_dir`` (the ``.pipeline`` directory), else ``blubber.yaml``."""
    bf = pipeline.blubberfile
    if pipeline.blubberfile_fallback is None or config_dir is None or not isinstance(bf, str):
        return bf
    if os.path.isfile(os.path.join(config_dir, bf)):
        return bf
    return pipeline.blubberfile_fallback


def make_plan(
    config: PipelineConfig,
    pipelines: list[str] | None = None,
    stage: str | None = None,
    repo_root: str | None = None,
) -> Plan:
    """Select pipelines (all, in file order, when None) and, with ``stage``, only that stage plus
    its ancestors in each. With ``repo_root`` the shorthand's blubberfile default is resolved
    against ``<repo_root>/.pipeline``. Unknown names raise :class:`ConfigError` (exit 1)."""
    names = list(config.pipelines) if pipelines is None else list(pipelines)
    unknown = [n for n in names if n not in config.pipelines]
    if unknown:
        raise ConfigError([Problem(
            f"pipeline `{n}` is not defined in {config.source}", source=config.source,
            hint="pipelines: " + (", ".join(config.pipelines) or "none"),
        ) for n in unknown], EXIT_USAGE)
    if stage is not None:
        having = [n for n in names if stage in config.pipelines[n].stages]
        if pipelines is None:
            names = having
        missing = [n for n in names if n not in having] if names else []
        if not having or missing:
            where = ", ".join(f"`{n}`" for n in (missing or list(config.pipelines)))
            stages = sorted({s for n in (missing or config.pipelines) for s in config.pipelines[n].stages})
            raise ConfigError([Problem(
                f"stage `{stage}` is not defined in pipeline {where}", source=config.source,
                hint="stages: " + (", ".join(stages) or "none"),
            )], EXIT_USAGE)
    config_dir = os.path.join(repo_root, ".pipeline") if repo_root is not None else None
    plans: list[PipelinePlan] = []
    for n in names:
        p = config.pipelines[n]
        graph = p.graph
        if stage is not None:
            graph = graph.subgraph({stage, *graph.ancestors(stage)})
        order = graph.topological_order()
        plans.append(PipelinePlan(p, [p.stages[s] for s in order], graph, resolve_blubberfile(p, config_dir)))
    return Plan(config, plans)


# --------------------------------------------------------------------------------------------
# Built-in values


def timestamp_label(when: datetime) -> str:
    """``yyyy-MM-dd-HHmmss`` in UTC (a naive datetime is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d-%H%M%S")


def setup_bindings(
    project: str,
    commit: str,
    branch: str,
    tag: str | None,
    timestamp: datetime,
    pipeline: str,
    change: str | None = None,
    patchset: str | None = None,
    params: dict[str, str] | None = None,
    remote: str | None = None,
    *,
    log_url: str | None = None,
    http_proxy: str | None = None,
) -> dict[str, Any]:
    """The ``${setup.*}`` values, as ``{key: value}`` to bind in the ``setup`` namespace.

    ``project`` is chute's project name (e.g. ``mediawiki/services/citoid``); its last path
    segment is ``projectShortName``. ``tag`` is the git tag of a tag build (else ``""``).
    ``params`` (run parameters) become ``params.<NAME>``; ``change``/``patchset`` and
    ``httpProxy`` are bound only when given. Keys: stage, pipeline, project, projectShortName,
    commit, branch, remote, tag, timestamp, imageLabels, logURL, GIT_COMMIT, GIT_BRANCH,
    GIT_URL, [change, patchset, httpProxy], params.*.
    """
    project = project.strip("/")
    if project.startswith("r/"):
        project = project[2:]
    labels = {"ci.project": project, "ci.pipeline": pipeline, "ci.commit": commit}
    if change is not None:
        labels["ci.change"] = str(change)
    values: dict[str, Any] = {
        "stage": SETUP,
        "pipeline": pipeline,
        "project": project,
        "projectShortName": project.rsplit("/", 1)[-1],
        "commit": commit,
        "branch": branch,
        "remote": remote or "",
        "tag": tag or "",
        "timestamp": timestamp_label(timestamp),
        "imageLabels": labels,
        "logURL": log_url or "",
        "GIT_COMMIT": commit,
        "GIT_BRANCH": branch,
        "GIT_URL": remote or "",
    }
    if change is not None:
        values["change"] = str(change)
    if patchset is not None:
        values["patchset"] = str(patchset)
    if http_proxy:
        values["httpProxy"] = http_proxy
    for name, value in (params or {}).items():
        values[f"params.{name}"] = value
    return values


# --------------------------------------------------------------------------------------------
# Names, tags and exports


_NAME_BAD = re.compile(r"[^a-z0-9._-]+")
_TAG_BAD = re.compile(r"[^a-z0-9._-]+")


def sanitise_name(name: str) -> str:
    """An image name as PipelineLib publishes it: lower case, ``/`` → ``-``; chute also turns
    any other character a registry refuses into ``-`` and trims separators at the ends."""
    out = _NAME_BAD.sub("-", name.lower().replace("/", "-"))
    return out.strip("._-")


def sanitise_tag(tag: str) -> str:
    """A tag as published: lower case, ``/`` → ``-``, other invalid characters → ``-``, no
    leading ``.``/``-`` and at most 128 characters (the OCI tag grammar). May be ``""``."""
    out = _TAG_BAD.sub("-", tag.lower().replace("/", "-"))
    return out.lstrip(".-")[:128]


def allowed_image_names(project: str) -> list[str]:
    """The names (and ``<name>-`` prefixes) a project may publish under."""
    full = sanitise_name(project)
    short = sanitise_name(project.rstrip("/").rsplit("/", 1)[-1])
    return list(dict.fromkeys([full, short]))


def check_image_name(name: str, project: str, stage: str = "") -> str:
    """The sanitised image name, if the project may publish it: it must equal the sanitised full
    or short project name, or start with one of them followed by ``-`` (PipelineLib 2022-09).
    Raises :class:`PipelineRuntimeError` otherwise."""
    clean = sanitise_name(name)
    allowed = allowed_image_names(project)
    if any(clean == a or clean.startswith(a + "-") for a in allowed):
        return clean
    raise PipelineRuntimeError(
        f"image name '{clean}' is not allowed for project '{project}'",
        stage=stage, field="publish.image.name",
        hint="the name must be " + " or ".join(f"'{a}' or start with '{a}-'" for a in allowed),
    )


def publish_tags(tag: str, tags: list[str]) -> list[str]:
    """The tags to push: the primary ``tag`` first, then ``tags``, sanitised, without empties or
    repeats. The first one is what ``imageTag`` exports (chute fixes PipelineLib bug #5)."""
    out: list[str] = []
    for t in [tag, *tags]:
        clean = sanitise_tag(to_text(t))
        if clean and clean not in out:
            out.append(clean)
    return out


def publish_exports(name: str, tags: list[str], registry: str = "", namespace: str = "") -> dict[str, Any]:
    """The values ``publish`` binds, for an image pushed as ``[registry/][namespace/]name:tag``.

    ``tags`` are the pushed tags (from :func:`publish_tags`), primary first.
    """
    if not tags:
        raise ValueError("publish needs at least one tag")
    full = "/".join(p.strip("/") for p in (registry, namespace, name) if p)
    return {
        "imageName": name,
        "imageFullName": full,
        "imageTag": tags[0],
        "imageTags": list(tags),
        "publishedImage": f"{full}:{tags[0]}",
    }


def exported_names(stage: Stage) -> tuple[str, ...]:
    """What ``stage`` binds: ``stage``, each present step's names, and literal ``exports`` keys."""
    return stage.exported_names()


def step_exports(step: str) -> tuple[str, ...]:
    """The names a step binds (``build`` → imageID, imageLocalName; …; ``()`` for the rest)."""
    return STEP_EXPORTS.get(step, ())


def sanitise_copy_destination(destination: str) -> str:
    """A ``copy`` destination made relative to the working directory: leading ``/`` and ``../``
    are dropped, and it cannot climb out through ``..`` in the middle either."""
    trailing = destination.endswith("/")
    norm = posixpath.normpath("/" + destination.lstrip("/")).lstrip("/")
    if not norm:
        return "."
    return norm + ("/" if trailing else "")


# --------------------------------------------------------------------------------------------
# Resolving one step for the run


def resolve_step(stage: Stage, step: str, context: Context, *, source: str | None = None) -> Any:
    """Interpolate ``stage``'s ``step`` (one of build, run, copy, publish, promote, deploy,
    exports, trigger, notify) as the stage sees ``context``, and return it with checked types.

    * Fields PipelineLib never interpolates (``run.credentials``, ``run.tail``,
      ``copy[].archive``, ``deploy.test``/``cluster``, ``trigger.name``/``propagate``/``wait``,
      ``trigger.parameters`` keys) are returned as written.
    * ``copy``/``promote`` lists made by ``$each``/``$merge`` get their item defaults here.
    * In ``run.env`` and ``run.arguments`` a dot-less ``${NAME}`` that is not a stage value is
      taken from the run parameter ``NAME`` (``setup.params.NAME``) when there is one, as
      Jenkins' shell did with job parameters; otherwise it stays as written.

    Returns None if the stage does not have the step. Raises :class:`PipelineRuntimeError`.
    """
    cfg = stage.step(step)
    if cfg is None:
        return None
    setup = context.values(SETUP)
    params = {k[len("params."):]: v for k, v in setup.items() if k.startswith("params.")}

    def interp(value: Any, sub: Path) -> Any:
        fld = format_path((step, *sub))
        fallback = params if step == "run" and sub and sub[0] in ("env", "arguments") else None
        return _interpolate_with_fallback(value, context, stage.name, fld, fallback, source)

    value = map_interpolated(step, cfg, interp)
    return _Finisher(stage.name, step, context, source).finish(value)


def _interpolate_with_fallback(value: Any, context: Context, stage: str, fld: str,
                               fallback: Mapping[str, Any] | None, source: str | None) -> Any:
    try:
        return interpolate(value, context, stage, field=fld, fallback=fallback)
    except PipelineRuntimeError as exc:
        if source and not exc.problems[0].source:
            raise PipelineRuntimeError(exc.message, stage=exc.stage, field=exc.field,
                                       available=exc.available, hint=exc.hint, source=source) from None
        raise


class _Finisher:
    """Post-interpolation checks and defaults for one step."""

    def __init__(self, stage: str, step: str, context: Context, source: str | None) -> None:
        self.stage = stage
        self.step = step
        self.context = context
        self.source = source

    def fail(self, fld: str, message: str, hint: str | None = None) -> PipelineRuntimeError:
        return PipelineRuntimeError(message, stage=self.stage, field=fld, hint=hint, source=self.source)

    def text(self, value: Any, fld: str, *, required: bool = False) -> str:
        if isinstance(value, dict | list):
            got = "a list" if isinstance(value, list) else "a mapping"
            raise self.fail(fld, f"expected a string, got {got}")
        out = to_text(value)
        if required and not out:
            raise self.fail(fld, "is empty after interpolation", "check the variables it uses")
        return out

    def texts(self, value: Any, fld: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(fld, "expected a list of strings, got a mapping")
        return [self.text(v, f"{fld}[{i}]") for i, v in enumerate(value)]

    def default(self, template: str, fld: str) -> str:
        return to_text(interpolate(template, self.context, self.stage, field=fld))

    def finish(self, v: Any) -> Any:
        return getattr(self, "_" + self.step)(v)

    def _build(self, v: dict[str, Any]) -> dict[str, Any]:
        out = {
            "variant": self.text(v["variant"], "build.variant", required=True),
            "context": self.text(v["context"], "build.context") or ".",
            "imagePullPolicy": self.text(v["imagePullPolicy"], "build.imagePullPolicy") or "always",
        }
        if "excludes" in v:
            out["excludes"] = self.texts(v["excludes"], "build.excludes")
        return out

    def _run(self, v: dict[str, Any]) -> dict[str, Any]:
        env = v["env"]
        if not isinstance(env, dict):
            raise self.fail("run.env", "expected a mapping of variable names to values")
        return {
            "image": self.text(v["image"], "run.image", required=True),
            "arguments": self.texts(v["arguments"], "run.arguments"),
            "env": {self.text(k, "run.env", required=True): self.text(val, f"run.env.{k}")
                    for k, val in env.items()},
            "credentials": [dict(c) for c in v["credentials"]],
            "tail": v["tail"],
        }

    def _copy(self, v: Any) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise self.fail("copy", "expected a list of files to copy, got a mapping")
        out = []
        for i, item in enumerate(v):
            fld = f"copy[{i}]"
            if isinstance(item, str):
                item = {"source": item}
            if not isinstance(item, dict):
                raise self.fail(fld, "expected a path or a mapping {from, source, destination, archive}")
            extra = set(item) - {"from", "source", "destination", "archive"}
            if extra:
                raise self.fail(fld, f"unknown key `{sorted(extra)[0]}` in a copy item")
            source = self.text(item.get("source"), f"{fld}.source", required=True)
            archive = item.get("archive") or False
            if not isinstance(archive, bool):
                raise self.fail(f"{fld}.archive", "expected true or false")
            out.append({
                "from": self.text(item.get("from"), f"{fld}.from")
                or self.default("${.container}", f"{fld}.from"),
                "source": source,
                "destination": self.text(item.get("destination"), f"{fld}.destination") or source,
                "archive": archive,
            })
        return out

    def _publish(self, v: dict[str, Any]) -> dict[str, Any]:
        img = v["image"]
        return {"image": {
            "id": self.text(img["id"], "publish.image.id", required=True),
            "name": self.text(img["name"], "publish.image.name", required=True),
            "tag": self.text(img["tag"], "publish.image.tag", required=True),
            "tags": self.texts(img["tags"], "publish.image.tags"),
        }}

    def _promote(self, v: Any) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise self.fail("promote", "expected a list of charts to promote, got a mapping")
        out = []
        for i, item in enumerate(v):
            fld = f"promote[{i}]"
            if isinstance(item, str):
                item = {"chart": item}
            if not isinstance(item, dict):
                raise self.fail(fld, "expected a mapping {chart, environments, version}")
            extra = set(item) - {"chart", "environments", "version"}
            if extra:
                raise self.fail(fld, f"unknown key `{sorted(extra)[0]}` in a promote item")
            out.append({
                "chart": self.text(item.get("chart"), f"{fld}.chart")
                or self.default("${setup.projectShortName}", f"{fld}.chart"),
                "environments": self.texts(item.get("environments"), f"{fld}.environments"),
                "version": self.text(item.get("version"), f"{fld}.version")
                or self.default("${.imageTag}", f"{fld}.version"),
            })
        return out

    def _deploy(self, v: dict[str, Any]) -> dict[str, Any]:
        overrides = v["overrides"]
        if not isinstance(overrides, dict):
            raise self.fail("deploy.overrides", "expected a mapping of Helm values")
        return {
            "chart": {"name": self.text(v["chart"]["name"], "deploy.chart.name", required=True),
                      "version": self.text(v["chart"]["version"], "deploy.chart.version")},
            "image": self.text(v["image"], "deploy.image", required=True),
            "tag": self.text(v["tag"], "deploy.tag", required=True),
            "cluster": v["cluster"],
            "test": v["test"],
            "timeout": v["timeout"],
            "overrides": overrides,
        }

    def _exports(self, v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail("exports", "expected a mapping of names to values")
        return {self.text(k, "exports", required=True): val for k, val in v.items()}

    def _trigger(self, v: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": v["name"],
            "parameters": {k: self.text(val, f"trigger.parameters.{k}")
                           for k, val in v["parameters"].items()},
            "propagate": v["propagate"],
            "wait": v["wait"],
        }

    def _notify(self, v: dict[str, Any]) -> dict[str, Any]:
        email = v["email"]
        return {"email": {
            "to": [t for t in self.texts(email["to"], "notify.email.to") if t],
            "subject": self.text(email["subject"], "notify.email.subject"),
            "body": self.text(email["body"], "notify.email.body"),
        }}


# --------------------------------------------------------------------------------------------
# The canonical form


def expand_config(config: PipelineConfig, repo_root: str | None = None) -> dict[str, Any]:
    """The config in canonical PipelineLib form, every default filled in: what
    ``chute lint --expand`` prints. Loading it again gives the same pipelines."""
    config_dir = os.path.join(repo_root, ".pipeline") if repo_root is not None else None
    out: dict[str, Any] = {"pipelines": {}}
    for name, p in config.pipelines.items():
        entry: dict[str, Any] = {
            "blubberfile": resolve_blubberfile(p, config_dir),
            "directory": p.directory,
            "fetch": {"shallow": p.fetch.shallow, "depth": p.fetch.depth,
                      "submodules": p.fetch.submodules, "tags": p.fetch.tags},
        }
        if p.helm_config is not None:
            entry["helmConfig"] = p.helm_config
        if p.notify is not None:
            entry["notify"] = p.notify
        stages = []
        for st in p.stages.values():
            s: dict[str, Any] = {"name": st.name}
            if st.blubberfile is not None:
                s["blubberfile"] = st.blubberfile
            for step in (*STEP_ORDER, "notify"):
                value = getattr(st, step)
                if value is not None:
                    s[step] = value
            if len(s) == 1:  # a stage that does nothing; alone, `name` would build and run
                s["run"] = False
            stages.append(s)
        entry["stages"] = stages
        entry["execution"] = [list(a) for a in p.execution]
        out["pipelines"][name] = entry
    if config.environments_raw is not None:
        out["environments"] = config.environments_raw
    return out
