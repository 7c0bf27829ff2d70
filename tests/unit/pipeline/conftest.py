"""Fixtures of the pipeline config tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pipeline_helpers import errors_of, load_text, shared_dir

from chute.config import Problem
from chute.pipeline import PipelineConfig


@pytest.fixture
def load() -> Callable[..., PipelineConfig]:
    return load_text


@pytest.fixture
def errors() -> Callable[..., list[Problem]]:
    return errors_of


@pytest.fixture
def corpus_dir() -> Path:
    shared = shared_dir()
    if shared is None:
        pytest.skip("the shared test data is absent: set CHUTE_SHARED to the directory holding "
                    "testdata/pipeline-configs (normally ../shared next to the repository)")
    return shared / "testdata" / "pipeline-configs"
