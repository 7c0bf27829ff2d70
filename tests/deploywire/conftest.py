"""Fixtures for the server's continuous deployment: a live chute server (uvicorn, its background
threads and deploy worker), real podman revisions, a real registry, a real git repository.

Images are the tiny busybox httpd services of tests/deploy (``deploy_images``); the registry is
tests/integration's (CHUTE_TEST_REGISTRY or a docker-registry of our own). Ports 18400-18499.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

import deploy_images

from tests.conftest import git
from tests.integration.conftest import registry  # noqa: F401  (a fixture)

os.environ.setdefault("CONTAINERS_CONF", "/etc/chute/containers.conf")

HEALTH = deploy_images.HEALTH
_PORTS = itertools.count(18400)


def next_port() -> int:
    port = next(_PORTS)
    assert port < 18500, "tests/deploywire owns ports 18400-18499"
    return port


def _podman_problem() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed: run .ci/run (it installs podman)"
    if subprocess.run(["podman", "image", "exists", "localhost/busybox:stable"], check=False).returncode != 0:
        return "localhost/busybox:stable is missing: run .ci/run (make_base_images builds it)"
    return None


@pytest.fixture(scope="session")
def podman_ok() -> None:
    why = _podman_problem()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def images(podman_ok: None) -> dict[str, str]:
    """Local references of the test services: v1, v2 (healthy), bad (health 500), flaky, crash."""
    return {v: deploy_images.build(v) for v in ("v1", "v2", "bad", "flaky", "crash")}


@dataclass(frozen=True)
class Pushed:
    name: str  # registry/repository
    tag: str
    digest: str

    def image(self, stage: str = "production") -> dict[str, Any]:
        """The ``images`` entry of a runner result that published it."""
        return {"stage": stage, "name": self.name, "tags": [self.tag], "digest": self.digest}


@pytest.fixture(scope="session")
def pushed(images: dict[str, str], request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pushed]:
    """The test services pushed to the real registry (as a publish step would), with their digests."""
    registry_url: str = request.getfixturevalue("registry")
    host = registry_url.removeprefix("http://").removeprefix("https://").rstrip("/")
    out: dict[str, Pushed] = {}
    tmp = tmp_path_factory.mktemp("digests")
    for variant in ("v1", "v2", "flaky"):
        name = f"{host}/chute-test/greeter"
        tag = f"{variant}-{images[variant].rsplit('-', 1)[-1]}"
        digestfile = tmp / f"{variant}.digest"
        subprocess.run(["podman", "push", "-q", "--tls-verify=false", "--digestfile", str(digestfile),
                        images[variant], f"{name}:{tag}"], check=True, capture_output=True)
        out[variant] = Pushed(name, tag, digestfile.read_text().strip())
    return out


def config_yaml(environments: str) -> str:
    return (
        "pipelines:\n"
        "  publish:\n"
        "    blubberfile: blubber.yaml\n"
        "    stages:\n"
        "      - name: production\n"
        "        build: production\n"
        "        publish: {image: true}\n"
        "  test:\n"
        "    blubberfile: blubber.yaml\n"
        "    stages:\n"
        "      - name: unit\n"
        "environments:\n" + environments
    )


def env_yaml(name: str, port: int, *, extra: str = "", stable_for: str = "1s") -> str:
    return (f"  {name}:\n    port: {port}\n{extra}"
            f"    health: {{http: {HEALTH}, within: 20s, stable_for: {stable_for}, interval: 0.25}}\n")


def make_repo(path: Path, config: str) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit_file(path, ".pipeline/blubber.yaml", "version: v4\nvariants:\n  production: {}\n  unit: {}\n", "blubber")
    return commit_file(path, ".pipeline/config.yaml", config, "pipeline config")


def commit_file(repo: Path, rel: str, text: str, message: str) -> str:
    p = repo / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def body(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """A running chute server (uvicorn in a thread) with its state, token and podman target."""

    url: str
    token: str
    state: Any
    target: Any
    tmp: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def add_project(self, repo: Path, name: str = "greeter") -> dict[str, Any]:
        r = self.http.post("/api/v1/projects", json={"repo": str(repo), "name": name})
        assert r.status_code == 201, r.text
        return r.json()

    def trigger(self, project: str = "greeter", pipelines: list[str] | None = None) -> list[dict[str, Any]]:
        r = self.http.post(f"/api/v1/projects/{project}/trigger", json={"pipelines": pipelines or ["publish"]})
        assert r.status_code == 201, r.text
        return r.json()

    def agent(self, name: str = "a1") -> Any:
        from chute.agent.client import AgentClient

        return AgentClient(self.url, self.token, name)

    def complete(self, agent: Any, job: dict[str, Any], images: list[dict[str, Any]],
                 promotions: list[dict[str, Any]] | None = None) -> None:
        """Play the claimed job through the agent protocol: one stage that published ``images``."""
        jid = job["job_id"]
        agent.graph(jid, {"stages": ["production"], "edges": []})
        agent.stage(jid, "production", "running")
        agent.logs(jid, [{"seq": 1, "stage": "production", "text": "published\n"}])
        agent.stage(jid, "production", "success")
        agent.complete(jid, {"status": "success", "error": "", "duration": 1.0, "images": images,
                             "promotions": promotions or [],
                             "stages": [{"name": "production", "status": "success"}]})

    def environments(self, project: str = "greeter") -> dict[str, Any]:
        r = self.http.get(f"/api/v1/projects/{project}/environments")
        assert r.status_code == 200, r.text
        return {e["name"]: e for e in r.json()["environments"]} | {"_": r.json()}

    def history(self, env: str, project: str = "greeter") -> list[dict[str, Any]]:
        r = self.http.get(f"/api/v1/projects/{project}/environments/{env}/history")
        assert r.status_code == 200, r.text
        return r.json()

    def events(self, *kinds: str, **where: Any) -> list[Any]:
        from sqlalchemy import select

        from chute.store import Event

        with self.state.db.session() as s:
            q = select(Event).order_by(Event.id)
            if kinds:
                q = q.where(Event.kind.in_(kinds))
            for key, value in where.items():
                q = q.where(getattr(Event, key) == value)
            return list(s.scalars(q))

    def mirror_sync(self, project: str = "greeter") -> None:
        from sqlalchemy import select

        from chute.server import services
        from chute.store import Project

        with self.state.db.session() as s:
            p = s.scalars(select(Project).where(Project.name == project)).one()
            services.mirror(self.state.settings, p).sync()


@pytest.fixture
def live(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, podman_ok: None) -> Iterator[Live]:
    import uvicorn

    from chute.deploy import PodmanTarget
    from chute.server.app import create_app
    from chute.server.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    monkeypatch.setenv("CHUTE_POLL_INTERVAL", "3600")
    port = _free_port()
    settings = Settings(home=home, database_url=db_url, embedded_agent=False, port=port,
                        base_url=f"http://127.0.0.1:{port}")
    app = create_app(settings)
    state = app.state.chute
    target = PodmanTarget(tmp_path / "podman", extra_labels={"chute.test": "1"}, stop_timeout=1)
    state.deploys.deployer.targets["podman"] = target
    state.deploys.tick_interval = 0.3
    state.deploys.refresh_interval = 0.5
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for("the server to start", lambda: server.started, timeout=30, interval=0.05)
    live = Live(f"http://127.0.0.1:{port}", state.admin_token, state, target, tmp_path)
    try:
        yield live
    finally:
        try:
            state.deploys.join(timeout=60)
            from sqlalchemy import select

            from chute.store import Project

            with state.db.session() as s:
                names = list(s.scalars(select(Project.name)))
            for name in names:
                for env in state.deploys.environments(name).values():
                    target.down(name, env)
        finally:
            live.http.close()
            server.should_exit = True
            thread.join(30)
