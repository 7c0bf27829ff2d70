"""The trust rules end to end: a live server, its embedded agent, real git, real podman builds and runs.

A patch under review that tries to read a secret and publish is refused, with messages saying
why and where those steps run, and never sees the secret. Once merged, the same kind of step
gets the secrets (as an environment value and as a file), and they are masked in the logs,
the API, the run page and the result document, absent from the image it published, and in no
row of the database (the ledger included).
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from chute.server.app import create_app
from chute.server.settings import Settings
from tests.conftest import git, make_repo

from .conftest import PEM, SECRET, gerrit_event, patchset, scan_database

pytestmark = [pytest.mark.podman, pytest.mark.slow]

BLUBBER = """version: v4
base: localhost/debian:bookworm
lives: {in: /srv/app}
variants:
  test:
    copies: [local]
    entrypoint: [sh, test.sh]
  release:
    copies: [local]
    entrypoint: [sh, release.sh]
"""

CONFIG = """pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: release
        build: release
        run:
          tail: 30
          credentials:
            - {id: API_TOKEN, name: API_TOKEN}
            - {id: TLS_KEY, name: TLS_KEY_FILE, as: file}
        publish:
          image: true
"""

# The patch: one build, then a test stage that reads the token and a new stage that publishes.
PATCHED = """pipelines:
  test:
    blubberfile: blubber.yaml
    execution: [[image, test], [image, ship]]
    stages:
      - {name: image, build: release, run: false}
      - name: test
        run:
          image: '${image.imageID}'
          credentials:
            - {id: API_TOKEN, name: API_TOKEN}
      - name: ship
        publish:
          image: {id: '${image.imageID}'}
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: release
        build: release
        run:
          tail: 30
          credentials:
            - {id: API_TOKEN, name: API_TOKEN}
            - {id: TLS_KEY, name: TLS_KEY_FILE, as: file}
        publish:
          image: true
"""

RELEASE_SH = r"""echo "token: $API_TOKEN"
printf '%s' "$API_TOKEN" | base64
echo "$API_TOKEN" | base64
printf '%s' "$API_TOKEN" | perl -pe 's/([^A-Za-z0-9_.~-])/sprintf("%%%02X", ord($1))/ge'; echo
echo "key file at $TLS_KEY_FILE"
cat "$TLS_KEY_FILE"; echo
ls -l "$TLS_KEY_FILE" | cut -c1-10
printf '%s' "$API_TOKEN" | sha256sum
printf '%s' "$API_TOKEN" > /tmp/written-by-the-step
echo done
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, podman: None) -> Iterator[dict[str, Any]]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    monkeypatch.delenv("CHUTE_SECRET_KEY", raising=False)
    monkeypatch.delenv("CHUTE_REGISTRY", raising=False)
    port = _free_port()
    db = f"sqlite:///{home / 'chute.db'}"
    settings = Settings(home=home, database_url=db, port=port, registry=None, embedded_agent=True,
                        poll_interval=3600, lease_seconds=30)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {app.state.chute.admin_token}"},
                          timeout=60)
    try:
        yield {"url": url, "client": client, "db": db}
    finally:
        client.close()
        server.should_exit = True
        t.join(30)


@pytest.fixture(scope="module")
def podman() -> None:
    from tests.integration.conftest import _podman_ok

    why = _podman_ok()
    if why:
        pytest.skip(why)


