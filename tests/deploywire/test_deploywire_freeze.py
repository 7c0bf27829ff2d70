"""Freezes are enforced by the server, also for runs queued before the freeze (GitLab #336354).

A trusted run whose pipeline would deploy into a frozen environment waits in the queue (its
job's ``not_before``) and starts by itself when the freeze ends; a deployment asked for
during a freeze is held and released the same way; people override with a reason, audited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from chute.store import Job

from .conftest import body, commit_file, config_yaml, env_yaml, make_repo, next_port, wait_for

pytestmark = [pytest.mark.podman, pytest.mark.registry, pytest.mark.slow]

API_ADMIN = "admin (token bootstrap)"  # the ledger's actor for calls with the admin token


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_of(live, run_id: int) -> Job:
    with live.state.db.session() as s:
        return s.scalars(select(Job).where(Job.run_id == run_id)).one()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_freeze_holds_queued_runs_and_releases_them_with_audited_overrides(live, pushed, tmp_path):
    port = next_port()
    auto = "    auto: true\n    from: publish\n"
    repo = tmp_path / "greeter"
    make_repo(repo, config_yaml(env_yaml("staging", port, extra=auto)))
    live.add_project(repo)
    agent = live.agent()

    # Run 0 is queued before any freeze exists: it is not held.
    (run0,) = live.trigger()
    assert job_of(live, run0["id"]).not_before is None
    assert not live.events("deploy.held")

    # Then a freeze lands on the default branch. The queued run is held, without anyone asking.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    end = start + timedelta(seconds=40)  # room for two deployments inside the freeze on a busy machine
    frozen = auto + f"    freeze: [{{from: '{iso(start)}', to: '{iso(end)}', reason: launch day}}]\n"
    commit_file(repo, ".pipeline/config.yaml", config_yaml(env_yaml("staging", port, extra=frozen)), "freeze")
    live.mirror_sync()
    held = wait_for("run 0 to be held", lambda: job_of(live, run0["id"]).not_before, timeout=15)
    assert held == end
    (ev,) = live.events("deploy.held", run_id=run0["id"])
    assert ev.outcome == "held" and ev.actor == "server" and ev.data["environments"] == ["staging"]
    assert ev.data["freeze"] == {"from": iso(start), "to": iso(end), "reason": "launch day"}
    assert ev.data["until"] == iso(end) and "frozen" in ev.data["reason"]
    assert agent.claim(wait=0) is None  # the agent gets nothing while the freeze lasts

    # Run 1 (after the freeze landed) is held the moment it is queued.
    (run1,) = live.trigger()
    assert [e.kind for e in live.events(run_id=run1["id"])] == ["run.queued", "deploy.held"]
    listing = live.environments()
    assert {h["run"] for h in listing["_"]["held_runs"]} == {run0["id"], run1["id"]}
    assert listing["staging"]["closed"]["freeze"]["reason"] == "launch day"
    page = live.http.get("/projects/greeter/environments/staging").text
    assert "No deploys now" in page and "launch day" in page and f"run #{run0['id']}" in page
    run_page = live.http.get(f"/runs/{run1['id']}").text
    assert "Held by a freeze" in run_page and "launch day" in run_page

    # A person cannot deploy into the freeze without overriding it, and not without a reason.
    deploy = "/api/v1/projects/greeter/environments/staging/deploy"
    r = live.http.post(deploy, json={"image": f"{pushed['v1'].name}@{pushed['v1'].digest}"})
    assert r.status_code == 409 and "frozen" in r.json()["detail"] and "override" in r.json()["hint"]
    r = live.http.post(deploy, json={"image": f"{pushed['v1'].name}@{pushed['v1'].digest}",
                                     "override_freeze": True})
    assert r.status_code == 400 and "reason" in r.json()["detail"]
    r = live.http.post(deploy, json={"image": f"{pushed['v1'].name}@{pushed['v1'].digest}",
                                     "override_freeze": True, "reason": "hotfix for the launch"})
    assert r.status_code == 202, r.text
    hist = wait_for("the override deploy", lambda: (h := live.history("staging")) and h[0]["finished_at"] and h)
    assert hist[0]["status"] == "healthy" and hist[0]["freeze_override"]["actor"] == API_ADMIN
    assert hist[0]["freeze_override"]["reason"] == "hotfix for the launch" and body(port) == "v1"
    (fo,) = live.events("deploy.freeze-override", environment="staging")
    assert fo.actor == API_ADMIN and fo.data["reason"] == "hotfix for the launch" and fo.revision == 1
    page = live.http.get("/projects/greeter/environments/staging").text
    assert "freeze overridden" in page and "override by admin (token bootstrap): hotfix for the launch" in page

    # Run 1 is let through the freeze by a person: audited, and its deployment goes through too.
    r = live.http.post(f"/api/v1/runs/{run1['id']}/override-freeze", json={"reason": "the launch needs it"})
    assert r.status_code == 200, r.text
    (ov,) = live.events("deploy.freeze-override", run_id=run1["id"], environment="")
    assert ov.actor == API_ADMIN and ov.data["reason"] == "the launch needs it"
    job = agent.claim(wait=0)
    assert job is not None and job["run_id"] == run1["id"]
    assert agent.claim(wait=0) is None and job_of(live, run0["id"]).not_before == end  # run 0 still waits
    live.complete(agent, job, [pushed["v2"].image()])
    hist = wait_for("run 1's deploy", lambda: (h := live.history("staging"))[0]["revision"] == 2
                    and h[0]["finished_at"] and h, timeout=60)
    assert hist[0]["status"] == "healthy" and hist[0]["run"] == run1["id"] and body(port) == "v2"
    assert hist[0]["freeze_override"]["reason"] == "the launch needs it"
    assert hist[0]["actor"] == API_ADMIN
    assert datetime.now(UTC) < end, "the machine was too slow: the freeze ended before the checks inside it"

    # When the freeze ends, run 0 starts by itself. Its image is older than what runs now, so it
    # does not replace it.
    wait_for("the end of the freeze", lambda: datetime.now(UTC) >= end, timeout=40, interval=0.2)
    job = wait_for("run 0 to be claimable", lambda: agent.claim(wait=1), timeout=10)
    assert job["run_id"] == run0["id"]
    live.complete(agent, job, [pushed["v1"].image()])
    req = wait_for("run 0's request to end", lambda: next(
        (r for r in live.http.get("/api/v1/projects/greeter/environments/staging/requests").json()
         if r["run"] == run0["id"] and r["status"] in ("done", "blocked", "superseded")), None), timeout=30)
    assert req["status"] == "blocked" and "older than revision 2" in req["error"]
    assert [d["revision"] for d in live.history("staging")] == [2, 1] and body(port) == "v2"
    page = live.http.get("/projects/greeter/environments/staging").text
    assert "Recently not deployed" in page and "older than revision 2" in page
    assert "No deploys now" not in page  # the freeze is over


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_promotion_into_a_frozen_environment_is_held_and_released_when_the_freeze_ends(live, pushed, tmp_path):
    staging, production = next_port(), next_port()
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)  # staging deploys first
    repo = tmp_path / "greeter"
    frozen = (f"    auto: true\n    after: staging\n"
              f"    freeze: [{{from: '2020-01-01T00:00:00Z', to: '{iso(end)}', reason: no friday deploys}}]\n")
    make_repo(repo, config_yaml(env_yaml("staging", staging, extra="    auto: true\n    from: publish\n")
                                + env_yaml("production", production, extra=frozen)))
    live.add_project(repo)
    agent = live.agent()
    (run,) = live.trigger()
    job = agent.claim(wait=0)
    assert job is not None and job["run_id"] == run["id"]  # it deploys to staging only: not held
    live.complete(agent, job, [pushed["v1"].image()])

    def held_request():
        waiting = live.environments()["production"]["waiting"]
        return waiting[0] if waiting and waiting[0]["status"] == "held" else None

    req = wait_for("the promotion to be held", held_request, timeout=60)
    assert live.history("staging")[0]["status"] == "healthy" and body(staging) == "v1"
    assert "frozen" in req["hold_reason"] and req["held"]["freeze"]["reason"] == "no friday deploys"
    assert req["trigger"] == "promotion" and req["run"] == run["id"]
    (ev,) = live.events("deploy.held", environment="production")
    assert ev.data["freeze"]["to"] == iso(end) and ev.data["request"] == req["id"] and ev.run_id == run["id"]
    assert live.history("production") == []
    assert datetime.now(UTC) < end

    prod = wait_for("production after the freeze", lambda: (h := live.history("production"))
                    and h[0]["finished_at"] and h, timeout=60)
    assert prod[0]["status"] == "healthy"
    assert datetime.fromisoformat(prod[0]["started_at"].replace("Z", "+00:00")) >= end
    assert prod[0]["freeze_override"] is None and body(production) == "v1"
