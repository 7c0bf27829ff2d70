"""Access from the start: every mutating call needs a valid bearer token; the admin token file is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from chute.server.auth import check_token


def test_admin_token_file_is_created_with_mode_0600(server) -> None:
    home = server.app_state.settings.home
    path = Path(home) / "admin-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == server.app_state.admin_token
    with server.app_state.db.session() as s:
        who = check_token(s, server.app_state.admin_token)
        assert who is not None and who.can("admin")
        assert check_token(s, server.app_state.admin_token + "x") is None
        assert check_token(s, "chute_nothing_here") is None


def test_mutating_calls_without_or_with_a_bad_token_get_401(server, tmp_path) -> None:
    calls = [
        ("post", "/api/v1/projects", {"repo": str(tmp_path)}),
        ("post", "/api/v1/projects/x/trigger", {}),
        ("post", "/api/v1/runs/1/rerun", {}),
        ("post", "/api/v1/runs/1/cancel", None),
        ("post", "/api/v1/agents/claim", {"agent": "a", "wait": 0}),
        ("post", "/api/v1/jobs/1/complete", {"agent": "a", "result": {}}),
    ]
    for method, path, body in calls:
        r = getattr(server, method)(path, json=body)
        assert r.status_code == 401, (path, r.status_code, r.text)
        r = getattr(server, method)(path, json=body, headers={"Authorization": "Bearer chute_abc_def"})
        assert r.status_code == 401, (path, r.status_code)


def test_reads_are_open_and_the_openapi_is_served(server) -> None:
    assert server.get("/api/v1/projects").json() == []
    spec = server.get("/openapi.json").json()
    assert "/api/v1/runs/{run_id}/rerun" in spec["paths"]
    assert "/v1/{variant}" in spec["paths"]
    assert server.get("/api/docs").status_code == 200


def test_the_token_survives_a_restart(server, db_url, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from chute.server.app import create_app

    first = server.app_state.admin_token
    app = create_app(server.app_state.settings, start_background=False)
    with TestClient(app):
        assert app.state.chute.admin_token == first
