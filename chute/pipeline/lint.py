"""``chute lint``: check a pipeline config, and the Blubber files it builds from.

Loading a config already reports every structural, graph and reference problem (and keeps the
warnings). Lint adds what needs the repository: that each Blubber file exists and loads, and
that each literal ``build.variant`` is one of its variants. It also hosts the allowed-actions
check (spec §2.7) that the trust model applies to untrusted changes.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import IO, Any

from chute.config import EXIT_INVALID, ConfigError, Problem, format_path

from .expressions import VAR_START, has_dynamic_parts
from .plan import expand_config, resolve_blubberfile
from .schema import ACTIONS, Path, Pipeline, PipelineConfig, Stage, _suggest

# What WMF's Zuul job allows for changes that are not merged yet (spec §2.7); the privileged
# actions are added only for post-merge and tag pipelines.
UNTRUSTED_ACTIONS = frozenset({"build", "copy", "exports", "notify", "run"})
PRIVILEGED_ACTIONS = frozenset({"deploy", "promote", "publish", "trigger"})
ALL_ACTIONS = frozenset(ACTIONS)


def check_allowed_actions(pipeline: Pipeline, allowed: set[str] | frozenset[str]) -> list[Problem]:
    """One problem per stage action (step or ``notify``) that is not in ``allowed``.

    Unlike PipelineLib, a stage's own ``blubberfile`` is not an action (it only says where the
    build config is), so it is never refused. A name-only stage counts as build and run.
    """
    doc = pipeline.document
    problems: list[Problem] = []
    for st in pipeline.stages.values():
        for action in st.actions():
            if action in allowed:
                continue
            message = (f"stage `{st.name}` contains an action (`{action}`) that is not allowed by this "
                       "pipeline")
            hint = ("allowed here: " + (", ".join(sorted(allowed)) or "nothing")
                    + ("; publish, promote, deploy and trigger run only for merged changes or tags"
                       if action in PRIVILEGED_ACTIONS else ""))
            path = (*st.path, action)
            if doc is not None:
                problems.append(doc.problem(path, message, hint, at_key=True))
            else:
                problems.append(Problem(message, format_path(path), hint=hint))
    return problems


_STAGE_VAR = re.compile(r"\$\{\.?stage\}")


def static_variant(stage: Stage) -> str | None:
    """The variant ``stage`` builds when it is known before running (``${.stage}`` is)."""
    if stage.build is None or not isinstance(stage.build.get("variant"), str):
        return None
    variant = _STAGE_VAR.sub(lambda _m: stage.name, stage.build["variant"])
    return None if VAR_START in variant else variant


def _parse_problem_path(path: str) -> Path:
    """``variants.test.copies[0]`` back into a path tuple (best effort)."""
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


class _BlubberFiles:
    """Loads each referenced Blubber config once and turns its problems into lint problems."""

    def __init__(self, config: PipelineConfig, config_dir: str) -> None:
        self.config = config
        self.doc = config.document
        self.config_dir = config_dir
        self.cache: dict[Any, Any] = {}
        self.problems: list[Problem] = []
        # Imported here: nothing else in the pipeline package needs the Blubber compiler.
        self.blubber = importlib.import_module("chute.blubber")

    def load(self, value: str | dict[str, Any], where: Path, pipeline: Pipeline) -> Any:
        """The loaded config, or None (dynamic, missing or invalid: reported once)."""
        if has_dynamic_parts(value):
            return None  # depends on run-time values; checked when the stage builds
        key = value if isinstance(value, str) else id(value)
        if key in self.cache:
            return self.cache[key]
        self.cache[key] = result = self._load(value, where, pipeline)
        return result

    def _load(self, value: str | dict[str, Any], where: Path, pipeline: Pipeline) -> Any:
        if isinstance(value, str):
            full = os.path.normpath(os.path.join(self.config_dir, value))
            shown = os.path.relpath(full, os.path.dirname(self.config_dir))
            if not os.path.isfile(full):
                if where in self.doc.marks:
                    hint = "check the path: it is relative to the .pipeline directory, even with `directory`"
                else:
                    hint = (f"pipeline `{pipeline.name}` sets no `blubberfile`, so it uses "
                            f"`{pipeline.name}/blubber.yaml`; add `blubberfile: blubber.yaml` to use "
                            "the common one")
                self.problems.append(self.doc.problem(
                    where, f"Blubber file `{shown}` does not exist", hint))
                return None
            try:
                return self.blubber.load_config(full)
            except ConfigError as exc:
                self.problems.append(self.doc.problem(
                    where, f"Blubber file `{shown}` is not valid ({len(exc.problems)} problem(s) below)",
                    "fix the Blubber file; `chute blubber` prints its Dockerfile once it loads"))
                self.problems.extend(exc.problems)
                return None
        import yaml

        text = yaml.safe_dump(value, sort_keys=False)
        try:
            return self.blubber.parse_config(text, f"{self.config.source}:{format_path(where)}")
        except ConfigError as exc:
            for p in exc.problems:
                inner = _parse_problem_path(p.path) if p.path else ()
                self.problems.append(self.doc.problem(
                    (*where, *inner), f"inline blubberfile: {p.message}", p.hint, severity=p.severity,
                    display_path=format_path((*where, *inner))))
            return None


def lint_pipeline_config(
    config: PipelineConfig,
    repo_root: str,
    check_blubber: bool = True,
    *,
    config_dir: str | None = None,
) -> list[Problem]:
    """Every problem found (errors and warnings), sorted by position.

    ``repo_root`` is the checkout; Blubber paths are relative to ``config_dir`` (default
    ``<repo_root>/.pipeline``). With ``check_blubber=False`` only the pipeline file itself is
    checked (its load-time warnings). Otherwise the checkout is consulted too: each pipeline's
    ``directory`` must exist, each Blubber file a building stage uses is loaded with
    :mod:`chute.blubber`, and each literal ``build.variant`` (``${.stage}`` counts as literal)
    must be one of its variants.
    """
    problems: list[Problem] = list(config.warnings)
    problems.extend(_check_environments(config))
    if check_blubber:
        config_dir = config_dir or os.path.join(repo_root, ".pipeline")
        try:
            files = _BlubberFiles(config, config_dir)
        except ImportError:
            problems.append(Problem("cannot check the Blubber files: the chute.blubber package is not "
                                    "installed", source=config.source, severity="warning",
                                    hint="run with --no-blubber to check the pipeline file alone"))
        else:
            problems.extend(_check_variants(config, files, config_dir))
            problems.extend(files.problems)
        problems.extend(_check_directories(config, repo_root))
    unique = {(p.source, p.line, p.column, p.path, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.source != config.source, p.source or "",
                                                   p.line or 0, p.column or 0))


def _check_environments(config: PipelineConfig) -> list[Problem]:
    """chute's ``environments`` extension (validated by the deploy package, which owns it)."""
    if config.environments_raw is None:
        return []
    from chute.deploy.environments import parse_environments

    try:
        parse_environments(config.environments_raw, config.document, pipelines=list(config.pipelines))
    except ConfigError as err:
        return list(err.problems)
    return []


