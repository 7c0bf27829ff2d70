"""Trust tests: a real app on a real database (SQLite and PostgreSQL), git repositories, token helpers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from chute.server.app import create_app
from chute.server.settings import Settings
from tests.conftest import git, make_repo

BLUBBER = """version: v4
base: localhost/debian:bookworm
lives: {in: /srv/app}
variants:
  test:
    copies: [local]
    entrypoint: [sh, test.sh]
"""

# The default branch: a test pipeline, and a publish pipeline whose release stage reads two secrets.
REVIEWED = """pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: release
        build: test
        run:
          credentials:
            - {id: API_TOKEN, name: API_TOKEN}
            - {id: TLS_KEY, name: TLS_KEY_FILE, as: file}
        publish:
          image: true
environments:
  staging:
    port: 18931
"""

# A patch that makes its test stage publish and read the token, and adds an environment.
SNEAKY = """pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
        build: test
        run:
          credentials:
            - {id: API_TOKEN, name: API_TOKEN}
        publish:
          image: true
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: release
        build: test
        run:
          credentials:
            - {id: API_TOKEN, name: API_TOKEN}
            - {id: TLS_KEY, name: TLS_KEY_FILE, as: file}
        publish:
          image: true
environments:
  staging:
    port: 18931
  evil:
    port: 18932
    auto: true
    from: test
    branch: feature
"""

SECRET = "Sup3r/Secret+Value=1&x"
PEM = "-----BEGIN TEST KEY-----\nMIIBVgIBADANBgkqhkiG9w0B\nAQEFAASCAUAwggE8AgEAAkEA\n-----END TEST KEY-----"


def forms(value: str) -> list[str]:
    """The value as it could leak: raw and base64."""
    return [value, base64.b64encode(value.encode()).decode()]


def scan_database(url: str, values: list[str]) -> list[str]:
    """Every "table.column" in the whole database whose text contains one of ``values`` (or its base64)."""
    needles = [f for v in values for f in forms(v)]
    eng = sa.create_engine(url)
    hits: list[str] = []
    try:
        meta = sa.MetaData()
        meta.reflect(eng)
        with eng.connect() as c:
            for table in meta.sorted_tables:
                for row in c.execute(sa.select(table)):
                    for col, cell in zip(table.columns, row, strict=True):
                        text = cell if isinstance(cell, str) else repr(cell)
                        if any(n in text for n in needles):
                            hits.append(f"{table.name}.{col.name}")
    finally:
        eng.dispose()
    return hits


def gerrit_project(client: TestClient, tmp_path: Path, *, name: str = "svc",
                   files: dict[str, str] | None = None) -> tuple[Path, str]:
    """A Gerrit-kind project of a local repository on main; returns (repo, webhook secret)."""
    repo = make_repo(tmp_path / name, files={".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": REVIEWED,
                                            "test.sh": "echo ok\n", **(files or {})})
    body = {"repo": str(repo), "name": name, "review_kind": "gerrit", "review_project": f"services/{name}"}
    r = client.post("/api/v1/projects", json=body, headers=client.admin)  # type: ignore[attr-defined]
    assert r.status_code == 201, r.text
    return repo, r.json()["webhook_secret"]


def patchset(repo: Path, files: dict[str, str], *, number: int = 77, ps: int = 1, message: str = "a patch") -> str:
    """Commit ``files`` on a review branch and publish it as Gerrit's refs/changes/..; returns the commit."""
    git(repo, "checkout", "-q", "-B", f"review-{number}", "main")
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", f"refs/changes/{number % 100:02d}/{number}/{ps}", sha)
    git(repo, "checkout", "-q", "main")
    return sha


def gerrit_event(kind: str, repo_project: str, sha: str, *, number: int = 77, ps: int = 1,
                 branch: str = "main", new_rev: str | None = None) -> dict[str, Any]:
    """A minimal Gerrit stream/webhook event of ``kind`` (patchset-created, change-merged)."""
    event: dict[str, Any] = {
        "type": kind,
        "change": {"project": repo_project, "branch": branch, "number": number, "id": f"I{number:040d}",
                   "subject": "a patch", "url": f"https://gerrit.example.org/{number}",
                   "owner": {"username": "mallory"}},
        "patchSet": {"number": ps, "revision": sha, "ref": f"refs/changes/{number % 100:02d}/{number}/{ps}",
                     "uploader": {"username": "mallory"}},
        "uploader": {"username": "mallory"},
        "eventCreatedOn": 1764000000 + number * 10 + ps + (1 if kind == "change-merged" else 0),
    }
    if kind == "change-merged":
        event["newRev"] = new_rev or sha
        event["submitter"] = {"username": "reviewer"}
    return event


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    monkeypatch.delenv("CHUTE_SECRET_KEY", raising=False)
    settings = Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://chute.test")
    app = create_app(settings, start_background=False)
    with TestClient(app) as client:
        client.app_state = app.state.chute  # type: ignore[attr-defined]
        client.admin = {"Authorization": f"Bearer {app.state.chute.admin_token}"}  # type: ignore[attr-defined]
        client.db_url = db_url  # type: ignore[attr-defined]
        yield client


def token(client: TestClient, scopes: list[str], user: str = "dev") -> dict[str, str]:
    from chute.server.access import create_user, get_user
    from chute.server.auth import new_token

    with client.app_state.db.session() as s:  # type: ignore[attr-defined]
        if get_user(s, user) is None:  # a user with no role: tokens belong to existing users
            create_user(s, user, actor="test")
        text = new_token(s, f"{user} token", user=user, scopes=scopes)
    return {"Authorization": f"Bearer {text}"}
