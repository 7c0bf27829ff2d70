"""Both DeploymentStore implementations behave the same; the JSON one works across processes."""

import json
import multiprocessing

import pytest

from chute.deploy import FAILED, HEALTHY, ROLLED_BACK, SUPERSEDED, Deployment, JsonFileStore, MemoryStore
from chute.deploy.store import DeploymentStore


@pytest.fixture(params=["memory", "json"])
def store(request, tmp_path) -> DeploymentStore:
    return MemoryStore() if request.param == "memory" else JsonFileStore(tmp_path / "deploys.json")


def dep(rev: int, status: str, digest: str = "sha256:aa") -> Deployment:
    return Deployment(
        project="p",
        environment="staging",
        revision=rev,
        image_ref="r/web:1",
        image_digest=digest,
        status=status,
        actor="me",
        reason="test",
    )


def test_protocol_and_queries(store):
    assert isinstance(store, DeploymentStore)
    assert [store.next_revision("p", "staging") for _ in range(3)] == [1, 2, 3]
    assert store.next_revision("p", "production") == 1  # per environment
    store.record(dep(1, SUPERSEDED, "sha256:01"))
    store.record(dep(2, HEALTHY, "sha256:02"))
    store.record(dep(3, FAILED, "sha256:03"))
    with pytest.raises(ValueError):
        store.record(dep(3, FAILED))
    assert store.current("p", "staging").revision == 2
    assert store.last_healthy("p", "staging").revision == 2
    assert store.last_healthy("p", "staging", before=2).revision == 1
    updated = store.update("p", "staging", 2, status=ROLLED_BACK, time_to_restore=3.5)
    assert updated.status == ROLLED_BACK and store.get("p", "staging", 2).time_to_restore == 3.5
    assert store.current("p", "staging") is None
    assert store.last_healthy("p", "staging").revision == 1  # rolled-back ones are no target
    assert [d.revision for d in store.list("p", "staging")] == [3, 2, 1]
    assert [d.revision for d in store.list("p", "staging", limit=1)] == [3]
    with pytest.raises(ValueError):
        store.update("p", "staging", 1, status="exploded")
    with pytest.raises(KeyError):
        store.update("p", "staging", 99, status=FAILED)
    assert store.get("p", "staging", 1).status == SUPERSEDED  # bad updates changed nothing


def test_lock_is_exclusive_and_expires(store):
    assert store.try_lock("p", "staging", "a", ttl=60)
    assert not store.try_lock("p", "staging", "b", ttl=60)
    assert store.try_lock("p", "production", "b", ttl=60)  # another environment
    store.unlock("p", "staging", "b")  # not the owner: no effect
    assert not store.try_lock("p", "staging", "b", ttl=60)
    store.unlock("p", "staging", "a")
    assert store.try_lock("p", "staging", "b", ttl=0)
    assert store.try_lock("p", "staging", "c", ttl=60)  # b's lock expired at once


def _reserve(path: str, n: int, out) -> None:
    s = JsonFileStore(path)
    out.put([s.next_revision("p", "staging") for _ in range(n)])


def test_json_store_hands_out_unique_revisions_across_processes(tmp_path):
    path = str(tmp_path / "deploys.json")
    queue = multiprocessing.get_context("fork").Queue()
    procs = [
        multiprocessing.get_context("fork").Process(target=_reserve, args=(path, 20, queue)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    got = sorted(n for _ in procs for n in queue.get(timeout=30))
    for p in procs:
        p.join()
    assert got == list(range(1, 61))


def test_json_store_round_trips_and_reports_corruption(tmp_path):
    path = tmp_path / "deploys.json"
    s = JsonFileStore(path)
    d = dep(s.next_revision("p", "staging"), HEALTHY)
    d.health = [{"phase": "within", "healthy": True}]
    d.freeze_override = {"actor": "me", "reason": "hotfix"}
    s.record(d)
    again = JsonFileStore(path).get("p", "staging", 1)
    assert again == d
    json.loads(path.read_text())  # plain JSON on disk
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="not valid JSON"):
        s.current("p", "staging")


def test_interrupted_deploys_are_marked_failed(tmp_path):
    from chute.deploy import Deployer, parse_environments

    store = JsonFileStore(tmp_path / "d.json")
    envs = parse_environments({"staging": {"port": 18399}})
    store.record(dep(store.next_revision("p", "staging"), HEALTHY))
    store.record(dep(store.next_revision("p", "staging"), "deploying"))
    deployer = Deployer(store, {"p": envs}, {})
    assert store.try_lock("p", "staging", "another-process", ttl=60)
    assert deployer.recover_interrupted("p", "staging") == []  # a deploy is still running elsewhere
    store.unlock("p", "staging", "another-process")
    (recovered,) = deployer.recover_interrupted("p", "staging")
    assert recovered.revision == 2 and recovered.status == FAILED and "interrupted" in recovered.error
    assert store.current("p", "staging").revision == 1
