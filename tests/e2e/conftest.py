"""Browser tests: a real chute server (uvicorn on a free port), Debian's Chromium driven by Playwright.

Never run ``playwright install``: Playwright launches /usr/bin/chromium
(notes/machine.md §6). Screenshots go to ``test-artifacts/e2e/`` (gitignored;
CI keeps the folder).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHUTE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"

PIPELINE_CONFIG = """\
# A service that tests itself, then builds and publishes its production image.
pipelines:
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: test
      - name: production
        build: production
        publish:
          image:
            tags: [latest]
"""
BLUBBER = """\
version: v4
base: localhost/debian:bookworm
variants:
  test:
    entrypoint: [python3, -m, unittest]
  production:
    entrypoint: [python3, app.py]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    app: Any
    token: str
    repo: Path
    commit: str


def make_repo(path: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    (path / ".pipeline").mkdir(parents=True)
    (path / ".pipeline" / "config.yaml").write_text(PIPELINE_CONFIG)
    (path / ".pipeline" / "blubber.yaml").write_text(BLUBBER)
    (path / "app.py").write_text("print('hello from greeter')\n")
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "Greeter: say hello")
    return git("rev-parse", "HEAD")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    import uvicorn

    from chute.server.app import create_app
    from chute.server.settings import Settings

    repo = tmp_path / "greeter"
    commit = make_repo(repo)
    port = free_port()
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'chute.db'}",
                        host="127.0.0.1", port=port, embedded_agent=False)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="chute-e2e-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the chute server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield LiveServer(settings.base_url, app, app.state.chute.admin_token, repo, commit)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]' (the test extra has it)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: apt-get install chromium (.ci/run installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
