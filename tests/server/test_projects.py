"""Self-service onboarding: register a repository, get the webhook URL and secret."""

from __future__ import annotations

from tests.conftest import make_repo


def test_add_a_repository_without_pipeline_config(server, tmp_path) -> None:
    repo = make_repo(tmp_path / "svc", files={"README.md": "hi\n"})
    r = server.post("/api/v1/projects", json={"repo": str(repo)}, headers=server.admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "svc" and body["default_branch"] == "main"
    assert body["has_pipeline"] is False and body["pipelines"] == []
    assert body["webhook_url"] == "http://chute.test/webhooks/git?project=svc"
    assert len(body["webhook_secret"]) >= 24
    # The secret is shown once at registration, never in listings.
    listed = server.get("/api/v1/projects").json()
    assert [p["name"] for p in listed] == ["svc"] and "webhook_secret" not in listed[0]


def test_duplicate_names_and_non_repositories_are_refused_clearly(server, tmp_path) -> None:
    repo = make_repo(tmp_path / "svc", files={"a": "1"})
    assert server.post("/api/v1/projects", json={"repo": str(repo)}, headers=server.admin).status_code == 201
    r = server.post("/api/v1/projects", json={"repo": str(repo)}, headers=server.admin)
    assert r.status_code == 409 and "already exists" in r.json()["detail"] and "--name" in r.json()["hint"]
    (tmp_path / "plain").mkdir()
    r = server.post("/api/v1/projects", json={"repo": str(tmp_path / "plain"), "name": "p"}, headers=server.admin)
    assert r.status_code == 400 and "not a git repository" in r.json()["detail"]
    r = server.get("/api/v1/projects/nope")
    assert r.status_code == 404 and "no project named" in r.json()["detail"]


def test_a_broken_pipeline_config_fails_its_change_at_once_with_the_error(server, tmp_path) -> None:
    from tests.conftest import git

    good = "pipelines:\n  test:\n    stages:\n      - name: t\n"
    repo = make_repo(tmp_path / "svc", files={".pipeline/config.yaml": good})
    assert server.post("/api/v1/projects", json={"repo": str(repo)}, headers=server.admin).status_code == 201
    (repo / ".pipeline/config.yaml").write_text("pipelines:\n  test:\n    stages:\n      - nmae: t\n")
    git(repo, "commit", "-qam", "typo")
    runs = server.post("/api/v1/projects/svc/trigger", json={}, headers=server.admin).json()
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "error" and run["pipeline"] == "config"
    assert ".pipeline/config.yaml:4:" in run["reason"] and "nmae" in run["reason"]
    # No job was queued for it, and the run page shows the error.
    assert server.post("/api/v1/agents/claim", json={"agent": "a", "wait": 0}, headers=server.admin).status_code == 204
    assert "nmae" in server.get(f"/runs/{run['id']}").text
    assert server.get("/api/v1/runs", params={"project": "svc"}).json()[0]["id"] == run["id"]
