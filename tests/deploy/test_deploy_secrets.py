"""An environment's secrets (``values.secrets``) reach its service by reference, never the stored manifests.

No podman here: the config checks, and the kubernetes target against the fake API server
(fake_kube.py) with an image resolved without a registry. The podman target and the server's
deploy path are in tests/deploywire/test_deploywire_secrets.py.
"""

from __future__ import annotations

import base64

import pytest
from fake_kube import FakeKube

from chute.config import ConfigError
from chute.deploy import FAILED, HEALTHY, Deployer, MemoryStore, parse_environments
from chute.deploy import manifests as mf
from chute.deploy.environments import SecretEnv
from chute.deploy.targets import ResolvedImage
from chute.deploy.targets.kubernetes import KubernetesTarget

PROJECT = "demo/web"
SECRET_NAME = "demo-web-production-secrets"
DB = "db-password-0123456789"
DB2 = "db-password-rotated-9876543210"
TOKEN = "api-token-abcdefghijklmnop"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_values_secrets_are_checked_with_every_problem_explained():
    envs = parse_environments(
        {"staging": {"port": 18999, "values": {"secrets": ["DB_PASSWORD", {"id": "api.token", "name": "API_TOKEN"}]}}}
    )
    assert envs["staging"].values.secrets == (
        SecretEnv("DB_PASSWORD", "DB_PASSWORD"), SecretEnv("api.token", "API_TOKEN"))

    bad = {
        "staging": {
            "port": 18999,
            "values": {
                "env": {"LOG_LEVEL": "info"},
                "secrets": ["api.token", "LOG_LEVEL", {"name": "X"}, "DB", {"id": "DB2", "name": "DB"},
                            {"id": "A", "nme": "B"}, 3],
            },
        },
        "prod": {"port": 18998, "values": {"secrets": "DB_PASSWORD"}},
    }
    with pytest.raises(ConfigError) as err:
        parse_environments(bad)
    text = str(err.value) + " ".join(f"{p.message} {p.hint}" for p in err.value.problems)
    assert "`api.token` is not a valid environment variable name" in text and "{id: api.token, name: API_TOKEN}" in text
    assert "`LOG_LEVEL` is also set in `values.env`" in text
    assert "`id` (the secret's name in `chute secret set`) is required" in text
    assert "`DB` is given twice" in text
    assert "unknown key `nme`" in text
    assert "must be a secret name or {id, name}, not" in text
    assert "environments.prod.values.secrets" in text and "must be a list of secret names" in text


def test_manifests_reference_the_environment_secret_and_hold_no_value():
    env = parse_environments({"production": {"context": "c", "values": {"secrets": ["DB_PASSWORD"]}}})["production"]
    docs = mf.render(mf.RenderInput(PROJECT, env, 1, "r.example.org/web@sha256:" + "0" * 64, "r.example.org/web:1",
                                    8080))
    mf.validate(docs)
    container = mf.find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "DB_PASSWORD"}}}]
    assert mf.secret_keys(docs, SECRET_NAME) == ["DB_PASSWORD"] and mf.secret_keys(docs, "other") == []
    assert not mf.find(docs, "Secret")


class StubImages(KubernetesTarget):
    """The kubernetes target with images resolved without a registry (the digest is what matters)."""

    def resolve_image(self, ref: str) -> ResolvedImage:
        tag = ref.rsplit(":", 1)[-1]
        return ResolvedImage(ref=ref, repository="registry.example.org/demo/web",
                             digest="sha256:" + (tag * 64)[:64])


@pytest.fixture
def fake():
    kube = FakeKube(delay=0.05)
    kube.url = kube.start()
    yield kube
    kube.stop()


