"""Fixtures for the deploy tests: podman, test images, a podman target that cleans up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import deploy_images

os.environ.setdefault("CONTAINERS_CONF", "/etc/chute/containers.conf")


def _podman_works() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed: run .ci/run (it installs podman)"
    if subprocess.run(["podman", "image", "exists", "localhost/busybox:stable"], check=False).returncode != 0:
        return "localhost/busybox:stable is missing: run .ci/run (make_base_images builds it)"
    return None


@pytest.fixture(scope="session")
def podman_ok() -> None:
    reason = _podman_works()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def images(podman_ok) -> dict[str, str]:
    return {v: deploy_images.build(v) for v in ("v1", "v2", "bad", "flaky", "crash", "hcfail")}


@pytest.fixture
def podman_target(tmp_path, podman_ok):
    from chute.deploy import PodmanTarget

    target = PodmanTarget(tmp_path / "podman", extra_labels={"chute.test": "1"}, stop_timeout=1)
    made: list[tuple[str, object]] = []
    target.cleanup_later = lambda project, env: made.append((project, env))  # type: ignore[attr-defined]
    yield target
    for project, env in made:
        target.down(project, env)
