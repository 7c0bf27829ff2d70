"""The server's deployment rules without containers: where environments come from, which runs deploy,
the order of images, freeze holds at queue time and their release, recovery at start-up.

A real app on SQLite and PostgreSQL, real git repositories, the real agent protocol; the deploy
worker is not started, so requests stay where the rules put them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chute.agent.client import AgentClient
from chute.deploy import Deployment, parse_environments
from chute.deploy.model import DEPLOYING
from chute.server.app import create_app
from chute.server.deploys import closed, next_open
from chute.server.settings import Settings
from chute.store import DeployRequest, Event, Job, Project, utcnow

from .conftest import commit_file, config_yaml, env_yaml, make_repo

pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

STAGING = env_yaml("staging", 18490, extra="    auto: true\n    from: publish\n")
PRODUCTION = env_yaml("production", 18491, extra="    auto: true\n    after: staging\n")
IMAGE = {"stage": "production", "name": "registry.example.org/greeter", "tags": ["t1"],
         "digest": "sha256:" + "ab" * 32}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class App:
    client: TestClient
    state: Any
    token: str
    repo: Path
    app: Any

    @property
    def h(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def agent(self) -> AgentClient:
        ac = AgentClient("http://testserver", self.token, "a1")
        ac.http.close()
        ac.http = TestClient(self.app, headers=self.h)
        return ac

    def trigger(self, ref: str | None = None) -> dict[str, Any]:
        r = self.client.post("/api/v1/projects/greeter/trigger", json={"ref": ref, "pipelines": ["publish"]},
                             headers=self.h)
        assert r.status_code == 201, r.text
        return r.json()[0]

    def finish(self, run_id: int, status: str = "success", images: list[dict[str, Any]] | None = None,
               promotions: list[dict[str, Any]] | None = None) -> None:
        agent = self.agent()
        job = agent.claim(wait=0)
        assert job is not None and job["run_id"] == run_id, job
        agent.complete(job["job_id"], {"status": status, "error": "" if status == "success" else "broken",
                                       "stages": [{"name": "production", "status": status}],
                                       "images": [IMAGE] if images is None else images,
                                       "promotions": promotions or [], "duration": 1})

    def sync(self) -> None:
        from chute.server import services

        with self.state.db.session() as s:
            p = s.scalars(select(Project).where(Project.name == "greeter")).one()
            services.mirror(self.state.settings, p).sync()

    def requests(self) -> list[DeployRequest]:
        with self.state.db.session() as s:
            reqs = list(s.scalars(select(DeployRequest).order_by(DeployRequest.id)))
            for r in reqs:
                _ = r.environment.name
            return reqs

    def envs(self) -> dict[str, Any]:
        r = self.client.get("/api/v1/projects/greeter/environments")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def app(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    repo = tmp_path / "greeter"
    make_repo(repo, config_yaml(STAGING + PRODUCTION))
    settings = Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://testserver")
    application = create_app(settings, start_background=False)
    with TestClient(application) as client:
        state = application.state.chute
        a = App(client, state, state.admin_token, repo, application)
        r = client.post("/api/v1/projects", json={"repo": str(repo), "name": "greeter"}, headers=a.h)
        assert r.status_code == 201, r.text
        yield a


def test_environments_come_from_the_default_branch_only(app: App) -> None:
    data = app.envs()
    assert [e["name"] for e in data["environments"]] == ["staging", "production"] and data["config_error"] is None
    page = app.client.get("/projects/greeter").text
    assert 'href="/projects/greeter/environments/staging">staging</a>' in page and "auto from publish" in page
    assert "auto after staging" in page
    # A branch (a patch) that adds an environment and grants itself auto deploys changes nothing.
    from tests.conftest import git

    git(app.repo, "checkout", "-q", "-b", "feature")
    evil = env_yaml("evil", 18492, extra="    auto: true\n    from: publish\n    branch: feature\n")
    commit_file(app.repo, ".pipeline/config.yaml", config_yaml(STAGING + PRODUCTION + evil), "evil")
    run = app.trigger("feature")
    assert not run["trusted"]
    app.state.deploys.refresh_all()
    assert [e["name"] for e in app.envs()["environments"]] == ["staging", "production"]
    app.finish(run["id"])
    assert app.requests() == []  # an untrusted run never deploys, whatever it published

    # A broken environments section on main keeps the last good environments, and says why.
    git(app.repo, "checkout", "-q", "main")
    broken = STAGING + PRODUCTION.replace("after: staging", "after: stagin")
    commit_file(app.repo, ".pipeline/config.yaml", config_yaml(broken), "typo")
    app.sync()
    app.state.deploys.refresh_all()
    data = app.envs()
    assert [e["name"] for e in data["environments"]] == ["staging", "production"]
    assert "environments.production.after: no environment is named `stagin`" in data["config_error"]
    assert "did you mean `staging`?" in data["config_error"]
    page = app.client.get("/projects/greeter/environments/staging").text
    assert "have errors" in page and "stagin" in page
    # Fixed, with production removed: it is gone from the listing (its history stays in the store).
    commit_file(app.repo, ".pipeline/config.yaml", config_yaml(STAGING), "only staging")
    app.sync()
    app.state.deploys.refresh_all()
    data = app.envs()
    assert [e["name"] for e in data["environments"]] == ["staging"] and data["config_error"] is None
    r = app.client.get("/api/v1/projects/greeter/environments/production/history")
    assert r.status_code == 200 and r.json() == []  # a removed environment's history stays readable
    r = app.client.get("/api/v1/projects/greeter/environments/qa/history")
    assert r.status_code == 404 and "known: staging" in r.json()["detail"]


def test_which_finished_runs_deploy_and_where(app: App) -> None:
    failed = app.trigger()
    app.finish(failed["id"], status="failure", images=[])
    assert app.requests() == []  # a failed run deploys nothing

    run = app.trigger()
    app.finish(run["id"])
    (req,) = app.requests()
    assert (req.environment.name, req.trigger, req.kind, req.status) == ("staging", "auto", "deploy", "queued")
    assert req.image_ref == f"{IMAGE['name']}@{IMAGE['digest']}" and req.run_id == run["id"]
    assert req.order_key.endswith(f"#{run['id']:012d}") and req.order_key[:4].isdigit()
    (ev,) = [e for e in _events(app, "deploy.queued")]
    assert ev.run_id == run["id"] and ev.environment == "staging" and ev.actor == "server"
    assert ev.data["trigger"] == "auto" and ev.data["image"] == req.image_ref
    assert ev.commit == run["change"]["commit"]

    # A PipelineLib promote step asks for the environments it names, auto or not.
    promo = app.trigger()
    promoted = f"{IMAGE['name']}@sha256:{'cd' * 32}"
    app.finish(promo["id"], images=[], promotions=[{"stage": "production", "environments": ["production"],
                                                    "image": promoted, "digest": "sha256:" + "cd" * 32}])
    last = app.requests()[-1]
    assert (last.environment.name, last.trigger, last.image_ref) == ("production", "promote-step", promoted)
    api = app.client.get(f"/api/v1/runs/{promo['id']}/deployments").json()
    assert [(r["environment"], r["status"]) for r in api["requests"]] == [("production", "queued")]
    assert api["held"] is None and api["deployed"] == []


def test_an_older_image_never_replaces_a_newer_one_waiting_in_the_queue(app: App) -> None:
    old = app.trigger()
    commit_file(app.repo, "b.txt", "b\n", "newer change")
    app.sync()
    new = app.trigger()
    # The newer run finishes first; the older one afterwards must not take its place.
    agent = app.agent()
    jobs = {j["run_id"]: j for j in (agent.claim(wait=0), agent.claim(wait=0))}
    for run_id in (new["id"], old["id"]):
        agent.complete(jobs[run_id]["job_id"], {"status": "success", "images": [IMAGE], "duration": 1,
                                                "stages": [{"name": "production", "status": "success"}]})
    reqs = app.requests()
    assert [(r.run_id, r.status) for r in reqs] == [(new["id"], "queued"), (old["id"], "superseded")]
    assert reqs[0].order_key > reqs[1].order_key
    assert "a newer image is already on its way" in reqs[1].error
    # A newer one still supersedes what waits.
    commit_file(app.repo, "c.txt", "c\n", "newest change")
    app.sync()
    newest = app.trigger()
    app.finish(newest["id"])
    reqs = app.requests()
    assert [(r.run_id, r.status) for r in reqs] == [(new["id"], "superseded"), (old["id"], "superseded"),
                                                    (newest["id"], "queued")]
    assert f"superseded by request #{reqs[2].id}" in reqs[0].error


def test_a_freeze_holds_runs_at_queue_time_and_lifting_it_releases_them(app: App) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    end = now + timedelta(hours=2)
    frozen = env_yaml("staging", 18490, extra=f"    auto: true\n    from: publish\n    freeze: [{{from: "
                      f"'{iso(now - timedelta(minutes=1))}', to: '{iso(end)}', reason: audit}}]\n")
    commit_file(app.repo, ".pipeline/config.yaml", config_yaml(frozen + PRODUCTION), "freeze")
    app.sync()
    run = app.trigger()
    with app.state.db.session() as s:
        job = s.scalars(select(Job).where(Job.run_id == run["id"])).one()
        assert job.not_before == end
    assert app.agent().claim(wait=0) is None
    (held,) = _events(app, "deploy.held")
    assert held.run_id == run["id"] and held.data["until"] == iso(end) and held.data["freeze"]["reason"] == "audit"
    api = app.client.get(f"/api/v1/runs/{run['id']}/deployments").json()
    assert api["held"]["environments"] == ["staging"] and "audit" in api["held"]["reason"]
    assert app.envs()["held_runs"][0]["run"] == run["id"]

    # A deployment asked for during the freeze is held by the worker, with the freeze's end.
    r = app.client.post("/api/v1/projects/greeter/environments/staging/deploy", headers=app.h,
                        json={"image": "localhost/x:1", "reason": "urgent", "override_freeze": False})
    assert r.status_code == 409
    with app.state.db.session() as s:
        from chute.server.deploys import DeployService

        svc: DeployService = app.state.deploys
        p = s.scalars(select(Project).where(Project.name == "greeter")).one()
        req = svc.request(s, p, "staging", trigger="auto", image="localhost/x:1", actor="server", reason="auto")
        s.flush()
        req_id = req.id
    app.state.deploys.execute(req_id)
    (req,) = app.requests()
    assert req.status == "held" and req.not_before == end and "frozen" in req.hold_reason
    evs = [e for e in _events(app, "deploy.held") if e.environment == "staging"]
    assert len(evs) == 1 and evs[0].data["request"] == req_id
    app.state.deploys.execute(req_id)  # still frozen: held again, but not written twice
    assert len([e for e in _events(app, "deploy.held") if e.environment == "staging"]) == 1
    # A person lets it through: it is queued again with the override (recorded when it deploys).
    r = app.client.post(f"/api/v1/deploy-requests/{req_id}/override", headers=app.h, json={"reason": "audit done"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "queued" and r.json()["override_freeze"]
    assert r.json()["actor"] == "admin (token bootstrap)"  # the ledger's actor for calls with the admin token
    r = app.client.post(f"/api/v1/deploy-requests/{req_id}/override", json={"reason": "x"})
    assert r.status_code == 401

    # The freeze is lifted on the default branch: the held run is released at the next sweep.
    commit_file(app.repo, ".pipeline/config.yaml", config_yaml(STAGING + PRODUCTION), "unfreeze")
    app.sync()
    app.state.deploys.refresh_all()
    app.state.deploys.sweep_run_holds()
    with app.state.db.session() as s:
        assert s.scalars(select(Job).where(Job.run_id == run["id"])).one().not_before is None
    job = app.agent().claim(wait=0)
    assert job is not None and job["run_id"] == run["id"]


def test_start_up_ends_interrupted_deployments_on_a_known_revision(db_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    settings = Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://testserver")
    first = create_app(settings, start_background=False)
    with TestClient(first):
        state = first.state.chute
        with state.db.session() as s:
            s.add(Project(name="p", repo_url="/nowhere", webhook_secret="x"))
        store = state.deploys.store
        store.record(Deployment(project="p", environment="staging", revision=store.next_revision("p", "staging"),
                                image_ref="r/web:1", image_digest="sha256:01", status=DEPLOYING, actor="ada",
                                reason="r"))
        with state.db.session() as s:
            env_row = store.environment_row(s, "p", "staging")
            s.add(DeployRequest(environment_id=env_row.id, image_ref="r/web:1", actor="ada", status="running",
                                revision=1))
            # The deploying server's lease on the environment's lock has not run out yet.
            env_row.lock_holder, env_row.lock_until = "elsewhere:1:x/owner", utcnow() + timedelta(seconds=60)
    # The server "crashed" mid-deploy; a new one starts on the same database.
    second = create_app(settings, start_background=False)
    with TestClient(second):
        state = second.state.chute
        assert state.deploys.store.get("p", "staging", 1).status == DEPLOYING  # its lock may still be in use
        with state.db.session() as s:
            state.deploys.store.environment_row(s, "p", "staging").lock_until = utcnow() - timedelta(seconds=1)
        state.deploys.recover()  # the lease ran out: nobody deploys it any more
        dep = state.deploys.store.get("p", "staging", 1)
        assert dep.status == "failed" and dep.error.startswith("interrupted")
        (req,) = [r for r in _requests(state)]
        assert req.status == "blocked" and req.error.startswith("interrupted")
        (ev,) = [e for e in _events_of(state, "deploy.finished")]
        assert ev.outcome == "failed" and ev.revision == 1 and ev.command == "recovery"


def test_the_calendar_says_when_deploys_open_again() -> None:
    envs = parse_environments({
        "production": {"port": 18493, "windows": [{"days": ["mon", "tue", "wed", "thu"], "from": "09:00",
                                                   "to": "16:00", "timezone": "Europe/Berlin"}],
                       "freeze": [{"from": "2026-12-24T00:00:00Z", "to": "2026-12-28T16:00:00Z",
                                   "reason": "holidays"}]},
    })
    env = envs["production"]
    friday_evening = datetime(2026, 12, 18, 17, 0, tzinfo=UTC)  # 18:00 in Berlin
    shut = closed(env, friday_evening)
    assert shut is not None and "outside its deploy windows" in shut.reason and shut.freeze is None
    assert shut.until == datetime(2026, 12, 21, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin
    assert closed(env, datetime(2026, 12, 21, 8, 0, tzinfo=UTC)) is None
    # Inside the holiday freeze: it opens at the first window after the freeze ends.
    shut = closed(env, datetime(2026, 12, 24, 10, 0, tzinfo=UTC))
    assert shut is not None and shut.freeze["reason"] == "holidays" and "frozen" in shut.reason
    assert shut.until == datetime(2026, 12, 29, 8, 0, tzinfo=UTC)  # Tuesday 09:00: the freeze ends after Monday 16:00
    year = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}
    frozen = parse_environments({"e": {"port": 18494, "freeze": [year]}})["e"]
    assert next_open(frozen, datetime(2026, 6, 1, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    # A window that opens only after the horizon (two weeks of windows are looked at): unknown.
    later = parse_environments({"e": {"port": 18494, "freeze": [year], "windows": [
        {"days": ["mon"], "from": "09:00", "to": "10:00", "timezone": "UTC"}]}})["e"]
    assert next_open(later, datetime(2026, 6, 1, tzinfo=UTC)) is None
    assert closed(later, datetime(2026, 6, 1, tzinfo=UTC)).until is None


def _events(app: App, kind: str) -> list[Event]:
    return _events_of(app.state, kind)


def _events_of(state: Any, kind: str) -> list[Event]:
    with state.db.session() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def _requests(state: Any) -> list[DeployRequest]:
    with state.db.session() as s:
        return list(s.scalars(select(DeployRequest)))
