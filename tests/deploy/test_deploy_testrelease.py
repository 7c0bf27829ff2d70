"""PipelineLib's deploy step: a throwaway release on podman, its test, its removal."""

import subprocess

import pytest
from deploy_images import HEALTH

from chute.deploy import run_test_release
from chute.deploy.environments import ChartRef

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def gone(result) -> bool:
    out = subprocess.run(
        ["podman", "pod", "ps", "--format", "{{.Name}}"], capture_output=True, text=True, check=True
    ).stdout
    return result.release not in out


def test_release_is_gated_tested_and_removed(podman_target, images):
    result = run_test_release(
        "demo/web",
        images["v1"],
        target=podman_target,
        health_path=HEALTH,
        timeout=20,
        test_command=["/bin/sh", "-c", 'wget -q -O - "$CHUTE_RELEASE_URL/" | grep -x v1'],
    )
    podman_target.wait_idle()
    assert result.ok, result
    assert result.test_exit_code == 0 and "v1" in result.test_output
    assert result.health["healthy"] and gone(result)

    failing = run_test_release(
        "demo/web",
        images["v1"],
        target=podman_target,
        health_path=HEALTH,
        timeout=20,
        test_command=["/bin/sh", "-c", 'wget -q -O - "$CHUTE_RELEASE_URL/" | grep -x v2'],
    )
    podman_target.wait_idle()
    assert not failing.ok and failing.test_exit_code == 1 and "exited with 1" in failing.reason
    assert gone(failing)


def test_unhealthy_release_fails_and_is_removed(podman_target, images):
    result = run_test_release(
        "demo/web",
        images["bad"],
        target=podman_target,
        health_path=HEALTH,
        timeout=20,
        test_command=["/bin/true"],
    )
    podman_target.wait_idle()
    assert not result.ok and "did not become healthy" in result.reason and "500" in result.reason
    assert result.test_exit_code is None and result.seconds < 15 and gone(result)


def test_bad_input_is_a_clear_failure(podman_target, images, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no helm here (notes/machine.md §7)
    monkeypatch.delenv("CHUTE_HELM", raising=False)
    chart = run_test_release("demo/web", images["v1"], target=podman_target, chart=ChartRef(path="chart"))
    assert not chart.ok and "no `helm` binary" in chart.reason
    missing = run_test_release("demo/web", "localhost/chute-test-web:nope", target=podman_target)
    assert not missing.ok and "does not exist" in missing.reason
    from chute.config import ConfigError

    with pytest.raises(ConfigError, match=r"deploy\.overrides"):
        run_test_release("demo/web", images["v1"], target=podman_target, overrides={"replicaz": 2})
