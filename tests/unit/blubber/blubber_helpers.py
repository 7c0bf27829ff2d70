"""Helpers shared by the Blubber compiler tests (imported by name: tests/unit/blubber is on sys.path)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from chute.blubber import compile_variant, parse_config

REPO = Path(__file__).resolve().parents[3]


def shared_dir() -> Path:
    """The project's shared folder (``../shared`` next to the repo, or $CHUTE_SHARED)."""
    env = os.environ.get("CHUTE_SHARED")
    return Path(env) if env else REPO / ".." / "shared"


def corpus_dir() -> Path:
    return shared_dir() / "testdata" / "blubber-corpus"


def config(text: str, source: str = "blubber.yaml"):
    return parse_config(textwrap.dedent(text), source)


def dockerfile(text: str, variant: str, **kw) -> str:
    """Compile ``variant`` of a config given as (indented) YAML text, labelled with version "+"."""
    return compile_variant(config(text), variant, version_label="+", **kw)


def lines(text: str) -> list[str]:
    return text.splitlines()