def _wait(c: httpx.Client, run_id: int, timeout: float = 240) -> dict[str, Any]:
    deadline = time.time() + timeout
    run: dict[str, Any] = {}
    while time.time() < deadline:
        run = c.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("success", "failure", "error", "cancelled"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def _logs(c: httpx.Client, run_id: int) -> str:
    return "".join(ch["text"] for ch in c.get(f"/api/v1/runs/{run_id}/logs").json())


def _leaks(text: str) -> list[str]:
    raw = SECRET.encode()
    forms = {"raw": SECRET, "base64": base64.b64encode(raw).decode(),
             "base64+newline": base64.b64encode(raw + b"\n").decode(),
             "url": quote(SECRET, safe=""), "pem line": PEM.splitlines()[1], "pem": PEM}
    return [name for name, form in forms.items() if form in text]


def test_a_patch_gets_no_secret_and_no_publish_and_merged_code_gets_them_masked(live, tmp_path: Path) -> None:
    c: httpx.Client = live["client"]
    repo = make_repo(tmp_path / "svc", files={".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": CONFIG,
                                              "test.sh": "echo 'tests pass'\n", "release.sh": RELEASE_SH,
                                              # config and docs stay out of the image: builds reuse the cache
                                              ".dockerignore": ".pipeline\ndocs\n"})
    body = {"repo": str(repo), "name": "svc", "review_kind": "gerrit", "review_project": "services/svc"}
    created = c.post("/api/v1/projects", json=body)
    assert created.status_code == 201, created.text
    hook = f"/webhooks/gerrit?project=svc&token={created.json()['webhook_secret']}"
    assert c.put("/api/v1/projects/svc/secrets/API_TOKEN", json={"value": SECRET}).status_code == 200
    assert c.put("/api/v1/projects/svc/secrets/TLS_KEY", json={"value": PEM}).status_code == 200

    # ---- a patch under review asks for the token and publishes: refused, and told why.
    sha = patchset(repo, {".pipeline/config.yaml": PATCHED})
    r = c.post(hook, json=gerrit_event("patchset-created", "services/svc", sha))
    assert r.status_code == 202, r.text
    (run_id,) = r.json()["runs"]
    done = _wait(c, run_id)
    assert done["status"] == "failure" and not done["trusted"] and done["pipeline"] == "test", done["stages"]
    errors = {s["name"]: s["error"] for s in done["stages"]}
    assert errors["test"].startswith("credential 'API_TOKEN' is not given to an untrusted change (a change under "
                                     "review or an unmerged branch): the step gets it only for reviewed code, "
                                     "after merge to main")
    assert errors["ship"].startswith("publish is not allowed for an untrusted change (a change under review or an "
                                     "unmerged branch): it runs only for reviewed code, after merge to main")
    patch_log = _logs(c, run_id)
    assert "chute: trust: this change adds `publish` to stage ship of pipeline test" in patch_log
    assert "chute: trust: this change asks for credentials in stage test of pipeline test (API_TOKEN)" in patch_log
    assert _leaks(patch_log) == [] and "***" not in patch_log  # it never had anything to mask
    assert done["images"] == []

    # ---- another change, merged: the reviewed publish pipeline gets both secrets, masked everywhere.
    good = patchset(repo, {"docs/notes.md": "the release reads two secrets\n"}, number=78)
    git(repo, "merge", "-q", "--ff-only", "review-78")
    r = c.post(hook, json=gerrit_event("change-merged", "services/svc", good, number=78, new_rev=good))
    (pub_id,) = r.json()["runs"]
    pub = _wait(c, pub_id)
    assert pub["status"] == "success" and pub["trusted"] and pub["pipeline"] == "publish", pub
    log = _logs(c, pub_id)
    assert _leaks(log) == [], log
    assert "token: ***" in log and "key file at /run/secrets/TLS_KEY" in log and "-r--r--r--" in log
    assert hashlib.sha256(SECRET.encode()).hexdigest() in log  # the step really had the value
    (release,) = [s for s in pub["stages"] if s["name"] == "release"]
    assert "token: ***" in release["exports"]["output"] and _leaks(str(release["exports"])) == []
    assert _leaks(c.get(f"/api/v1/runs/{pub_id}").text) == []
    page = httpx.get(f"{live['url']}/runs/{pub_id}").text
    assert "token: ***" in page and _leaks(page) == []

    # ---- the image it published holds no secret: not in its config, not in any layer.
    (img,) = pub["images"]
    ref = f"{img['name']}:{img['tags'][0]}"
    try:
        inspect = subprocess.run(["podman", "image", "inspect", ref], capture_output=True, text=True, check=True)
        assert _leaks(inspect.stdout) == []
        saved = subprocess.run(["podman", "save", "--format", "docker-archive", ref], capture_output=True,
                               check=True).stdout
        blobs = _tar_texts(saved)
        assert blobs and not any(SECRET.encode() in b or base64.b64encode(SECRET.encode()) in b for b in blobs)
        assert not any(PEM.splitlines()[1].encode() in b for b in blobs)
        assert any(b"release.sh" in b for b in blobs)  # the search did look inside the layers
    finally:
        subprocess.run(["podman", "rmi", "-f", *[f"{img['name']}:{t}" for t in img["tags"]]], capture_output=True)

    # ---- and no row of the database holds it, the ledger included.
    assert scan_database(live["db"], [SECRET, PEM]) == []
    events = c.get("/api/v1/projects/svc/secrets").json()
    assert [e["name"] for e in events] == ["API_TOKEN", "TLS_KEY"]
    left = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=chute.run={pub_id}"], capture_output=True,
                          text=True).stdout.split()
    assert left == []


def _tar_texts(data: bytes) -> list[bytes]:
    """Every file in an image archive, layers unpacked one level (docker-archive layers are plain tars)."""
    out: list[bytes] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            blob = outer.extractfile(member).read()  # type: ignore[union-attr]
            out.append(blob)
            if member.name.endswith((".tar", "layer.tar")) or tarfile.is_tarfile(io.BytesIO(blob)):
                try:
                    with tarfile.open(fileobj=io.BytesIO(blob)) as inner:
                        for m in inner.getmembers():
                            if m.isfile():
                                out.append(inner.extractfile(m).read())  # type: ignore[union-attr]
                except tarfile.TarError:
                    pass
    return out
