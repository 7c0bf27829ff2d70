"""The runner applies the isolation settings to every run step, and gives secrets as env values and files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chute.runner import Isolation, RunRequest, run_pipelines
from tests.conftest import make_repo

pytestmark = [pytest.mark.podman]

BLUBBER = """version: v4
base: localhost/debian:bookworm
lives: {in: /srv/app}
variants:
  tools:
    copies: [local]
    entrypoint: [sh, step.sh]
"""

# One build, then three steps in parallel on its image, each under the same isolation settings.
CONFIG = """pipelines:
  limits:
    blubberfile: blubber.yaml
    execution: [[tools, hog], [tools, slow], [tools, secret]]
    stages:
      - {name: tools, build: tools, run: false}
      - {name: hog, run: {image: '${tools.imageID}', arguments: [hog]}}
      - {name: slow, run: {image: '${tools.imageID}', arguments: [slow]}}
      - name: secret
        run:
          image: '${tools.imageID}'
          arguments: [secret]
          credentials:
            - {id: DEPLOY_KEY, name: DEPLOY_KEY_FILE, as: file}
            - {id: API_TOKEN, name: TOKEN}
        copy:
          - {source: /tmp/digest.txt, destination: out/digest.txt}
"""

STEP = """case "$1" in
  hog) head -c 400000000 /dev/zero | tail >/dev/null ;;
  slow) echo sleeping; sleep 60 ;;
  secret)
    sha256sum < "$DEPLOY_KEY_FILE" | cut -d' ' -f1 > /tmp/digest.txt
    echo "token=$TOKEN file=$DEPLOY_KEY_FILE"
    echo "nope" > "$DEPLOY_KEY_FILE" 2>/dev/null && echo WRITABLE || echo READ-ONLY ;;
esac
"""

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
       "-----END OPENSSH PRIVATE KEY-----\n")
TOKEN = "tok-3f9a8b7c6d5e"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (.ci/run installs it)")
    os.environ.setdefault("CONTAINERS_CONF", "/etc/chute/containers.conf")
    if subprocess.run(["podman", "image", "exists", "localhost/debian:bookworm"]).returncode != 0:
        pytest.fail("localhost/debian:bookworm is missing: run .ci/run (or scripts/lib.sh make_base_images)")
    return make_repo(tmp_path_factory.mktemp("limits") / "svc", files={
        ".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": CONFIG, "step.sh": STEP})


def test_limits_end_steps_with_messages_that_say_which_and_secrets_arrive_as_file_and_value(
        repo: Path, tmp_path: Path) -> None:
    iso = Isolation(cpus=1, memory="48m", pids=64, timeout=4, network_trusted="none", network_untrusted="none")
    req = RunRequest(repo_dir=repo, pipelines=["limits"], project="svc", run_id="trust-limits", isolation=iso,
                     secrets={"DEPLOY_KEY": KEY, "API_TOKEN": TOKEN})
    doc = run_pipelines(req, workdir=tmp_path / "work")
    assert doc["status"] == "failure"
    stages = {st["name"]: st for st in doc["pipelines"][0]["stages"]}
    assert stages["hog"]["error"].startswith("the container was killed (SIGKILL, exit status 137), most likely for "
                                             "going over its memory limit of 48m"), stages["hog"]["error"]
    log = Path(stages["hog"]["log"]).read_text()
    assert "chute: limits: 1 CPUs, 48m memory, 64 processes, 4 s; network: none" in log
    assert stages["slow"]["error"].startswith("the container ran longer than 4 s and was stopped"), stages["slow"]

    secret = stages["secret"]
    assert secret["status"] == "success", secret
    log = Path(secret["log"]).read_text()
    assert "token=*** file=/run/secrets/DEPLOY_KEY" in log and "READ-ONLY" in log and TOKEN not in log
    # The file held the value (its digest came back through `copy`, after the mount was gone).
    assert (repo / "out" / "digest.txt").read_text().strip() == hashlib.sha256(KEY.encode()).hexdigest()


def test_isolation_settings_come_from_the_environment_with_clear_errors() -> None:
    agent = Isolation.from_env({}, agent=True)
    assert (agent.network_trusted, agent.network_untrusted, agent.memory, agent.pids, agent.timeout) == \
        ("isolated", "isolated", "2g", 1024, 1200.0)
    local = Isolation.from_env({})
    assert local.network_trusted == "default"  # chute run on a workstation: the engine's default
    custom = Isolation.from_env({"CHUTE_RUN_MEMORY": "512m", "CHUTE_RUN_CPUS": "none", "CHUTE_RUN_NETWORK": "default",
                                 "CHUTE_RUN_NETWORK_UNTRUSTED": "none", "CHUTE_RUN_TIMEOUT": "90"}, agent=True)
    assert (custom.memory, custom.cpus, custom.network_for(True), custom.network_for(False), custom.timeout) == \
        ("512m", None, "default", "none", 90.0)
    assert Isolation.from_env({"CHUTE_RUN_MEMORY": "lots"}).error == \
        "CHUTE_RUN_MEMORY='lots' is not a size; write bytes or e.g. 512m, 2g"
    assert "cannot be used for run steps" in Isolation.from_env({"CHUTE_RUN_NETWORK": "host"}).error
    bad = RunRequest(repo_dir=Path("/nonexistent"), isolation=Isolation.from_env({"CHUTE_RUN_PIDS": "-1"}))
    assert run_pipelines(bad)["error"] == "CHUTE_RUN_PIDS='-1' is not a whole number of processes"
