"""POST /webhooks/{kind}: secrets checked first (401 stores nothing), events become runs, redeliveries once."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from sqlalchemy import func, select

from chute.store import Change, Run, WebhookDelivery
from tests.conftest import git, make_repo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
CONFIG = """pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: test
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: production
        build: production
        publish:
          image: true
"""


def _gerrit_setup(server, tmp_path: Path) -> tuple[Path, str, str, str]:
    repo = make_repo(tmp_path / "citoid", files={".pipeline/config.yaml": CONFIG, "a.txt": "1\n"})
    git(repo, "checkout", "-q", "-b", "review")
    (repo / "a.txt").write_text("2\n")
    git(repo, "commit", "-qam", "Cache Zotero translator lookups")
    patch = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", "refs/changes/23/123/2", patch)
    git(repo, "checkout", "-q", "main")
    body = {"repo": str(repo), "name": "citoid", "review_kind": "gerrit",
            "review_project": "mediawiki/services/citoid"}
    created = server.post("/api/v1/projects", json=body, headers=server.admin).json()
    return repo, patch, created["webhook_secret"], git(repo, "rev-parse", "main")


def _fixture(name: str, **patch: object) -> dict:
    data = json.loads((FIXTURES / name).read_text())
    for path, value in patch.items():
        node = data
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return data


def _counts(server) -> tuple[int, int, int]:
    with server.app_state.db.session() as s:
        return (s.scalar(select(func.count(WebhookDelivery.id))), s.scalar(select(func.count(Change.id))),
                s.scalar(select(func.count(Run.id))))


def test_gerrit_patchset_runs_tests_once_and_a_wrong_token_stores_nothing(server, tmp_path) -> None:
    _, patch, secret, _ = _gerrit_setup(server, tmp_path)
    event = _fixture("gerrit/patchset-created.json", **{"patchSet.revision": patch})
    body = json.dumps(event)
    before = _counts(server)
    for token in (None, "wrong"):
        url = "/webhooks/gerrit?project=citoid" + (f"&token={token}" if token else "")
        r = server.post(url, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and "secret" in r.json()["detail"]
    assert _counts(server) == before
    r = server.post(f"/webhooks/gerrit?project=citoid&token={secret}", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    (run_id,) = r.json()["runs"]
    run = server.get(f"/api/v1/runs/{run_id}").json()
    assert run["pipeline"] == "test" and not run["trusted"]  # a patch under review never publishes
    assert run["change"]["number"] == "123" and run["change"]["patchset"] == 2 and run["change"]["commit"] == patch
    # The same delivery again (Gerrit retry, or stream-events plus webhook): processed once.
    r = server.post(f"/webhooks/gerrit?project=citoid&token={secret}", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    assert _counts(server)[2] == before[2] + 1


def test_recheck_comment_reruns_and_merge_publishes(server, tmp_path) -> None:
    repo, patch, secret, _ = _gerrit_setup(server, tmp_path)
    url = f"/webhooks/gerrit?project=citoid&token={secret}"
    first = server.post(url, json=_fixture("gerrit/patchset-created.json", **{"patchSet.revision": patch})).json()
    comment = _fixture("gerrit/comment-added.json", **{"patchSet.revision": patch})
    r = server.post(url, json=comment)
    assert r.status_code == 202, r.text
    (rerun_id,) = r.json()["runs"]
    rerun = server.get(f"/api/v1/runs/{rerun_id}").json()
    assert rerun["trigger"] == "recheck" and rerun["rerun_of"] == first["runs"][0]
    # A comment that merely mentions recheck does nothing.
    quiet = _fixture("gerrit/comment-added.json", comment="Patch Set 2:\n\nplease don't recheck yet",
                     eventCreatedOn=1764009999, **{"patchSet.revision": patch})
    assert server.post(url, json=quiet).json()["runs"] == []
    # Merged: Gerrit's newRev is the commit on the target branch.
    git(repo, "merge", "-q", "--ff-only", "review")
    merged = git(repo, "rev-parse", "main")
    event = _fixture("gerrit/change-merged.json", newRev=merged,
                     **{"change.branch": "main", "refName": "refs/heads/main"})
    r = server.post(url, json=event)
    assert r.status_code == 202, r.text
    (pub,) = r.json()["runs"]
    run = server.get(f"/api/v1/runs/{pub}").json()
    assert run["pipeline"] == "publish" and run["trusted"] and run["change"]["commit"] == merged


def test_github_push_needs_a_valid_signature_and_checks_the_repository(server, tmp_path) -> None:
    repo = make_repo(tmp_path / "svc", files={".pipeline/config.yaml": CONFIG})
    created = server.post("/api/v1/projects", json={"repo": str(repo), "name": "svc", "review_kind": "github",
                                                    "review_project": "acme/svc"}, headers=server.admin).json()
    secret = created["webhook_secret"]
    sha = git(repo, "rev-parse", "HEAD")
    push = _fixture("github/push.json", ref="refs/heads/main", after=sha)
    push["repository"]["full_name"] = "acme/svc"
    push["head_commit"]["id"] = sha
    body = json.dumps(push).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}
    before = _counts(server)
    bad = server.post("/webhooks/github?project=svc", content=body,
                      headers={**headers, "X-Hub-Signature-256": "sha256=00"})
    assert bad.status_code == 401 and _counts(server) == before
    ok = server.post("/webhooks/github?project=svc", content=body, headers={**headers, "X-Hub-Signature-256": sig})
    assert ok.status_code == 202, ok.text
    (run_id,) = ok.json()["runs"]
    assert server.get(f"/api/v1/runs/{run_id}").json()["pipeline"] == "publish"
    # Signed, but for another repository than this project's: refused, nothing stored.
    other = dict(push, repository={**push["repository"], "full_name": "evil/other"})
    body2 = json.dumps(other).encode()
    sig2 = "sha256=" + hmac.new(secret.encode(), body2, hashlib.sha256).hexdigest()
    mid = _counts(server)
    r = server.post("/webhooks/github?project=svc", content=body2,
                    headers={**headers, "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": sig2})
    assert r.status_code == 403 and _counts(server) == mid
    # Malformed (but correctly signed) payload: 400, nothing stored.
    junk = b'{"ref": 5'
    sig3 = "sha256=" + hmac.new(secret.encode(), junk, hashlib.sha256).hexdigest()
    r = server.post("/webhooks/github?project=svc", content=junk,
                    headers={**headers, "X-GitHub-Delivery": "d-3", "X-Hub-Signature-256": sig3})
    assert r.status_code == 400 and _counts(server) == mid


def test_unknown_kind_or_project(server) -> None:
    assert server.post("/webhooks/svn?project=x", content=b"{}").status_code == 404
    assert server.post("/webhooks/git?project=nope", content=b"{}").status_code == 404
    assert server.post("/webhooks/git", content=b"{}").status_code == 400


def test_gerrit_stream_events_feed_the_same_path(server, tmp_path) -> None:
    from chute.server.gerrit_stream import consume

    _, patch, _, _ = _gerrit_setup(server, tmp_path)
    event = _fixture("gerrit/patchset-created.json", **{"patchSet.revision": patch})
    other = dict(event, project="some/other/repo", change={**event["change"], "project": "some/other/repo"})
    lines = [json.dumps(other), "not json at all", json.dumps(event), json.dumps(event)]
    assert consume(server.app_state, lines) == 1  # other repo skipped, bad line skipped, duplicate once
    runs = server.get("/api/v1/runs", params={"project": "citoid"}).json()
    assert [r["pipeline"] for r in runs] == ["test"]
