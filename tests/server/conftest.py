"""A real chute app on a real database (SQLite or PostgreSQL), driven through HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chute.server.app import create_app
from chute.server.settings import Settings


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    settings = Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://chute.test")
    app = create_app(settings, start_background=False)
    with TestClient(app) as client:
        client.app_state = app.state.chute  # type: ignore[attr-defined]
        client.admin = {"Authorization": f"Bearer {app.state.chute.admin_token}"}  # type: ignore[attr-defined]
        yield client
