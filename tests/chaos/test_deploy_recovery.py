"""Regression tests for deployment recovery, each crash point staged by hand on real podman.

The Deployer's steps are played up to the moment a process died (a revision started, traffic
switched, a revision marked healthy), then a new Deployer -- a restarted server -- recovers.
Before the fix, recovery only marked the half-done revision ``failed``: the router went on
serving it while the store said the previous revision served, and its pod ran for ever.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chute.deploy import (
    DEPLOYING,
    FAILED,
    HEALTHY,
    SUPERSEDED,
    Deployer,
    Deployment,
    MemoryStore,
    PodmanTarget,
    parse_environments,
)
from chute.deploy import manifests as mf
from chute.deploy.model import utcnow

from .conftest import need_podman
from .test_chaos_deploy import _port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

import deploy_images  # tests/deploy is not a package: found through sys.path

pytestmark = [pytest.mark.podman, pytest.mark.slow]
PROJECT = "chaos/recovery"


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.port = _port()
        self.images = {v: deploy_images.build(v) for v in ("v1", "v2")}
        self.state_dir = tmp / "podman"
        self.envs = parse_environments({"prod": {"port": self.port, "health": {
            "http": deploy_images.HEALTH, "within": "20s", "stable_for": "1s", "interval": 0.25}}})
        self.env = self.envs["prod"]
        self.store = MemoryStore()
        self.target = self.new_target()
        self.deployer = Deployer(self.store, {PROJECT: self.envs}, {"podman": self.target})

    def new_target(self) -> PodmanTarget:
        return PodmanTarget(self.state_dir, extra_labels={"chute.test": "1"}, stop_timeout=1)

    def restarted(self) -> tuple[Deployer, PodmanTarget]:
        """A new process: a new Deployer and target on the same store and state directory."""
        target = self.new_target()
        return Deployer(self.store, {PROJECT: self.envs}, {"podman": target}), target

    def half_deploy(self, variant: str, *, switch: bool) -> Deployment:
        """A deploy of ``variant`` that died after starting its revision (and switching to it)."""
        resolved = self.target.resolve_image(self.images[variant])
        revision = self.store.next_revision(PROJECT, "prod")
        release = self.deployer._render(PROJECT, self.env, revision, resolved)
        self.store.record(Deployment(project=PROJECT, environment="prod", revision=revision,
                                     image_ref=self.images[variant], image_digest=resolved.digest,
                                     status=DEPLOYING, target="podman", started_at=utcnow(),
                                     manifests=mf.to_yaml(release.manifests)))
        state = self.target.start(release)
        self.store.update(PROJECT, "prod", revision, target_state=dict(state))
        if switch:
            self.target.switch(release, state)
            self.store.update(PROJECT, "prod", revision, serving_at=utcnow())
        return self.store.get(PROJECT, "prod", revision)  # type: ignore[return-value]

    def answer(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5).text.strip()

    def pods(self) -> list[str]:
        from .harness import podman

        out = podman("pod", "ps", "--format", "{{.Name}}", "--filter",
                     f"label={mf.LABEL_PROJECT}={mf.dns_name(PROJECT)}").stdout
        return sorted(out.split())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    need_podman("localhost/busybox:stable")
    s = Setup(tmp_path)
    try:
        yield s
    finally:
        s.target.wait_idle()
        s.target.down(PROJECT, s.env)


def test_a_deploy_killed_after_its_switch_ends_on_the_previous_revision(setup: Setup) -> None:
    first = setup.deployer.deploy(PROJECT, "prod", setup.images["v1"], reason="first", actor="ada")
    assert first.status == HEALTHY and setup.answer() == "v1", first.error
    half = setup.half_deploy("v2", switch=True)
    assert setup.answer() == "v2" and setup.target.served_revision(PROJECT, setup.env) == half.revision

    deployer, target = setup.restarted()
    (failed,) = deployer.recover_interrupted(PROJECT, "prod")
    assert failed.revision == half.revision and failed.status == FAILED
    assert failed.error.startswith("interrupted") and failed.restored_revision == first.revision
    # What the store says serves is what serves: revision 1, alone.
    assert setup.store.current(PROJECT, "prod").revision == first.revision
    assert setup.answer() == "v1" and target.served_revision(PROJECT, setup.env) == first.revision
    target.wait_idle()
    assert setup.pods() == [f"{mf.app_name(PROJECT, 'prod')}-r{first.revision}-pod-0"]


def test_a_deploy_killed_before_its_switch_leaves_no_pod_behind(setup: Setup) -> None:
    first = setup.deployer.deploy(PROJECT, "prod", setup.images["v1"], reason="first", actor="ada")
    half = setup.half_deploy("v2", switch=False)
    assert len(setup.pods()) == 2 and setup.answer() == "v1"
    deployer, target = setup.restarted()
    (failed,) = deployer.recover_interrupted(PROJECT, "prod")
    assert failed.revision == half.revision and failed.status == FAILED
    target.wait_idle()
    assert setup.pods() == [f"{mf.app_name(PROJECT, 'prod')}-r{first.revision}-pod-0"]
    assert setup.answer() == "v1"


def test_a_deploy_killed_after_healthy_before_retiring_the_previous_one(setup: Setup) -> None:
    first = setup.deployer.deploy(PROJECT, "prod", setup.images["v1"], reason="first", actor="ada")
    half = setup.half_deploy("v2", switch=True)
    setup.store.update(PROJECT, "prod", half.revision, status=HEALTHY, finished_at=utcnow())  # then it died
    assert [d.status for d in setup.store.list(PROJECT, "prod")] == [HEALTHY, HEALTHY]

    deployer, target = setup.restarted()
    assert deployer.recover_interrupted(PROJECT, "prod") == []  # nothing failed ...
    # ... but only the newer one is healthy now, and the older one's pod is gone.
    assert [d.status for d in setup.store.list(PROJECT, "prod")] == [HEALTHY, SUPERSEDED]
    assert setup.answer() == "v2" and target.served_revision(PROJECT, setup.env) == half.revision
    target.wait_idle()
    assert setup.pods() == [f"{mf.app_name(PROJECT, 'prod')}-r{half.revision}-pod-0"]
    assert first.revision != half.revision


def test_a_first_deploy_killed_after_its_switch_keeps_serving_and_says_so(setup: Setup) -> None:
    half = setup.half_deploy("v1", switch=True)
    deployer, target = setup.restarted()
    (failed,) = deployer.recover_interrupted(PROJECT, "prod")
    assert failed.status == FAILED and failed.serving_at is not None and failed.restored_revision is None
    assert "still serves" in failed.error
    assert setup.answer() == "v1" and target.served_revision(PROJECT, setup.env) == half.revision
    target.wait_idle()
    assert setup.pods() == [f"{mf.app_name(PROJECT, 'prod')}-r{half.revision}-pod-0"]