def _check_directories(config: PipelineConfig, repo_root: str) -> list[Problem]:
    problems = []
    for p in config.pipelines.values():
        if p.directory != "." and not os.path.isdir(os.path.join(repo_root, p.directory)):
            problems.append(config.document.problem(
                (*p.path, "directory"), f"directory `{p.directory}` does not exist in the repository",
                "`directory` is relative to the repository root"))
    return problems


def _check_variants(config: PipelineConfig, files: _BlubberFiles, config_dir: str) -> list[Problem]:
    doc = config.document
    problems: list[Problem] = []
    for p in config.pipelines.values():
        pipeline_bf = resolve_blubberfile(p, config_dir)
        for st in p.stages.values():
            if st.build is None:
                continue
            if st.blubberfile is not None:
                bf, where = st.blubberfile, (*st.path, "blubberfile")
            else:
                bf, where = pipeline_bf, (*p.path, "blubberfile")
            loaded = files.load(bf, where, p)
            variant = static_variant(st)
            if loaded is None or variant is None:
                continue
            names = list(loaded.variant_names())
            if variant in names:
                continue
            if isinstance(bf, str):
                full = os.path.normpath(os.path.join(config_dir, bf))
                shown = f"`{os.path.relpath(full, os.path.dirname(config_dir))}`"
            else:
                shown = "the inline blubberfile"
            near = _suggest(variant, names)
            hint = (f"did you mean `{near}`? " if near else "") + "variants there: " + (
                ", ".join(names) or "none")
            if st.name_only:
                hint += f" (a stage with just `name: {st.name}` builds and runs the variant of that name)"
            problems.append(doc.problem((*st.path, "build", "variant"),
                                        f"variant `{variant}` is not defined in {shown}", hint))
    return problems


def lint_command(
    config: str | None = None,
    no_blubber: bool = False,
    expand: bool = False,
    *,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """The body of ``chute lint [CONFIG] [--no-blubber] [--expand]``; returns the exit code.

    ``CONFIG`` defaults to ``.pipeline/config.yaml``; the repository root is the parent of the
    directory holding it. Problems go to ``err`` (stderr), the expanded config (``--expand``) to
    ``out`` (stdout) as YAML. Exit codes: 0 clean (warnings allowed), 2 unreadable or invalid
    YAML, 4 invalid config.
    """
    import yaml

    from . import load_pipeline_config

    out = out or sys.stdout
    err = err or sys.stderr
    path = config or os.path.join(".pipeline", "config.yaml")
    try:
        cfg = load_pipeline_config(path)
    except ConfigError as exc:
        err.write(exc.format() + "\n")
        return exc.exit_code
    config_dir = os.path.dirname(os.path.abspath(path))
    repo_root = os.path.dirname(config_dir)
    problems = lint_pipeline_config(cfg, repo_root, check_blubber=not no_blubber, config_dir=config_dir)
    for p in problems:
        err.write(str(p) + "\n")
    if expand:
        expanded = expand_config(cfg, repo_root)
        out.write(yaml.safe_dump(expanded, sort_keys=False, allow_unicode=True, width=100))
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    stages = sum(len(p.stages) for p in cfg.pipelines.values())
    status = "ok" if not errors else f"{errors} error{'s' if errors != 1 else ''}"
    if warnings:
        status += f", {warnings} warning{'s' if warnings != 1 else ''}"
    err.write(f"{path}: {len(cfg.pipelines)} pipeline(s), {stages} stage(s): {status}\n")
    return EXIT_INVALID if errors else 0
