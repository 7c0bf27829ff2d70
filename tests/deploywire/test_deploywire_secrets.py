"""An environment's secrets reach its deployed service as env values, and nothing chute keeps holds them.

A live server, real podman revisions: the service writes the SHA-256 of the env values it got to a
file it serves (never the values), so the test sees what the container received.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.trust.conftest import scan_database

from .conftest import config_yaml, make_repo, next_port, wait_for

pytestmark = [pytest.mark.podman, pytest.mark.slow]

REPO = "localhost/chute-test-secrets"
STAGING_DB = "staging-db-password-1"
STAGING_DB_NEW = "staging-db-password-2-rotated"
PROJECT_DB = "project-wide-db-password"  # the project's own DB_PASSWORD: staging's own value wins
TOKEN = "project-api-token-0123456789"

# Hash the env values at start, then serve /www (never the values themselves).
_ENTRY = ('["/bin/sh","-c","{ printf %s \\"$DB_PASSWORD\\" | sha256sum; printf %s \\"$API_TOKEN\\" | sha256sum; }'
          ' | cut -d\' \' -f1 > /www/hashes; trap \'exit 0\' TERM; httpd -f -p 8080 -h /www & wait"]')


def build(version: str) -> str:
    containerfile = (f"FROM localhost/busybox:stable\nENV PORT=8080\nCOPY www /www\nLABEL chute.test=\"1\"\n"
                     f"ENTRYPOINT {_ENTRY}\n")
    key = hashlib.sha256((containerfile + version).encode()).hexdigest()[:10]
    ref = f"{REPO}:{version}-{key}"
    if subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0:
        return ref
    ctx = Path(tempfile.mkdtemp(prefix="chute-img-"))
    try:
        (ctx / "www").mkdir()
        (ctx / "www" / "index.html").write_text(f"{version}\n")
        (ctx / "www" / "healthz").write_text("ok\n")
        (ctx / "Containerfile").write_text(containerfile)
        subprocess.run(["podman", "build", "-q", "--format", "docker", "-t", ref, str(ctx)], check=True,
                       capture_output=True)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return ref


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_environment_gets_its_secrets_as_env_values_and_nothing_chute_keeps_holds_them(live, db_url, tmp_path):
    s1, s2 = build("s1"), build("s2")
    port = next_port()
    repo = tmp_path / "greeter"
    make_repo(repo, config_yaml(
        f"  staging:\n    port: {port}\n"
        "    values: {secrets: [DB_PASSWORD, {id: api.token, name: API_TOKEN}]}\n"
        "    health: {http: /healthz, within: 20s, stable_for: 0.5s, interval: 0.25}\n"))
    live.add_project(repo)
    secrets = "/api/v1/projects/greeter/secrets"
    env_api = "/api/v1/projects/greeter/environments/staging"

    def put(name: str, value: str, environment: str = "") -> None:
        r = live.http.put(f"{secrets}/{name}", json={"value": value, "environment": environment})
        assert r.status_code == 200, r.text

    def deploy(body: dict, what: str = "deploy") -> dict:
        r = live.http.post(f"{env_api}/{what}", json={"reason": "test", **body})
        assert r.status_code == 202, r.text
        rid = r.json()["id"]
        return wait_for("the request to finish", lambda: (lambda d: d if d["status"] in ("done", "blocked") else None)(
            live.http.get(f"/api/v1/deploy-requests/{rid}").json()), timeout=90)

    def served(path: str) -> str:
        return httpx.get(f"http://127.0.0.1:{port}/{path}", timeout=5).text.strip()

    put("DB_PASSWORD", STAGING_DB, "staging")
    put("DB_PASSWORD", PROJECT_DB)
    # api.token is not set yet: the deploy fails before anything runs, and says what to do.
    req = deploy({"image": s1})
    assert req["outcome"] == "failed"
    assert "secret api.token is not set for environment staging of greeter" in req["error"]
    assert "chute secret set greeter api.token --env staging" in req["error"]

    put("api.token", TOKEN)  # the project's: environments without their own value get it
    first = deploy({"image": s1})
    assert first["outcome"] == "healthy", first
    assert served("") == "s1" and served("hashes").split() == [sha(STAGING_DB), sha(TOKEN)]

    # A new value takes effect on the next deploy, not in the running service.
    put("DB_PASSWORD", STAGING_DB_NEW, "staging")
    assert served("hashes").split()[0] == sha(STAGING_DB)
    second = deploy({"image": s2})
    assert second["outcome"] == "healthy", second["error"]
    assert served("") == "s2" and served("hashes").split() == [sha(STAGING_DB_NEW), sha(TOKEN)]

    # A rollback runs the earlier image with the values of today.
    back = deploy({"to_revision": first["revision"]}, "rollback")
    assert back["outcome"] == "healthy", back
    assert served("") == "s1" and served("hashes").split() == [sha(STAGING_DB_NEW), sha(TOKEN)]

    # The stored manifests reference the values; no podman secret is left once kube play is done.
    history = live.http.get(f"{env_api}/history").json()
    assert [d["status"] for d in history] == ["healthy", "rolled-back", "superseded", "failed"]
    live.state.deploys.deployer.targets["podman"].wait_idle()
    left = subprocess.run(["podman", "secret", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert not [n for n in left if n.startswith("greeter-staging-")]

    # No value, raw or base64, in any row (deployments and their manifests, requests, ledger events),
    # in the API's answers, or in the files of the podman target.
    values = [STAGING_DB, STAGING_DB_NEW, PROJECT_DB, TOKEN]
    assert scan_database(db_url, values) == []
    with live.state.db.session() as s:
        from sqlalchemy import select

        from chute.store import Deployment as DeploymentRow

        rows = list(s.scalars(select(DeploymentRow)))
        assert all("secretKeyRef" in str(r.detail) for r in rows if r.status != "failed")
    answers = [live.http.get(p).text for p in (
        f"{env_api}/history", "/api/v1/projects/greeter/environments", f"{env_api}/requests",
        f"/api/v1/deploy-requests/{back['id']}", secrets)]
    answers.append(httpx.get(f"{live.url}/projects/greeter/environments/staging", timeout=30).text)
    files = [p.read_text(errors="replace") for p in Path(live.target.state_dir).rglob("*") if p.is_file()]
    import base64

    for text in answers + files:
        for v in values:
            assert v not in text and base64.b64encode(v.encode()).decode() not in text
