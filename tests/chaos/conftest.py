"""Fixtures for the chaos tests: podman, the seed, and a cleanup of whatever the killed processes left."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from .harness import CONTAINERS_CONF, base_env

if os.path.exists(CONTAINERS_CONF):  # podman needs runc and ulimits from it (notes/machine.md)
    os.environ.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)


def _podman_problem(image: str) -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed: run .ci/run (it installs podman)"
    if subprocess.run(["podman", "image", "exists", image], env=base_env(), check=False).returncode != 0:
        return f"{image} is missing: run .ci/run (make_base_images builds it)"
    return None


def need_podman(image: str) -> None:
    why = _podman_problem(image)
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def seed() -> int:
    """CHUTE_CHAOS_SEED replays a run of the chaos test; otherwise a new seed, printed."""
    raw = os.environ.get("CHUTE_CHAOS_SEED")
    value = int(raw) if raw else random.SystemRandom().randrange(1, 2**31)
    print(f"\nchaos seed {value} (replay: CHUTE_CHAOS_SEED={value})")
    return value
