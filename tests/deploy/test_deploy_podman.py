"""The deployment core on the real podman target: deploy, health gates, rollback, guards."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
from deploy_images import HEALTH, Load

from chute.deploy import (
    FAILED,
    HEALTHY,
    ROLLED_BACK,
    SUPERSEDED,
    DeployBlocked,
    DeployBusy,
    Deployer,
    JsonFileStore,
    MemoryStore,
    OutdatedImage,
    parse_environments,
)
from chute.deploy.model import KIND_ROLLBACK

pytestmark = [pytest.mark.podman, pytest.mark.slow]
PROJECT = "demo/web"


def environments(port: int, **extra) -> dict:
    raw = {"port": port, "health": {"http": HEALTH, "within": "20s", "stable_for": "2s", "interval": 0.25}}
    raw.update(extra)
    return {"staging": raw}


def make(target, raw: dict, store=None, **kw) -> tuple[Deployer, dict]:
    envs = parse_environments(raw)
    for env in envs.values():
        target.cleanup_later(PROJECT, env)
    return Deployer(store or MemoryStore(), {PROJECT: envs}, {"podman": target}, **kw), envs


def body(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip()


def pod_exists(name: str) -> bool:
    return subprocess.run(["podman", "pod", "exists", name], check=False).returncode == 0


def test_deploy_gate_and_rollback_lifecycle(podman_target, images, tmp_path):
    port = 18310
    deployer, _ = make(podman_target, environments(port), store=JsonFileStore(tmp_path / "d.json"))

    first = deployer.deploy(
        PROJECT, "staging", images["v1"], reason="first", actor="alice", source_run="run-1"
    )
    assert first.status == HEALTHY, first.error
    assert first.image_digest.startswith("sha256:") and first.image.endswith(first.image_digest)
    assert body(port) == "v1"
    labels = json.loads(
        subprocess.run(
            ["podman", "pod", "inspect", first.target_state["pod"]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    labels = labels[0]["Labels"] if isinstance(labels, list) else labels["Labels"]
    assert labels["chute.test"] == "1" and labels["chute.dev/revision"] == "1"

    with Load(f"http://127.0.0.1:{port}/") as load:
        second = deployer.deploy(PROJECT, "staging", images["v2"], reason="second", actor="alice")
    assert second.status == HEALTHY and body(port) == "v2"
    assert load.failed == 0, load.errors  # the switch dropped no request
    assert set(load.bodies) <= {"v1", "v2"} and load.bodies.get("v2")
    podman_target.wait_idle()
    assert not pod_exists(first.target_state["pod"])  # the superseded revision was removed

    # An image whose health endpoint answers 500 never takes traffic; v2 serves throughout.
    with Load(f"http://127.0.0.1:{port}/") as load:
        bad = deployer.deploy(PROJECT, "staging", images["bad"], reason="bad", actor="bob")
    assert bad.status == FAILED and "500, expected 200" in bad.error
    assert bad.restored_revision == 2 and bad.time_to_restore == 0.0 and bad.serving_at is None
    assert load.failed == 0 and set(load.bodies) == {"v2"}

    # A release that passes at first and turns unhealthy while serving is rolled back automatically.
    with Load(f"http://127.0.0.1:{port}/") as load:
        flaky = deployer.deploy(PROJECT, "staging", images["flaky"], reason="flaky", actor="bob")
    assert flaky.status == FAILED and "while serving" in flaky.error
    assert flaky.restored_revision == 2 and flaky.serving_at is not None
    assert 0 < flaky.time_to_restore < 10
    assert body(port) == "v2"
    assert load.failed == 0, load.errors  # flaky's "/" answered 200; the switch back dropped nothing
    assert [h["phase"] for h in flaky.health] == ["within", "stable"]

    # A manual rollback goes to the last healthy revision with another image: v1.
    back = deployer.rollback(PROJECT, "staging", actor="carol", reason="v2 is slow")
    assert back.status == HEALTHY and back.kind == KIND_ROLLBACK and back.rollback_of == 2
    assert back.image_digest == first.image_digest and body(port) == "v1"
    assert back.manifests == first.manifests  # the same manifests, re-applied

    history = deployer.history(PROJECT, "staging")
    assert [(d.revision, d.status) for d in history] == [
        (5, HEALTHY),
        (4, FAILED),
        (3, FAILED),
        (2, ROLLED_BACK),
        (1, SUPERSEDED),
    ]
    assert history[3].time_to_restore is not None and history[3].actor == "alice"
    assert history[-1].source_run == "run-1" and history[0].actor == "carol"


def test_bad_input_fails_before_the_serving_revision_is_touched(podman_target, images):
    port = 18311
    deployer, _ = make(podman_target, environments(port))
    ok = deployer.deploy(PROJECT, "staging", images["v1"], reason="r", actor="a")
    assert ok.status == HEALTHY
    missing = deployer.deploy(
        PROJECT, "staging", "localhost/chute-test-web:does-not-exist", reason="r", actor="a"
    )
    assert missing.status == FAILED and "does not exist" in missing.error and missing.started_at is None
    crash = deployer.deploy(PROJECT, "staging", images["crash"], reason="r", actor="a")
    # Seen either as exited (exit code 3) or, once podman restarted it, as restarting.
    assert crash.status == FAILED and ("exit code 3" in crash.error or "restarts" in crash.error)
    # kube play drops the image's HEALTHCHECK; chute runs it itself.
    hcfail = deployer.deploy(PROJECT, "staging", images["hcfail"], reason="r", actor="a")
    assert hcfail.status == FAILED and "healthcheck" in hcfail.error
    assert body(port) == "v1" and deployer.store.current(PROJECT, "staging").revision == ok.revision


def test_target_failing_mid_deploy_keeps_the_previous_revision(podman_target, images, tmp_path):
    port = 18312
    deployer, _ = make(podman_target, environments(port))
    assert deployer.deploy(PROJECT, "staging", images["v1"], reason="r", actor="a").status == HEALTHY
    # Fault injection: the real podman, except that `kube play` fails as on a full disk.
    wrapper = tmp_path / "podman-full-disk"
    wrapper.write_text(
        '#!/bin/sh\nif [ "$1" = kube ]; then echo "Error: write /var/lib/containers: '
        'no space left on device" >&2; exit 125; fi\nexec podman "$@"\n'
    )
    wrapper.chmod(0o755)
    podman_target.podman = str(wrapper)
    try:
        failed = deployer.deploy(PROJECT, "staging", images["v2"], reason="r", actor="a")
    finally:
        podman_target.podman = "podman"
    assert failed.status == FAILED and "no space left on device" in failed.error
    assert failed.restored_revision == 1 and body(port) == "v1"


def test_freeze_blocks_and_an_override_is_audited(podman_target, images):
    port = 18313
    raw = environments(
        port, freeze=[{"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z", "reason": "holidays"}]
    )
    now = datetime(2026, 12, 25, tzinfo=UTC)
    deployer, _ = make(podman_target, raw, clock=lambda: now)
    with pytest.raises(DeployBlocked, match="frozen from 2026-12-24T00:00:00"):
        deployer.deploy(PROJECT, "staging", images["v1"], reason="r", actor="a")
    with pytest.raises(DeployBlocked, match="needs an actor and a reason"):
        deployer.deploy(PROJECT, "staging", images["v1"], reason=" ", actor="a", override_freeze=True)
    assert deployer.history(PROJECT, "staging") == []  # refused deploys record nothing
    dep = deployer.deploy(
        PROJECT, "staging", images["v1"], reason="security fix", actor="dana", override_freeze=True
    )
    assert dep.status == HEALTHY
    assert dep.freeze_override["actor"] == "dana" and dep.freeze_override["reason"] == "security fix"
    assert "holidays" in dep.freeze_override["what"]


def test_older_images_never_overwrite_newer_and_one_deploy_at_a_time(podman_target, images):
    port = 18314
    raw = environments(port)
    raw["staging"]["health"]["stable_for"] = "3s"
    deployer, _ = make(podman_target, raw)
    assert (
        deployer.deploy(
            PROJECT, "staging", images["v2"], reason="r", actor="a", order_key="2026-11-26T10:00:00Z"
        ).status
        == HEALTHY
    )
    with pytest.raises(OutdatedImage, match="older than revision 1"):
        deployer.deploy(
            PROJECT, "staging", images["v1"], reason="r", actor="a", order_key="2026-11-25T10:00:00Z"
        )
    assert len(deployer.history(PROJECT, "staging")) == 1

    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            deployer.deploy(PROJECT, "staging", images["v1"], reason="r", actor="a", order_key="2026-11-27")
        )
    )
    worker.start()
    time.sleep(1.0)
    with pytest.raises(DeployBusy, match="already running"):
        deployer.deploy(PROJECT, "staging", images["v2"], reason="r", actor="a")
    worker.join(60)
    assert results[0].status == HEALTHY and body(port) == "v1"


def test_publish_deploys_staging_and_promotes_to_production_unless_frozen(podman_target, images):
    raw = {
        "staging": {
            "port": 18315,
            "auto": True,
            "from": "publish",
            "health": {"http": HEALTH, "within": "20s", "stable_for": "1s", "interval": 0.25},
        },
        "production": {
            "port": 18316,
            "auto": True,
            "after": "staging",
            "health": {"http": HEALTH, "within": "20s", "stable_for": "1s", "interval": 0.25},
            "freeze": [{"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"}],
        },
    }
    clock = {"now": datetime(2026, 11, 26, tzinfo=UTC)}
    deployer, _ = make(podman_target, raw, clock=lambda: clock["now"])
    outcomes = deployer.on_published(
        PROJECT, "publish", images["v1"], branch="main", source_run="run-9", order_key="1"
    )
    assert [(o.environment, o.deployment.status) for o in outcomes] == [
        ("staging", HEALTHY),
        ("production", HEALTHY),
    ]
    prod = outcomes[1].deployment
    assert prod.reason == "promoted from staging revision 1" and prod.source_run == "run-9"
    assert prod.image_digest == outcomes[0].deployment.image_digest
    assert body(18316) == "v1"
    assert deployer.on_published(PROJECT, "publish", images["v2"], branch="feature", order_key="2") == []
    clock["now"] = datetime(2030, 1, 1, 12, tzinfo=UTC)
    outcomes = deployer.on_published(PROJECT, "publish", images["v2"], branch="main", order_key="2")
    assert outcomes[0].deployment.status == HEALTHY and outcomes[1].deployment is None
    assert "frozen" in outcomes[1].blocked and body(18316) == "v1" and body(18315) == "v2"


def test_manual_rollback_mode_leaves_an_unhealthy_release_serving(podman_target, images):
    port = 18317
    deployer, _ = make(podman_target, environments(port, rollback="manual"))
    assert deployer.deploy(PROJECT, "staging", images["v1"], reason="r", actor="a").status == HEALTHY
    flaky = deployer.deploy(PROJECT, "staging", images["flaky"], reason="r", actor="a")
    assert flaky.status == FAILED and "rollback: manual, so it still serves" in flaky.error
    assert flaky.restored_revision is None and body(port) == "flaky"
    assert deployer.store.current(PROJECT, "staging") is None  # nothing healthy serves
    assert deployer.store.get(PROJECT, "staging", 1).status == SUPERSEDED
    back = deployer.rollback(PROJECT, "staging", actor="oncall", reason="flaky health")
    assert back.status == HEALTHY and back.rollback_of == flaky.revision and body(port) == "v1"
    flaky = deployer.store.get(PROJECT, "staging", flaky.revision)
    assert flaky.status == FAILED and flaky.time_to_restore > 0


def test_a_rolled_back_image_is_held_from_automatic_deploys(podman_target, images):
    raw = environments(18318, auto=True)
    raw["staging"]["from"] = "publish"
    deployer, _ = make(podman_target, raw)
    assert (
        deployer.on_published(PROJECT, "publish", images["v1"], branch="main")[0].deployment.status == HEALTHY
    )
    (first,) = deployer.on_published(PROJECT, "publish", images["flaky"], branch="main", source_run="run-1")
    assert first.deployment.status == FAILED and first.deployment.restored_revision == 1
    # The same build published again (a rerun) is not deployed again ...
    (again,) = deployer.on_published(PROJECT, "publish", images["flaky"], branch="main", source_run="run-2")
    assert again.deployment is None and "held until someone deploys it by hand" in again.blocked
    assert len(deployer.history(PROJECT, "staging")) == 2 and body(18318) == "v1"
    # ... while a new image is, and a human may still deploy the held one on purpose.
    (fixed,) = deployer.on_published(PROJECT, "publish", images["v2"], branch="main")
    assert fixed.deployment.status == HEALTHY and body(18318) == "v2"
