"""A real chute app on a real database (SQLite or PostgreSQL) with users in every role.

``World`` is the app (FastAPI's TestClient: the real ASGI app, real HTTP semantics, in
process), a registered project ``svc`` with environments ``staging`` and ``production``,
and these people, each with a password and a token named ``login`` like the one ``chute login``
makes (its actor in the ledger is ``<user> (token login)``):

=========  ===========================================
olga       no role
vic        viewer of svc
dev        developer of svc
dora       deployer of svc on staging only
pat        admin of svc
sam        server admin
=========  ===========================================
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chute.server.app import create_app
from chute.server.settings import Settings
from chute.store import Event

CONFIG = """\
pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
environments:
  staging:
    target: podman
    port: 18281
    health: {http: /healthz, within: 30s}
  production:
    target: podman
    port: 18282
    after: staging
    health: {http: /healthz, within: 30s}
"""
BLUBBER = "version: v4\nbase: localhost/busybox:stable\nvariants:\n  test: {}\n"
IMAGE = "registry.example/svc@sha256:" + "ab" * 32
PEOPLE = {"olga": None, "vic": ("viewer", []), "dev": ("developer", []), "dora": ("deployer", ["staging"]),
          "pat": ("admin", []), "sam": None}


def password_of(user: str) -> str:
    return f"pw-{user}-correct-horse"


def make_repo(path: Path) -> Path:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org"}
    (path / ".pipeline").mkdir(parents=True)
    (path / ".pipeline" / "config.yaml").write_text(CONFIG)
    (path / ".pipeline" / "blubber.yaml").write_text(BLUBBER)
    (path / "app.py").write_text("print('hi')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)
    return path


@dataclass
class World:
    app: Any
    client: TestClient
    repo: Path
    tmp: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Any:
        return self.app.state.chute

    @property
    def admin_token(self) -> str:
        return self.state.admin_token

    def h(self, who: str | None) -> dict[str, str]:
        """Headers of ``who`` (a key of ``tokens``; None: anonymous)."""
        if who is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, method: str, path: str, who: str | None, body: Any = None, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, json=body, headers=self.h(who), **kw)

    def admin(self, method: str, path: str, body: Any = None, expect: int | None = None, **kw: Any) -> Any:
        r = self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {self.admin_token}"},
                                **kw)
        assert r.status_code < 300 if expect is None else r.status_code == expect, (path, r.status_code, r.text)
        return r.json() if r.content else None

    def last_event_id(self) -> int:
        with self.state.db.session() as s:
            return s.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0

    def events_after(self, event_id: int, *kinds: str) -> list[Event]:
        with self.state.db.session() as s:
            q = select(Event).where(Event.id > event_id).order_by(Event.id)
            if kinds:
                q = q.where(Event.kind.in_(kinds))
            return list(s.scalars(q))

    def login(self, user: str, password: str | None = None, **extra: Any) -> httpx.Response:
        return self.client.post("/api/v1/login", json={"user": user, "password": password or password_of(user),
                                                       **extra})

    # runs and requests to act on
    def queued_run(self) -> int:
        return self.admin("POST", "/api/v1/projects/svc/trigger", {"pipelines": ["test"]})[0]["id"]

    def finished_run(self) -> int:
        run = self.queued_run()
        self.admin("POST", f"/api/v1/runs/{run}/cancel")
        return run

    def deploy_request(self, env: str) -> int:
        return self.admin("POST", f"/api/v1/projects/svc/environments/{env}/deploy", {"image": IMAGE})["id"]


def build_world(db_url: str, tmp: Path, **settings: Any) -> Iterator[World]:
    home = tmp / "home"
    home.mkdir()
    repo = make_repo(tmp / "svc")
    s = Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://testserver", **settings)
    app = create_app(s, start_background=False)
    with TestClient(app) as client:
        w = World(app, client, repo, tmp)
        w.admin("POST", "/api/v1/projects", {"repo": str(repo), "name": "svc"})
        for user, grant in PEOPLE.items():
            w.admin("POST", "/api/v1/users", {"name": user, "password": password_of(user),
                                              "server_admin": user == "sam"})
            if grant:
                w.admin("POST", "/api/v1/projects/svc/roles", {"user": user, "role": grant[0],
                                                               "environments": grant[1]})
            # The token `chute login` would make (the login itself is tested in test_cli/test_ui; making it here
            # with the admin token saves an argon2 verification per person and world).
            w.tokens[user] = w.admin("POST", "/api/v1/tokens", {"name": "login", "user": user, "expires": "30d",
                                                               "scopes": ["read", "run", "deploy", "admin"]})["token"]
        w.tokens["admin"] = w.admin_token
        yield w


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from build_world(db_url, tmp_path)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    """For checks that do not depend on the database (protocols, throttling, page markup): SQLite only,
    to keep the suite short; everything that stores access state runs on both databases."""
    yield from build_world(f"sqlite:///{tmp_path / 'chute.db'}", tmp_path)


# ------------------------------------------------------------------ a live server (for the CLI)
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    url: str
    world: World


@pytest.fixture
def live(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """``world``'s app served by uvicorn on a free port (a thread of this process)."""
    import uvicorn

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CHUTE_CREDENTIALS", raising=False)
    monkeypatch.delenv("CHUTE_TOKEN", raising=False)
    monkeypatch.delenv("CHUTE_SERVER", raising=False)
    monkeypatch.setenv("CHUTE_HOME", str(tmp_path / "cli-home"))  # no admin-token file for the CLI to find
    gen = build_world(db_url, tmp_path)
    w = next(gen)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(w.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", w)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        gen.close()
