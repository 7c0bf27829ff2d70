"""The REST API fuzzed from its own OpenAPI document (schemathesis): no input gives a 5xx.

Every operation of ``/openapi.json`` is called with generated (valid and invalid) path
parameters, queries and bodies, with the admin token, against a real app on a real database
that holds a project, finished runs, a run an agent holds, an environment and a deploy
request. Generated identifiers are often swapped for those known ones so that the calls reach
the code behind the 404s. Each response must conform to the schema; a 5xx fails the test.

Two things are bounded on purpose: a claim's long poll (``wait``) is cut to 0.1 s, and the
server-sent events of a run are asked only of finished (or unknown) runs, since the stream of a
live run stays open until the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chute.server.app import create_app
from chute.server.settings import Settings
from tests.conftest import make_repo

CONFIG = """pipelines:
  test:
    blubberfile: blubber.yaml
    stages:
      - name: unit
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: production
        build: production
        publish:
          image: true
environments:
  staging:
    target: podman
    port: 18999
    from: publish
"""
BLUBBER = """version: v4
base: localhost/debian:bookworm
variants:
  unit: {entrypoint: [true]}
  production: {entrypoint: [true]}
"""
AGENT = "fuzz-agent"
# Examples per operation and mode: about 30 operations x 2 modes x 15 take a minute or two on a
# busy 2-core machine; CHUTE_FUZZ_EXAMPLES=200 fuzzes harder.
EXAMPLES = int(os.environ.get("CHUTE_FUZZ_EXAMPLES", "15"))


class World:
    """What the fuzzed app holds, so that generated calls can name things that exist."""

    def __init__(self) -> None:
        self.project = "greeter"
        self.env = "staging"
        self.commit = ""
        self.finished_runs: list[int] = []
        self.held_run = 0
        self.held_job = 0
        self.change_id = 0
        self.request_id = 0


def _seed(client: Any, repo: Path, world: World) -> None:
    h = client.headers
    r = client.post("/api/v1/projects", json={"repo": str(repo), "name": world.project})
    assert r.status_code == 201, r.text
    runs = client.post(f"/api/v1/projects/{world.project}/trigger", json={"pipelines": ["test", "publish"]})
    assert runs.status_code == 201, runs.text
    world.commit = runs.json()[0]["change"]["commit"]
    world.change_id = runs.json()[0]["change"]["id"]
    digest = "sha256:" + "ab" * 32
    results = [
        {"status": "failure", "error": "stage unit failed: exit 1",
         "stages": [{"name": "unit", "status": "failure", "error": "exit 1"}]},
        {"status": "success", "stages": [{"name": "production", "status": "success",
                                          "exports": {"imageID": "feed"}}],
         "images": [{"stage": "production", "name": "127.0.0.1:15000/greeter", "tags": ["t1"], "digest": digest}]},
    ]
    for result in results:
        job = client.post("/api/v1/agents/claim", json={"agent": "seed", "wait": 0}).json()
        client.post(f"/api/v1/jobs/{job['job_id']}/logs", headers=h,
                    json={"agent": "seed", "chunks": [{"seq": 1, "stage": "", "text": "\x1b[1mhello\x1b[0m\n"}]})
        assert client.post(f"/api/v1/jobs/{job['job_id']}/complete",
                           json={"agent": "seed", "result": result}).status_code == 204
        world.finished_runs.append(job["run_id"])
    again = client.post(f"/api/v1/runs/{world.finished_runs[0]}/rerun", json={}).json()
    job = client.post("/api/v1/agents/claim", json={"agent": AGENT, "wait": 0}).json()
    assert job["run_id"] == again["id"]
    world.held_run, world.held_job = job["run_id"], job["job_id"]
    r = client.post(f"/api/v1/projects/{world.project}/environments/{world.env}/deploy",
                    json={"run": world.finished_runs[1], "reason": "seed"})
    assert r.status_code == 202, r.text
    world.request_id = r.json()["id"]


@pytest.fixture
def fuzz_app(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, World]]:
    """The app (its lifespan run by schemathesis's in-process client), seeded; yields (app, client, world)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHUTE_HOME", str(home))
    repo = make_repo(tmp_path / "greeter", files={".pipeline/config.yaml": CONFIG,
                                                   ".pipeline/blubber.yaml": BLUBBER})
    app = create_app(Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://chute.test",
                                    anonymous_read=False),  # so that every route must refuse a missing token
                     start_background=False)
    world = World()
    client = asgi.get_client(app)
    with client:
        client.headers["Authorization"] = f"Bearer {app.state.chute.admin_token}"
        try:
            _seed(client, repo, world)
            yield app, client, world
        finally:
            asgi.shutdown_lifespans()