def test_kubernetes_applies_the_secret_with_current_values_and_stores_only_the_reference(fake):
    from kubernetes import client

    def factory(env):
        cfg = client.Configuration()
        cfg.host = fake.url
        return client.ApiClient(cfg)

    envs = parse_environments({"production": {
        "context": "prod",
        "values": {"secrets": ["DB_PASSWORD", {"id": "api.token", "name": "API_TOKEN"}]},
        "health": {"http": False, "within": "3s", "stable_for": "0.1s", "interval": 0.05},
    }})
    values = {("production", "DB_PASSWORD"): DB}  # (scope, id): what the server's SecretStore holds
    asked: list[tuple[str, str, list[str]]] = []

    def source(project: str, environment: str, ids: list[str]) -> dict[str, str]:
        asked.append((project, environment, ids))
        return {i: values[(environment, i)] for i in ids if (environment, i) in values}

    store = MemoryStore()
    deployer = Deployer(store, {PROJECT: envs}, {"kubernetes": StubImages(factory)}, secrets=source)

    # A secret that is not set: the deploy fails before anything is applied, and says what to run.
    missing = deployer.deploy(PROJECT, "production", "registry.example.org/demo/web:1", reason="r", actor="a")
    assert missing.status == FAILED and fake.requests == []
    assert missing.error == ("secret api.token is not set for environment production of demo/web (nor for the "
                             "whole project); set it with `chute secret set demo/web api.token --env production` "
                             "and deploy again")

    values[("production", "api.token")] = TOKEN
    first = deployer.deploy(PROJECT, "production", "registry.example.org/demo/web:1", reason="r", actor="a")
    assert first.status == HEALTHY, first.error
    assert asked[-1] == (PROJECT, "production", ["DB_PASSWORD", "api.token"])
    kinds = [r.kind for r in fake.requests if r.method == "PATCH"]
    assert kinds == ["Namespace", "Secret", "ConfigMap", "Service", "Deployment"]  # the Secret before the pods
    secret = fake.applied("Secret")[-1]
    assert secret.path == f"/api/v1/namespaces/demo-web/secrets/{SECRET_NAME}"
    assert secret.content_type == "application/apply-patch+yaml" and secret.query["fieldManager"] == ["chute"]
    assert secret.body["type"] == "Opaque" and secret.body["data"] == {"DB_PASSWORD": b64(DB), "api.token": b64(TOKEN)}
    env_refs = fake.applied("Deployment")[-1].body["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env_refs == [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "DB_PASSWORD"}}},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "api.token"}}},
    ]
    assert fake.problems == []

    # A changed secret is applied by the next deploy; a rollback runs the old image with today's values.
    values[("production", "DB_PASSWORD")] = DB2
    second = deployer.deploy(PROJECT, "production", "registry.example.org/demo/web:2", reason="r", actor="a")
    assert second.status == HEALTHY and fake.applied("Secret")[-1].body["data"]["DB_PASSWORD"] == b64(DB2)
    back = deployer.rollback(PROJECT, "production", to_revision=first.revision, actor="a", reason="back")
    assert back.status == HEALTHY
    assert fake.applied("Secret")[-1].body["data"] == {"DB_PASSWORD": b64(DB2), "api.token": b64(TOKEN)}
    assert fake.image_of("demo-web", "demo-web-production").endswith("1" * 64)

    # Nothing chute keeps holds a value: the stored manifests reference the Secret only.
    for dep in store.list(PROJECT, "production"):
        text = repr(dep.to_dict())
        assert SECRET_NAME in dep.manifests or dep.status == FAILED
        for v in (DB, DB2, TOKEN):
            assert v not in text and b64(v) not in text

    # A secret deleted since: a rollback fails at once, and the current revision keeps serving.
    del values[("production", "api.token")]
    again = deployer.rollback(PROJECT, "production", to_revision=second.revision, actor="a", reason="r")
    assert again.status == FAILED and "secret api.token is not set" in again.error
    assert store.current(PROJECT, "production").revision == back.revision

    # A deployer without a secret source (chute deploy's Python API, a pipeline's test release) gives none.
    bare = Deployer(MemoryStore(), {PROJECT: envs}, {"kubernetes": StubImages(factory)})
    dep = bare.deploy(PROJECT, "production", "registry.example.org/demo/web:2", reason="r", actor="a")
    assert dep.status == FAILED and "has no secret store" in dep.error


def test_a_pipelines_test_release_gets_no_secrets():
    from chute.deploy.testrelease import run_test_release

    class NoTarget:
        def resolve_image(self, ref):
            raise AssertionError("refused before the image is looked at")

    with pytest.raises(ConfigError, match="a test release gets no secrets"):
        run_test_release(PROJECT, "localhost/web:1", target=NoTarget(), overrides={"secrets": ["DB_PASSWORD"]})
