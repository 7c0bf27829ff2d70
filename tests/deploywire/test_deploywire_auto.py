"""Continuous deployment end to end: a live server, the agent protocol, a real registry, real podman.

A trusted run publishes an image (pushed to the registry for real) -> the server deploys it to
staging -> healthy for stable_for -> promoted to production. A release whose health endpoint
answers 500 once it serves is rolled back in staging and never reaches production.
"""

from __future__ import annotations

import re

import pytest

from .conftest import body, commit_file, config_yaml, env_yaml, make_repo, next_port, wait_for

pytestmark = [pytest.mark.podman, pytest.mark.registry, pytest.mark.slow]


def test_published_image_goes_to_staging_then_production_and_a_bad_one_stops_at_staging(live, pushed, tmp_path):
    staging, production = next_port(), next_port()
    # stable_for 3s: the flaky release answers 500 from its 4th probe on; three failures in a row
    # must fit in the watch even when the machine is busy.
    envs = (env_yaml("staging", staging, extra="    auto: true\n    from: publish\n", stable_for="3s")
            + env_yaml("production", production, extra="    auto: true\n    after: staging\n"))
    repo = tmp_path / "greeter"
    first_commit = make_repo(repo, config_yaml(envs))
    live.add_project(repo)
    listed = live.environments()
    assert list(listed["_"]["environments"][i]["name"] for i in range(2)) == ["staging", "production"]
    assert listed["staging"]["auto"] and listed["staging"]["from"] == "publish"
    assert listed["production"]["after"] == "staging" and listed["staging"]["config_commit"] == first_commit

    # A patch under review never deploys, whatever it publishes (it is not trusted).
    agent = live.agent()
    (run1,) = live.trigger()
    assert run1["trusted"] and run1["pipeline"] == "publish"
    job = agent.claim(wait=0)
    assert job["run_id"] == run1["id"]
    live.complete(agent, job, [pushed["v1"].image()])

    def production_healthy(n: int):
        hist = live.history("production")
        return hist if len(hist) >= n and hist[0]["status"] == "healthy" else None

    prod = wait_for("production revision 1", lambda: production_healthy(1), timeout=90)
    stag = live.history("staging")
    assert [(d["revision"], d["status"]) for d in stag] == [(1, "healthy")]
    assert [(d["revision"], d["status"]) for d in prod] == [(1, "healthy")]
    digest = pushed["v1"].digest
    assert stag[0]["image"] == f"{pushed['v1'].name}@{digest}" and prod[0]["image"] == stag[0]["image"]
    assert stag[0]["run"] == run1["id"] and prod[0]["run"] == run1["id"]
    assert stag[0]["commit"] == first_commit and stag[0]["actor"] == "server"
    assert prod[0]["reason"] == "promoted from staging revision 1"
    assert [v["phase"] for v in stag[0]["health"]] == ["within", "stable"]
    assert body(staging) == "v1" and body(production) == "v1"

    # The ledger tells the story: queued -> started -> verdicts -> finished, staging first.
    flow = [(e.kind, e.environment, e.outcome) for e in live.events(
        "deploy.queued", "deploy.started", "health.verdict", "deploy.finished")]
    assert flow == [
        ("deploy.queued", "staging", ""), ("deploy.started", "staging", ""),
        ("health.verdict", "staging", "healthy"), ("health.verdict", "staging", "healthy"),
        ("deploy.finished", "staging", "healthy"),
        ("deploy.queued", "production", ""), ("deploy.started", "production", ""),
        ("health.verdict", "production", "healthy"), ("health.verdict", "production", "healthy"),
        ("deploy.finished", "production", "healthy")]
    finished = live.events("deploy.finished")
    # The first deploy ships every commit up to the run's.
    assert finished[0].data["commits"] == [first_commit, *finished[0].data["commits"][1:]]
    assert len(finished[0].data["commits"]) == 2 and finished[0].run_id == run1["id"]
    assert finished[0].image_digest == digest and finished[0].commit == first_commit
    queued = live.events("deploy.queued")
    assert queued[0].data["trigger"] == "auto" and queued[1].data["trigger"] == "promotion"

    # The run page and the change page say where the change runs.
    page = live.http.get(f"/runs/{run1['id']}").text
    assert "Deployed to" in page
    assert re.search(r'href="/projects/greeter/environments/staging">staging</a>.*?revision 1.*?healthy', page, re.S)
    change = live.http.get(f"/projects/greeter/changes/{first_commit}").text
    assert re.search(r'production</a>.*?revision 1', change, re.S)
    api = live.http.get(f"/api/v1/runs/{run1['id']}/deployments").json()
    assert {(d["environment"], d["revision"], d["status"]) for d in api["deployed"]} == {
        ("staging", 1, "healthy"), ("production", 1, "healthy")}

    # A second change publishes a release that is healthy at first, then answers 500 while serving.
    second_commit = commit_file(repo, "app.txt", "two\n", "second change")
    live.mirror_sync()
    (run2,) = live.trigger()
    job = agent.claim(wait=0)
    assert job["run_id"] == run2["id"]
    live.complete(agent, job, [pushed["flaky"].image()])

    stag = wait_for("staging revision 2 to end", lambda: (h := live.history("staging"))[0]["status"] != "deploying"
                    and h[0]["revision"] == 2 and h[0]["finished_at"] and h, timeout=90)
    bad = stag[0]
    assert bad["status"] == "failed" and bad["restored_revision"] == 1, bad
    assert bad["error"].startswith("not healthy while serving") and bad["serving_at"]
    assert bad["time_to_restore"] is not None and bad["time_to_restore"] > 0
    assert stag[1]["status"] == "healthy"  # revision 1 serves again
    assert body(staging) == "v1"
    live.state.deploys.join(timeout=30)
    # Production never received it: one revision, still v1, and no request for it was ever made.
    assert [(d["revision"], d["status"]) for d in live.history("production")] == [(1, "healthy")]
    assert body(production) == "v1"
    assert not [e for e in live.events("deploy.queued", environment="production") if e.run_id == run2["id"]]
    rb = live.events("rollback.started", "rollback.finished", "deploy.finished", revision=2, environment="staging")
    assert [(e.kind, e.outcome) for e in rb] == [("rollback.started", ""), ("rollback.finished", "restored"),
                                                 ("deploy.finished", "rolled-back")]
    assert rb[1].data["automatic"] is True and rb[1].data["to_revision"] == 1
    assert rb[1].data["time_to_restore"] >= bad["time_to_restore"]
    assert rb[2].data["commits"] == [second_commit] and rb[2].commit == second_commit

    # The environment page shows both, with the time to restore and the health verdicts.
    html = live.http.get("/projects/greeter/environments/staging").text
    assert "Revision 1" in html or "revision 1" in html
    assert re.search(r"<td[^>]*>2</td>.*?failed.*?time to restore", html, re.S | re.I)
