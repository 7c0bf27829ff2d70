"""chute serve with its embedded agent: a change goes in, runs on the agent, results come back."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from chute.server.app import create_app
from chute.server.settings import Settings
from tests.conftest import git
from tests.integration.test_run import BLUBBER, CONFIG

pytestmark = [pytest.mark.podman]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path: Path, registry: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    port = _free_port()
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'chute.db'}", port=port, registry=registry,
                        embedded_agent=True, poll_interval=3600, lease_seconds=30)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}", app.state.chute.admin_token
    finally:
        server.should_exit = True
        t.join(30)


def _wait(client: httpx.Client, run_id: int, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("success", "failure", "error", "cancelled"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def test_trigger_runs_on_the_embedded_agent_and_publishes(live_server, tmp_path: Path, registry: str) -> None:
    url, token = live_server
    from tests.conftest import make_repo

    repo = make_repo(tmp_path / "svc", files={".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": CONFIG,
                                              "test.sh": "echo 'Ran 3 tests'\n", "serve.sh": "echo serving\n"})
    c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    created = c.post("/api/v1/projects", json={"repo": str(repo)}).json()
    assert [p["name"] for p in created["pipelines"]] == ["test", "publish"]
    # A push to main runs the publishing pipeline (trusted).
    (run,) = c.post("/api/v1/projects/svc/trigger", json={}).json()
    assert run["pipeline"] == "publish" and run["trusted"]
    done = _wait(c, run["id"])
    assert done["status"] == "success", done
    assert [(s["name"], s["status"]) for s in done["stages"]] == [("test", "success"), ("production", "success")]
    (img,) = done["images"]
    assert img["name"] == f"{registry.removeprefix('http://')}/svc" and img["digest"].startswith("sha256:")
    assert all(ref.endswith(img["digest"]) for ref in img["references"])
    logs = "".join(ch["text"] for ch in c.get(f"/api/v1/runs/{run['id']}/logs").json())
    assert "Ran 3 tests" in logs
    # The run page shows the image reference first thing.
    page = httpx.get(f"{url}/runs/{run['id']}").text
    assert img["references"][0] in page

    # A patch to another branch only tests, and cannot publish.
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "test.sh").write_text("echo 'Ran 4 tests'; exit 1\n")
    git(repo, "commit", "-qam", "break the tests")
    (run2,) = c.post("/api/v1/projects/svc/trigger", json={"ref": "feature", "pipelines": ["test"]}).json()
    done2 = _wait(c, run2["id"])
    assert done2["status"] == "failure" and not done2["trusted"]
    assert "exited with status 1" in done2["reason"]
    # Rerun from the API gives a new run of the same commit.
    again = c.post(f"/api/v1/runs/{run2['id']}/rerun", json={}).json()
    assert again["change"]["commit"] == done2["change"]["commit"]
    assert _wait(c, again["id"])["status"] == "failure"
