"""PipelineLib's ``deploy`` step on real podman: a throwaway release of the published image, its
health test, and its removal; refused for untrusted runs."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from chute.runner.deploy_step import deploy
from chute.runner.request import Observer, RunRequest, Runtime
from chute.runner.steps import StepFailed

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def runtime(tmp_path: Path, *, trusted: bool = True, run_id: str = "step-1") -> Runtime:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    req = RunRequest(repo_dir=repo, project="greeter", trusted=trusted, run_id=run_id)
    return Runtime(request=req, engine=None, observer=Observer(), cancel=threading.Event(), workdir=tmp_path / "work")


def cfg(image: str, tag: str, **kw) -> dict:
    return {"chart": {"name": "greeter", "version": ""}, "image": image, "tag": tag, "cluster": "ci", "test": True,
            "timeout": 30, "overrides": {}} | kw


def pods_of(run_id: str) -> list[str]:
    out = subprocess.run(["podman", "pod", "ps", "-q", "--filter", f"label=chute.run={run_id}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_published_image_gets_a_test_release_that_is_removed(tmp_path, pushed):
    rt = runtime(tmp_path, run_id="step-ok")
    v1 = pushed["v1"]
    rt.images.append(v1.image("candidate"))  # what publish recorded for this stage
    lines: list[str] = []
    exports = deploy(rt, "candidate", cfg("greeter", v1.tag), lines.append)
    assert set(exports) == {"releaseName"} and exports["releaseName"].startswith("t")
    log = "".join(lines)
    assert f"test release of {v1.name}@{v1.digest}" in log  # deployed by digest
    assert f"test release {exports['releaseName']}: healthy" in log and "removed" in log
    assert pods_of("step-ok") == []


def test_a_release_that_does_not_become_healthy_fails_the_step(tmp_path, images):
    rt = runtime(tmp_path, run_id="step-crash")
    name, tag = images["crash"].rsplit(":", 1)
    rt.images.append({"stage": "candidate", "name": name, "tags": [tag], "digest": "sha256:00", "local": True})
    with pytest.raises(StepFailed, match=r"the test release t[0-9a-f]+ of .*crash.* failed"):
        deploy(rt, "candidate", cfg("chute-test-web", tag, timeout=10), lambda _text: None)
    assert pods_of("step-crash") == []


def test_the_step_is_refused_for_untrusted_runs_and_unknown_images(tmp_path, images):
    rt = runtime(tmp_path, trusted=False, run_id="step-untrusted")
    name, tag = images["v1"].rsplit(":", 1)
    rt.images.append({"stage": "candidate", "name": name, "tags": [tag], "digest": "sha256:00", "local": True})
    with pytest.raises(StepFailed, match="not allowed for an untrusted change"):
        deploy(rt, "candidate", cfg("chute-test-web", tag), lambda _text: None)
    assert pods_of("step-untrusted") == []
    with pytest.raises(StepFailed, match="published no image other:1"):
        deploy(runtime(tmp_path), "candidate", cfg("other", "1"), lambda _text: None)
