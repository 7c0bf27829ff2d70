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