def _hooks(schema: Any, world: World) -> None:
    known: dict[str, list[Any]] = {
        "name": [world.project], "env": [world.env], "number": [world.commit[:12], world.commit],
        "run_id": [*world.finished_runs, world.held_run], "job_id": [world.held_job],
        "change_id": [world.change_id], "req_id": [world.request_id], "variant": ["unit", "production"],
    }

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters:
            return st.just(path_parameters)
        if context.operation.path.endswith("/events"):
            # A live run's stream stays open until the run ends: ask finished or unknown runs only.
            return st.sampled_from([*world.finished_runs, 10**9]).map(lambda r: {**path_parameters, "run_id": r})
        options = [path_parameters]
        for key, values in known.items():
            if key in path_parameters:
                options += [{**path_parameters, key: v} for v in values]
        if len(options) > 1:  # every known value at once, too (project and environment together)
            options.append({**path_parameters, **{k: v[0] for k, v in known.items() if k in path_parameters}})
        return st.sampled_from(options)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        # Only valid values are replaced, so that invalid (negative) cases stay invalid.
        if not isinstance(body, dict):
            return st.just(body)
        if context.operation.path == "/api/v1/agents/claim":
            wait = body.get("wait", 0.1)
            if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 <= wait <= 60:
                body = {**body, "wait": min(wait, 0.1)}  # the long poll would hold the test for a minute
        if isinstance(body.get("agent"), str) and 0 < len(body["agent"]) <= 200:
            return st.sampled_from([body, {**body, "agent": AGENT}])
        return st.just(body)


