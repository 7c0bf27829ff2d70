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
    app = create_app(Settings(home=home, database_url=db_url, embedded_agent=False, base_url="http://chute.test"),
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
