"""SIGKILL the server in the middle of deployments: the environment ends on a known revision.

A real ``chute serve --no-agent`` process deploys the tiny busybox httpd images of tests/deploy
to a podman environment (revisions as pods, a router process on the environment's port). Each
round asks for a deployment or a rollback through the API and kills the server (SIGKILL, alone
or with its process group) at a random moment of one of these phases, chosen by the seed:

* ``started``: the new revision is deploying and takes no traffic yet (pod starting, health gate);
* ``serving``: traffic was switched to it and it is being watched for ``stable_for``;
* ``rollback``: a rollback by a person is under way (before or after its own switch).

The server is restarted; once the deploy lock's lease (3 s here) has run out it finishes what the
dead one left. Then: no deployment is pending or deploying and no request running, exactly one
revision is healthy and its pod is the only one left, the router serves that revision, and what
answers on the port is that revision's image.
"""

from __future__ import annotations

import random
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_repo

from . import checks
from .conftest import need_podman
from .harness import Cluster, podman

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

import deploy_images  # tests/deploy is not a package: found through sys.path

pytestmark = [pytest.mark.slow, pytest.mark.podman]

PHASES = ("started", "serving", "rollback")
ROUNDS = 5  # each phase once, then two chosen by the seed
STABLE_FOR = 4.0


def _port() -> int:
    """A free port of this test's range (18500-18599)."""
    for port in random.sample(range(18500, 18600), 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 18500-18599")


def _config(port: int) -> str:
    return ("pipelines:\n  test:\n    stages:\n      - name: unit\n        exports: {ok: 'yes'}\n"
            "environments:\n  prod:\n"
            f"    port: {port}\n"
            f"    health: {{http: {deploy_images.HEALTH}, within: 30s, stable_for: {STABLE_FOR:g}s, interval: 0.25}}\n")


class Env:
    def __init__(self, cluster: Cluster, project: str, port: int) -> None:
        self.cluster, self.project, self.port = cluster, project, port
        self.api = f"/api/v1/projects/{project}/environments/prod"

    def get(self, path: str) -> Any:
        with self.cluster.http() as http:
            r = http.get(self.api + path)
            r.raise_for_status()
            return r.json()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.cluster.http(timeout=30) as http:
            r = http.post(self.api + path, json=body)
            assert r.status_code == 202, r.text
            return r.json()

    def history(self) -> list[dict[str, Any]]:
        return self.get("/history")

    def requests(self) -> list[dict[str, Any]]:
        return self.get("/requests")

    def answer(self) -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=3).text.strip()
        except httpx.HTTPError as exc:
            return type(exc).__name__

    def pods(self) -> list[str]:
        from chute.deploy.manifests import LABEL_ENVIRONMENT, LABEL_PROJECT, dns_name

        out = podman("pod", "ps", "--format", "{{.Name}}",
                     "--filter", f"label={LABEL_PROJECT}={dns_name(self.project)}",
                     "--filter", f"label={LABEL_ENVIRONMENT}=prod").stdout
        return sorted(out.split())


