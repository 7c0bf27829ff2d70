"""Which runs are trusted, what they are told, and who gets secrets (real server, real git, SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from chute.store import Job
from tests.conftest import git

from .conftest import SECRET, SNEAKY, gerrit_event, gerrit_project, patchset, token


def _hook(server, secret: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    r = server.post(f"/webhooks/gerrit?project=svc&token={secret}", json=event)
    assert r.status_code == 202, r.text
    return [server.get(f"/api/v1/runs/{i}").json() for i in r.json()["runs"]]


def _claim(server, agent: str = "agent-1") -> dict[str, Any]:
    r = server.post("/api/v1/agents/claim", json={"agent": agent, "wait": 0}, headers=server.admin)
    assert r.status_code == 200, r.text
    return r.json()


def _notes(server, run_id: int) -> list[str]:
    return [c["text"].strip() for c in server.get(f"/api/v1/runs/{run_id}/logs").json()
            if c["text"].startswith("chute: trust: ")]


def _payload(server, run_id: int) -> dict[str, Any]:
    with server.app_state.db.session() as s:
        return dict(s.scalars(select(Job).where(Job.run_id == run_id)).one().payload)


def test_a_patch_that_reaches_for_secrets_and_publishing_is_untrusted_and_told_why(server, tmp_path: Path) -> None:
    repo, hook = gerrit_project(server, tmp_path)
    assert server.put("/api/v1/projects/svc/secrets/API_TOKEN", json={"value": SECRET},
                      headers=server.admin).status_code == 200
    sha = patchset(repo, {".pipeline/config.yaml": SNEAKY})
    (run,) = _hook(server, hook, gerrit_event("patchset-created", "services/svc", sha))
    # Its own config makes every pipeline publish; it still runs the default branch's test pipeline
    # (built and tested on the patch itself), untrusted.
    assert run["pipeline"] == "test" and not run["trusted"]
    assert _payload(server, run["id"])["credentials"] == []
    notes = _notes(server, run["id"])
    assert notes[0] == ("chute: trust: untrusted run: a change under review is untrusted; it gets no secrets and "
                        "may not publish, promote, deploy or trigger")
    assert ("chute: trust: this change adds `publish` to stage test of pipeline test; it runs only after merge to "
            "main, from its reviewed .pipeline/config.yaml") in notes
    assert ("chute: trust: this change asks for credentials in stage test of pipeline test (API_TOKEN); secrets "
            "are given only after merge to main, from its reviewed .pipeline/config.yaml") in notes
    assert any("this change modifies `environments` (evil)" in n for n in notes)
    # The unchanged publish pipeline is not mentioned: nothing about it changes.
    assert not any("pipeline publish" in n for n in notes)

    job = _claim(server)
    assert job["run_id"] == run["id"] and job["payload"]["trusted"] is False
    assert SECRET not in str(job)
    r = server.post(f"/api/v1/jobs/{job['job_id']}/secrets", json={"agent": "agent-1"}, headers=server.admin)
    assert r.status_code == 403 and f"run {run['id']} is untrusted" in r.json()["detail"]
    # Environments are still the default branch's.
    envs = server.get("/api/v1/projects/svc/environments", headers=server.admin)
    assert envs.status_code == 200 and "staging" in envs.text and "evil" not in envs.text


def test_a_merged_change_is_trusted_and_only_its_agent_gets_the_reviewed_credentials(server, tmp_path: Path) -> None:
    repo, hook = gerrit_project(server, tmp_path)
    server.put("/api/v1/projects/svc/secrets/API_TOKEN", json={"value": SECRET}, headers=server.admin)
    server.put("/api/v1/projects/svc/secrets/UNUSED_TOKEN", json={"value": SECRET + "-unused"},
               headers=server.admin)
    sha = patchset(repo, {"test.sh": "echo better\n"})
    git(repo, "merge", "-q", "--ff-only", "review-77")
    (run,) = _hook(server, hook, gerrit_event("change-merged", "services/svc", sha, new_rev=sha))
    assert run["pipeline"] == "publish" and run["trusted"] and run["change"]["commit"] == sha
    assert _notes(server, run["id"]) == []
    # Names only in the stored payload: the ones the reviewed config asks for, not every secret.
    assert _payload(server, run["id"])["credentials"] == ["API_TOKEN", "TLS_KEY"]
    job = _claim(server, "agent-1")
    url = f"/api/v1/jobs/{job['job_id']}/secrets"
    assert server.post(url, json={"agent": "agent-2"}, headers=server.admin).status_code == 409
    reader = token(server, ["read"])
    assert server.post(url, json={"agent": "agent-1"}, headers=reader).status_code == 403
    got = server.post(url, json={"agent": "agent-1"}, headers=server.admin).json()
    assert got == {"secrets": {"API_TOKEN": SECRET}, "missing": ["TLS_KEY"]}


def test_manual_runs_and_tags_are_trusted_only_for_what_the_branch_or_tag_really_holds(server, tmp_path) -> None:
    """The Zuul subtlety: a trusted run must never be a change under review in disguise."""
    repo, _ = gerrit_project(server, tmp_path)
    sha = patchset(repo, {".pipeline/config.yaml": SNEAKY})

    def trigger(**body: Any) -> dict[str, Any]:
        r = server.post("/api/v1/projects/svc/trigger", json={"pipelines": ["publish"], **body},
                        headers=server.admin)
        assert r.status_code == 201, r.text
        (run,) = r.json()
        return run

    disguised = trigger(ref="main", commit=sha)  # a patch's commit, claimed to be main's
    assert not disguised["trusted"] and _payload(server, disguised["id"])["credentials"] == []
    assert f"untrusted run: commit {sha[:12]} is not on the default branch main" in _notes(server, disguised["id"])[0]
    head = trigger()
    assert head["trusted"] and _payload(server, head["id"])["credentials"] == ["API_TOKEN", "TLS_KEY"]

    git(repo, "tag", "v1.0", "main")
    assert trigger(ref="refs/tags/v1.0")["trusted"]
    forged = trigger(ref="refs/tags/v1.0", commit=sha)
    assert not forged["trusted"] and f"tag v1.0 does not name commit {sha[:12]}" in _notes(server, forged["id"])[0]
    missing = trigger(ref="refs/tags/v9.9", commit=sha)
    assert not missing["trusted"] and "tag v9.9 does not exist" in _notes(server, missing["id"])[0]

    # A push to another branch runs its test pipelines only, untrusted, whatever the trigger asks by default.
    git(repo, "branch", "feature", "review-77")
    (feature,) = server.post("/api/v1/projects/svc/trigger", json={"ref": "feature"}, headers=server.admin).json()
    assert feature["pipeline"] == "test" and not feature["trusted"]


def test_reruns_and_rechecks_of_untrusted_runs_stay_untrusted(server, tmp_path: Path) -> None:
    repo, hook = gerrit_project(server, tmp_path)
    sha = patchset(repo, {"test.sh": "echo flaky\n"})
    (run,) = _hook(server, hook, gerrit_event("patchset-created", "services/svc", sha))
    job = _claim(server)
    r = server.post(f"/api/v1/jobs/{job['job_id']}/complete", headers=server.admin,
                    json={"agent": "agent-1", "result": {"status": "failure", "error": "flaky", "stages": [],
                                                         "images": []}})
    assert r.status_code == 204
    again = server.post(f"/api/v1/runs/{run['id']}/rerun", json={}, headers=server.admin).json()
    assert not again["trusted"] and _payload(server, again["id"])["credentials"] == []
    assert f"a rerun of run {run['id']}, which was untrusted" in _notes(server, again["id"])[0]


def test_a_recheck_comment_on_a_merged_change_reruns_no_trusted_pipeline(server, tmp_path: Path) -> None:
    """Anyone who may comment may say "recheck": it reruns the change's tests, never the publish of its merge."""
    repo, hook = gerrit_project(server, tmp_path)
    sha = patchset(repo, {"test.sh": "echo better\n"})
    (test,) = _hook(server, hook, gerrit_event("patchset-created", "services/svc", sha))
    git(repo, "merge", "-q", "--ff-only", "review-77")
    (publish,) = _hook(server, hook, gerrit_event("change-merged", "services/svc", sha, new_rev=sha))
    assert publish["trusted"] and not test["trusted"]
    comment = {**gerrit_event("comment-added", "services/svc", sha), "comment": "Patch Set 1:\n\nrecheck",
               "author": {"username": "anyone"}, "eventCreatedOn": 1764009999}
    rechecked = _hook(server, hook, comment)
    assert [(r["pipeline"], r["trusted"], r["trigger"]) for r in rechecked] == [("test", False, "recheck")]
