"""chute run end to end with real podman and a real registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import leftover_containers, write_repo

pytestmark = [pytest.mark.podman]

CHUTE = [sys.executable, "-m", "chute"]

BLUBBER = """version: v4
base: localhost/debian:bookworm
lives: {in: /srv/app}
variants:
  test:
    copies: [local]
    entrypoint: [sh, test.sh]
  production:
    copies: [local]
    entrypoint: [sh, serve.sh]
  broken:
    copies: [local]
    builder:
      command: [sh, -c, "echo compiling; echo 'error: no such thing' >&2; exit 3"]
"""

CONFIG = """pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: test
      - name: production
        build: production
        publish:
          image:
            tags: [latest, "Stable/Release"]
"""


def repo(tmp_path: Path, test_sh: str = "echo 'Ran 3 tests'; echo OK\n", config: str = CONFIG) -> Path:
    return write_repo(tmp_path / "svc", {
        ".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": config,
        "test.sh": test_sh, "serve.sh": "echo serving\n",
    })


def chute(*args: str, cwd: Path, timeout: float = 300,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CHUTE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_a_test_pipeline_passes_and_reports_its_stages(podman, tmp_path: Path) -> None:
    r = chute("run", "test", "--json", cwd=repo(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "success"
    (p,) = doc["pipelines"]
    assert [(s["name"], s["status"]) for s in p["stages"]] == [("test", "success")]
    st = p["stages"][0]
    assert len(st["exports"]["imageID"]) == 64 and st["exports"]["container"].startswith("chute-run-")
    log = Path(st["log"]).read_text()
    assert "Ran 3 tests" in log
    # Teardown removed the container it made.
    assert subprocess.run(["podman", "container", "exists", st["exports"]["container"]]).returncode == 1


def test_a_failing_test_fails_the_run_and_shows_its_output(podman, tmp_path: Path) -> None:
    r = chute("run", "test", cwd=repo(tmp_path, "echo 'FAIL: test_greeting'; exit 1\n"))
    assert r.returncode == 1
    assert "the command exited with status 1" in r.stdout
    log_line = next(line for line in r.stdout.splitlines() if "log:" in line)
    assert "FAIL: test_greeting" in Path(log_line.split("log:", 1)[1].strip()).read_text()


def test_a_build_error_names_the_failing_instruction(podman, tmp_path: Path) -> None:
    cfg = "pipelines:\n  b:\n    blubberfile: blubber.yaml\n    stages:\n      - name: broken\n        build: broken\n"
    r = chute("run", "--json", cwd=repo(tmp_path, config=cfg))
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    err = doc["pipelines"][0]["stages"][0]["error"]
    assert "exit 3" in err and "error: no such thing" in err, err


def test_publish_pushes_every_tag_with_one_digest(podman, registry: str, tmp_path: Path) -> None:
    r = chute("run", "publish", "--json", "--registry", registry, cwd=repo(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    (img,) = doc["images"]
    host = registry.removeprefix("http://")
    assert img["name"] == f"{host}/svc"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path / "svc", capture_output=True,
                            text=True).stdout.strip()
    primary = img["tags"][0]
    assert primary.endswith("-production") and "latest" in img["tags"] and commit in img["tags"]
    assert "stable-release" in img["tags"]  # sanitised, as published
    exports = doc["pipelines"][0]["stages"][1]["exports"]
    assert exports["imageTag"] == primary  # PipelineLib bug #5 fixed: the export names a pushed tag
    for tag in img["tags"]:
        resp = httpx.head(f"{registry}/v2/svc/manifests/{tag}", headers={"Accept": ", ".join([
            "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"])})
        assert resp.status_code == 200 and resp.headers["docker-content-digest"] == img["digest"]
    # Teardown untagged the local copies the push made (one timestamp tag per run would pile up);
    # only this run's own tags are checked: other runs may hold "latest" at the same time.
    for tag in (primary, commit):
        assert subprocess.run(["podman", "image", "exists", f"{host}/svc:{tag}"]).returncode == 1


def test_a_registry_that_is_down_fails_clearly(podman, tmp_path: Path) -> None:
    r = chute("run", "publish", "--registry", "http://127.0.0.1:9", cwd=repo(tmp_path), timeout=300)
    assert r.returncode == 1
    assert "127.0.0.1:9" in r.stdout and "published images" not in r.stdout


def test_ctrl_c_stops_the_run_and_leaves_no_container(podman, tmp_path: Path) -> None:
    d = repo(tmp_path, "echo started; sleep 120\n")
    run_id = f"ctrl-c-{os.getpid()}"
    proc = subprocess.Popen([*CHUTE, "run", "test", "--verbose"], cwd=d, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "CHUTE_RUN_ID": run_id})
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while time.time() < deadline and not any("started" in line for line in lines):
        time.sleep(0.2)
    seen = "".join(lines)
    assert "started" in seen, seen
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    assert proc.returncode == 130
    assert time.time() - t0 < 30
    assert leftover_containers(run_id) == []


def test_git_directory_is_not_copied_into_images(podman, tmp_path: Path) -> None:
    d = repo(tmp_path, "test -d .git && echo 'GIT IS HERE' && exit 1; ls -a; echo clean\n")
    r = chute("run", "test", "--json", cwd=d)
    assert r.returncode == 0, r.stdout
    doc = json.loads(r.stdout)
    assert "clean" in Path(doc["pipelines"][0]["stages"][0]["log"]).read_text()