def valid_data_passes_validation(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the schema allows must pass the API's own request validation.

    Replaces schemathesis's ``positive_data_acceptance``, which also refuses a 400 or a 422 with a
    sentence: the API answers so for requests that are well formed but name things that do not
    exist or make no sense together (an unknown ref, both ``image`` and ``run``), which no schema
    can express. A validation 422 (a list of invalid fields) means the schema promised too much.
    """
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and response.status_code == 422:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        if isinstance(detail, list):
            raise AssertionError(f"schema-valid request refused by validation: {response.text[:500]}")
    return None


def test_no_input_gives_a_server_error(fuzz_app: tuple[Any, Any, World]) -> None:
    app, client, world = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # Unknown query parameters are ignored, as HTTP APIs do; don't count accepting them as a failure.
    # The admin token is sent with every call, so generated Authorization headers would not be.
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    _hooks(schema, world)
    auth = {"Authorization": client.headers["Authorization"]}
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def check(case: Any) -> None:
                case.call_and_validate(headers=auth, session=client, excluded_checks=[positive_data_acceptance],
                                       additional_checks=[valid_data_passes_validation])

            try:
                check()
            except Unsatisfiable:
                pass  # no invalid value exists (e.g. every string is a valid project name)
            except (Exception, BaseExceptionGroup) as err:  # every operation's failures, reported together
                failures.append(f"{op.label} ({mode.value}): {err}")
    assert not failures, "\n\n".join(failures)


# ------------------------------------------------------------------ what the fuzzer found, pinned down
def _held_job(server: Any) -> tuple[int, int]:
    from chute.server import services
    from chute.store import Change, Project

    st_ = server.app_state
    with st_.db.session() as s:
        p = Project(name="greeter", repo_url="/nowhere", webhook_secret="s")
        ch = Change(project=p, kind="push", commit="c0ffee" * 6 + "abcd", branch="main")
        s.add_all([p, ch])
        s.flush()
        run = services.queue_run(s, st_.settings, p, ch, "test", trigger="manual", actor="ada", trusted=False)
        run_id = run.id
    job = server.post("/api/v1/agents/claim", json={"agent": "a1", "wait": 0}, headers=server.admin).json()
    assert job["run_id"] == run_id
    return run_id, job["job_id"]


def test_ids_beyond_the_database_are_invalid_not_server_errors(server: Any) -> None:
    big = 2**40
    for path in (f"/api/v1/runs/{big}", f"/api/v1/changes/{big}", f"/api/v1/deploy-requests/{big}",
                 f"/api/v1/runs/{big}/logs", f"/api/v1/runs/{big}/deployments", f"/api/v1/runs?before={big}",
                 f"/api/v1/runs/1/logs?after={2**60}"):
        r = server.get(path)
        assert r.status_code == 422, (path, r.status_code, r.text)
    r = server.post(f"/api/v1/jobs/{big}/heartbeat", json={"agent": "a1"}, headers=server.admin)
    assert r.status_code == 422


def test_malformed_agent_reports_are_refused_and_store_nothing(server: Any) -> None:
    run_id, jid = _held_job(server)
    h = server.admin
    bad = [
        (f"/api/v1/jobs/{jid}/logs", {"agent": "a1", "chunks": [{"stage": "t", "text": "no seq"}]}),
        (f"/api/v1/jobs/{jid}/logs", {"agent": "a1", "chunks": [{"seq": "x", "text": "bad seq"}]}),
        (f"/api/v1/jobs/{jid}/graph", {"agent": "a1", "graph": {"stages": [{"not": "a name"}]}}),
        (f"/api/v1/jobs/{jid}/graph", {"agent": "a1", "graph": {"stages": ["a"], "edges": [["a"]]}}),
        (f"/api/v1/jobs/{jid}/complete", {"agent": "a1", "result": {"status": "success",
                                                                    "stages": [{"status": "success"}]}}),
        (f"/api/v1/jobs/{jid}/complete", {"agent": "a1", "result": {"images": [{"name": "x"}]}}),
        (f"/api/v1/jobs/{jid}/stage", {"agent": "a1", "stage": "", "status": "running"}),
    ]
    for path, body in bad:
        r = server.post(path, json=body, headers=h)
        assert r.status_code == 422, (path, body, r.status_code, r.text)
    run = server.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "running" and run["stages"] == [] and run["graph"] == {}
    # after=0: the server's own note on an untrusted run is chunk 0; nothing the agent sent was stored
    assert server.get(f"/api/v1/runs/{run_id}/logs", params={"after": 0}).json() == []


def test_third_attempt_log_seqs_and_nul_bytes_are_stored(server: Any) -> None:
    """A third attempt numbers its chunks from 3 * 10**9 (beyond a 32-bit column); output may hold NUL."""
    run_id, jid = _held_job(server)
    seq = 3 * 10**9 + 1
    chunks = [{"seq": seq, "stage": "t", "text": "a\x00b\n"}, {"seq": seq, "stage": "t", "text": "a\x00b\n"},
              {"seq": seq + 1, "stage": "t", "text": "next\n"}]
    r = server.post(f"/api/v1/jobs/{jid}/logs", json={"agent": "a1", "chunks": chunks}, headers=server.admin)
    assert r.status_code == 204, r.text
    got = server.get(f"/api/v1/runs/{run_id}/logs", params={"after": 0}).json()  # 0: the server's trust note
    assert [(c["seq"], c["text"]) for c in got] == [(seq, "a\ufffdb\n"), (seq + 1, "next\n")]
    assert server.get(f"/api/v1/runs/{run_id}/logs", params={"after": seq}).json()[0]["seq"] == seq + 1


def test_a_nul_in_the_url_is_a_400(server: Any) -> None:
    assert server.get("/api/v1/projects/gree%00ter").status_code == 400
    assert server.get("/api/v1/runs", params={"project": "a\x00b"}).status_code == 400


def test_logs_come_in_pages_of_about_a_mebibyte(server: Any) -> None:
    run_id, jid = _held_job(server)
    piece = "x" * 600_000
    chunks = [{"seq": n, "stage": "t", "text": piece} for n in (1, 2, 3)]
    assert server.post(f"/api/v1/jobs/{jid}/logs", json={"agent": "a1", "chunks": chunks},
                       headers=server.admin).status_code == 204
    first = server.get(f"/api/v1/runs/{run_id}/logs", params={"after": 0}).json()  # 0: the server's trust note
    assert [c["seq"] for c in first] == [1, 2]  # 1.2 MB: the page ends after the chunk that passed 1 MiB
    rest = server.get(f"/api/v1/runs/{run_id}/logs", params={"after": 2}).json()
    assert [c["seq"] for c in rest] == [3]
    assert server.get(f"/api/v1/runs/{run_id}/logs", params={"after": 3}).json() == []


def test_trigger_refs_and_abbreviated_commits(server: Any, tmp_path: Path) -> None:
    from tests.conftest import git

    repo = make_repo(tmp_path / "greeter", files={".pipeline/config.yaml": CONFIG, ".pipeline/blubber.yaml": BLUBBER})
    long_branch = "b" * 250  # git allows it; the branch column holds 200 characters
    git(repo, "checkout", "-q", "-b", long_branch)
    git(repo, "commit", "-q", "--allow-empty", "-m", "on a long branch")
    git(repo, "checkout", "-q", "main")
    h = server.admin
    assert server.post("/api/v1/projects", json={"repo": str(repo), "name": "greeter"}, headers=h).status_code == 201
    r = server.post("/api/v1/projects/greeter/trigger", json={"ref": "no-such-branch"}, headers=h)
    assert r.status_code == 422 and "names no commit" in r.json()["detail"]
    sha = git(repo, "rev-parse", "HEAD")
    r = server.post("/api/v1/projects/greeter/trigger", json={"commit": sha[:10], "pipelines": ["test"]}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()[0]["change"]["commit"] == sha  # one change per commit, however it was named
    before = server.get("/api/v1/runs").json()
    r = server.post("/api/v1/projects/greeter/trigger", json={"ref": long_branch, "pipelines": ["test"]}, headers=h)
    # SQLite keeps the long name; PostgreSQL refuses it: a 400 that stores nothing, never a 500.
    assert r.status_code == (400 if "postgresql" in server.app_state.db.url else 201), r.text
    if r.status_code == 400:
        assert "cannot be stored" in r.json()["detail"]
        assert server.get("/api/v1/runs").json() == before


def test_openapi_documents_errors_and_which_calls_need_a_token(server: Any) -> None:
    doc = server.get("/openapi.json").json()
    paths = doc["paths"]
    assert "401" in paths["/api/v1/runs/{run_id}/cancel"]["post"]["responses"]
    # reads need a token too when CHUTE_ANONYMOUS_READ is off, and a viewer role on the project
    assert {"401", "403"} <= set(paths["/api/v1/runs/{run_id}"]["get"]["responses"])
    assert "404" in paths["/api/v1/runs/{run_id}"]["get"]["responses"]
    assert doc["components"]["schemas"]["ErrorOut"]["required"] == ["detail"]
    every_post = [op for ops in paths.values() for m, op in ops.items() if m == "post"]
    assert all("401" in op["responses"] for op in every_post if op.get("security"))
