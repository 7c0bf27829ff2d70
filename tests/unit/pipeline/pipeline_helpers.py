"""Shared helpers of the pipeline config tests (imported by name: pytest puts this directory on
sys.path; the unusual module name avoids clashes with other test directories)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from chute.config import ConfigError, Problem
from chute.pipeline import PipelineConfig, parse_pipeline_config

REPO_ROOT = Path(__file__).resolve().parents[3]


def load_text(text: str, source: str = "config.yaml") -> PipelineConfig:
    return parse_pipeline_config(textwrap.dedent(text), source)


def problems_of(text: str, source: str = "config.yaml") -> list[Problem]:
    with pytest.raises(ConfigError) as ei:
        load_text(text, source)
    return ei.value.problems


def errors_of(text: str, source: str = "config.yaml") -> list[Problem]:
    return [p for p in problems_of(text, source) if p.severity == "error"]


def shared_dir() -> Path | None:
    """``$CHUTE_SHARED``, else ``../shared`` next to the checkout (or next to its worktree dir)."""
    env = os.environ.get("CHUTE_SHARED")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared", REPO_ROOT.parent.parent / "shared"]
    for c in candidates:
        if (c / "testdata" / "pipeline-configs").is_dir():
            return c
    return None


def simulate_run(config: PipelineConfig, pipeline: str, params: dict[str, str] | None = None) -> dict:
    """Drive one pipeline the way the runner does (see ``chute.pipeline``'s docstring), with
    made-up step results; returns ``{stage: {step: resolved config}}``. Raises what the
    resolution raises."""
    from datetime import UTC, datetime

    from chute.pipeline import (
        Context,
        interpolate,
        make_plan,
        publish_exports,
        publish_tags,
        resolve_step,
        sanitise_name,
        setup_bindings,
    )

    (pp,) = make_plan(config, [pipeline]).pipelines
    ctx = Context(pp.graph, setup_bindings("mediawiki/services/citoid", "c0ffee", "main", None,
                                           datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), pipeline,
                                           params=params, http_proxy="http://proxy.test:8080"))
    done: dict[str, dict] = {}
    for stage in pp.stages:
        name = stage.name
        ctx.bind(name, "stage", name)
        out = done[name] = {}
        for step in stage.steps():
            if step == "build":
                out["blubberfile"] = interpolate(pp.blubberfile_for(name), ctx, name, field="blubberfile")
            cfg = out[step] = resolve_step(stage, step, ctx)
            if step == "build":
                ctx.bind(name, "imageID", f"id-{name}")
                ctx.bind(name, "imageLocalName", f"localhost/plib-image-{name}")
            elif step == "run":
                ctx.bind(name, "container", f"plib-run-{name}")
                ctx.bind(name, "output", "one\ntwo\n" if cfg["tail"] else "")
            elif step == "copy":
                ctx.bind(name, "artifactURLs", "")
            elif step == "publish":
                img = cfg["image"]
                tags = publish_tags(img["tag"], img["tags"])
                for key, value in publish_exports(sanitise_name(img["name"]), tags, "registry.test").items():
                    ctx.bind(name, key, value)
            elif step == "deploy":
                ctx.bind(name, "releaseName", f"rel-{name}")
            elif step == "exports":
                for key, value in cfg.items():
                    ctx.bind(name, key, value)
        if stage.notify is not None:
            out["notify"] = resolve_step(stage, "notify", ctx)
    return done