def _wait(what: str, check: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def _revision(env: Env, revision: int) -> dict[str, Any] | None:
    return next((d for d in env.history() if d["revision"] == revision), None)


def _settled(env: Env) -> list[dict[str, Any]] | None:
    """The history, once nothing is pending, deploying or running any more."""
    history = env.history()
    if any(d["status"] in ("pending", "deploying") for d in history):
        return None
    if any(r["status"] in ("queued", "running") for r in env.requests()):
        return None
    return history


def test_an_environment_ends_on_a_known_revision_when_the_server_dies_mid_deploy(tmp_path: Path, seed: int) -> None:
    need_podman("localhost/busybox:stable")
    images = {v: deploy_images.build(v) for v in ("v1", "v2")}
    version_of = {ref: v for v, ref in images.items()}
    rng = random.Random(seed)
    phases = [*PHASES, *(rng.choice(PHASES) for _ in range(ROUNDS - len(PHASES)))]
    rng.shuffle(phases)
    port = _port()
    project = f"chaosdeploy-{uuid.uuid4().hex[:6]}"
    make_repo(tmp_path / "repo", files={".pipeline/config.yaml": _config(port)})
    cluster = Cluster(tmp_path / "cluster", f"sqlite:///{tmp_path / 'chute.db'}", agents=0,
                      server_env={"CHUTE_DEPLOY_LEASE_SECONDS": "3"})
    env = Env(cluster, project, port)
    log: list[str] = []
    problems: list[str] = []
    try:
        cluster.start_server()
        with cluster.http(timeout=60) as http:
            r = http.post("/api/v1/projects", json={"repo": str(tmp_path / "repo"), "name": project})
            assert r.status_code == 201, r.text
        env.post("/deploy", {"image": images["v1"], "reason": "first release"})
        first = _wait("the first release", lambda: (h := _settled(env)) and h, 120)
        assert [d["status"] for d in first] == ["healthy"] and env.answer() == "v1", first
        for round_no, phase in enumerate(phases, 1):
            line, problem = _round(cluster, env, images, version_of, rng, round_no, phase)
            log.append(line)
            if problem:
                problems.append(problem)
    finally:
        cluster.kill_all()
        from chute.deploy import PodmanTarget, parse_environments

        target = PodmanTarget(cluster.home / "deploy" / "podman")
        for e in parse_environments({"prod": {"port": port}}).values():
            target.down(project, e)
    print("\n".join(log))
    problems += checks.sqlite_problems(str(tmp_path / "chute.db"))
    problems += checks.deployment_problems(f"sqlite:///{tmp_path / 'chute.db'}")
    assert not problems, "\n".join([f"seed {seed}", *log, *problems])


def _round(cluster: Cluster, env: Env, images: dict[str, str], version_of: dict[str, str], rng: random.Random,
           round_no: int, phase: str) -> tuple[str, str | None]:
    """One deploy or rollback, the server killed in ``phase``, restarted: (what happened, problem or None)."""
    def other() -> str:
        current = next(d for d in env.history() if d["status"] == "healthy")
        return images["v2"] if version_of.get(current["image_ref"]) == "v1" else images["v1"]

    if phase == "rollback":
        # Something to roll back from: the other image, deployed in peace first.
        env.post("/deploy", {"image": other(), "reason": f"chaos round {round_no}: before the rollback"})
        _wait("the deploy before the rollback", lambda: (h := _settled(env)) and h[0]["status"] == "healthy", 120)
    history = env.history()
    newest = max(d["revision"] for d in history)  # the request's revision comes after every earlier one
    if phase == "rollback":
        req = env.post("/rollback", {"reason": f"chaos round {round_no}"})
    else:
        req = env.post("/deploy", {"image": other(), "reason": f"chaos round {round_no}"})
    revision = _wait(f"request {req['id']} to make a revision", lambda: next(
        (d["revision"] for d in env.history() if d["revision"] > newest), None), 60, 0.05)
    if phase == "serving":
        _wait("the switch", lambda: (d := _revision(env, revision)) and d["serving_at"], 60, 0.05)
        time.sleep(rng.uniform(0, STABLE_FOR * 0.75))
    else:
        _wait("the deploy to start", lambda: (d := _revision(env, revision)) and d["status"] == "deploying", 60, 0.05)
        time.sleep(rng.uniform(0, 1.5))
    before = _revision(env, revision) or {}
    group = rng.random() < 0.5
    cluster.server.kill(group=group)
    what = (f"round {round_no}: {phase}, revision {revision} was {before.get('status')} "
            f"(serving since {before.get('serving_at')}), SIGKILL{' group' if group else ''}; "
            f"the port answered {env.answer()!r}")
    cluster.start_server()
    history = _wait(f"the recovery of {what}", lambda: _settled(env), 90, 0.5)
    healthy = [d for d in history if d["status"] == "healthy"]
    if len(healthy) != 1:
        return what, f"{what}: {len(healthy)} healthy revisions: {history}"
    (known,) = healthy
    expected = version_of.get(known["image_ref"])
    answered = _wait("the known revision to answer", lambda: env.answer() == expected and expected, 20)
    pods = _wait("the other revisions' pods to go", lambda: (found := env.pods()) and len(found) == 1 and found,
                 60, 0.5)
    served = _served_revision(cluster, env.project, env.port)
    line = (f"{what} -> revision {known['revision']} ({expected}) healthy and serving; "
            f"revision {revision} {(_revision(env, revision) or {}).get('status')}")
    if not pods[0].endswith(f"-r{known['revision']}-pod-0") or served != known["revision"] or not answered:
        return line, f"{what}: healthy revision {known['revision']}, router serves {served}, pods {pods}"
    return line, None


def _served_revision(cluster: Cluster, project: str, port: int) -> int | None:
    from chute.deploy import PodmanTarget, parse_environments

    target = PodmanTarget(cluster.home / "deploy" / "podman")
    (e,) = parse_environments({"prod": {"port": port}}).values()
    return target.served_revision(project, e)
