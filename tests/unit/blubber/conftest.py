"""Fixtures for the Blubber compiler tests (helpers live in blubber_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from blubber_helpers import corpus_dir


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_dir()
    if not (path / "configs").is_dir():
        pytest.skip(f"the Blubber corpus is not at {path} (set CHUTE_SHARED to the shared folder)")
    return path
