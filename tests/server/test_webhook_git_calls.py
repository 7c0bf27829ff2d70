"""A push webhook's git subprocesses: few (they are most of its latency), none on the event loop.

bench/README.md ("Webhook received -> job started"): each git call costs 3-30 ms on a loaded
machine, and a push event used to make 12 of them (the config read four times, the remote URL
set on every fetch). This counts them for one push to the default branch.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

import chute.repo
from tests.conftest import git, make_repo

CONFIG = """pipelines:
  noop:
    stages:
      - name: noop
        exports:
          done: "yes"
"""
MAX_GIT_CALLS = 5  # fetch, show -s, show <config>, merge-base --is-ancestor, rev-parse <default branch>


def _push(server, repo: Path, secret: str, before: str, after: str) -> Any:
    body = json.dumps({"project": "svc", "ref": "refs/heads/main", "before": before, "after": after}).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return server.post("/webhooks/git?project=svc", content=body, headers={"X-Chute-Signature-256": sig})


def test_a_push_event_makes_at_most_five_git_calls_off_the_event_loop(server, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "svc", files={".pipeline/config.yaml": CONFIG})
    created = server.post("/api/v1/projects", json={"repo": str(repo), "name": "svc"}, headers=server.admin)
    assert created.status_code == 201, created.text
    secret = created.json()["webhook_secret"]

    calls: list[list[str]] = []
    on_loop: list[list[str]] = []
    real = chute.repo._git

    def counting(args: list[str], **kw: Any) -> Any:
        calls.append(list(args))
        try:
            asyncio.get_running_loop()
            on_loop.append(list(args))  # a blocking subprocess on the event loop thread
        except RuntimeError:
            pass
        return real(args, **kw)

    monkeypatch.setattr(chute.repo, "_git", counting)
    for n in range(2):  # the first push after the clone, then a later one
        before = git(repo, "rev-parse", "HEAD")
        (repo / "a.txt").write_text(f"{n}\n")
        git(repo, "add", "a.txt")
        git(repo, "commit", "-qm", f"change {n}")
        after = git(repo, "rev-parse", "HEAD")
        calls.clear()
        r = _push(server, repo, secret, before, after)
        assert r.status_code == 202, r.text
        (run_id,) = r.json()["runs"]
        run = server.get(f"/api/v1/runs/{run_id}").json()
        assert run["trusted"] is True and run["pipeline"] == "noop"
        assert len(calls) <= MAX_GIT_CALLS, calls
        assert not any(c[:2] == ["remote", "set-url"] for c in calls), calls  # the URL did not change
        assert sum(c[0] == "show" and c[-1].endswith(":.pipeline/config.yaml") for c in calls) == 1, calls
    assert on_loop == []
