"""The kubernetes target against a fake API server (a real HTTP server) and a real registry.

No Kubernetes API server can run on these machines (notes/machine.md §7). The
fake in fake_kube.py checks each request's shape; the images come from a real
docker-registry, so tags are resolved to real digests. The same manifests are
then run on podman kube play.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest
from deploy_images import HEALTH
from fake_kube import FakeKube

from chute.deploy import FAILED, HEALTHY, SUPERSEDED, Deployer, MemoryStore, parse_environments
from chute.deploy import manifests as mf
from chute.deploy.targets import Release
from chute.deploy.targets.kubernetes import KubernetesTarget, parse_image_ref

PROJECT = "demo/web"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory, images):
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed: run .ci/run")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n  delete: {{enabled: true}}\n"
        f'http: {{addr: "127.0.0.1:{port}"}}\n'
    )
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log
        )
    host = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://{host}/v2/").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        refs = {}
        for variant in ("v1", "v2", "bad"):
            ref = f"{host}/demo/web:{variant}"
            subprocess.run(
                ["podman", "push", "-q", "--tls-verify=false", images[variant], ref],
                check=True,
                capture_output=True,
            )
            refs[variant] = ref
        yield refs
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def fake():
    kube = FakeKube(delay=0.2)
    url = kube.start()
    kube.url = url
    yield kube
    kube.stop()


def k8s_deployer(fake: FakeKube, **health) -> tuple[Deployer, dict]:
    from kubernetes import client

    def factory(env):
        cfg = client.Configuration()
        cfg.host = fake.url
        return client.ApiClient(cfg)

    h = {"http": HEALTH, "within": "3s", "stable_for": "0.5s", "interval": 0.1}
    h.update(health)
    envs = parse_environments({"production": {"context": "prod", "values": {"replicas": 2}, "health": h}})
    return Deployer(MemoryStore(), {PROJECT: envs}, {"kubernetes": KubernetesTarget(factory)}), envs


def test_image_references():
    assert parse_image_ref("127.0.0.1:5000/demo/web:v1") == ("127.0.0.1:5000", "demo/web", "v1")
    assert parse_image_ref("registry.example.org/web") == ("registry.example.org", "web", "latest")
    assert parse_image_ref("r.example.org/a/b:t@sha256:00") == ("r.example.org", "a/b", "sha256:00")
    from chute.deploy import ImageNotFound

    with pytest.raises(ImageNotFound, match="names no registry"):
        parse_image_ref("web:1")


def test_apply_rollout_and_automatic_rollback(fake, registry):
    deployer, _ = k8s_deployer(fake)
    first = deployer.deploy(PROJECT, "production", registry["v1"], reason="r", actor="alice")
    assert first.status == HEALTHY, first.error
    # The digest is the registry's own.
    head = httpx.get(
        f"http://{registry['v1'].split('/')[0]}/v2/demo/web/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert first.image_digest == head.headers["Docker-Content-Digest"]

    # Request shapes: namespace first, then ConfigMap, Service, Deployment; all server-side apply.
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [r.kind for r in patches] == ["Namespace", "ConfigMap", "Service", "Deployment"]
    for r in patches:
        assert r.content_type == "application/apply-patch+yaml"
        assert r.query["fieldManager"] == ["chute"] and r.query["force"] == ["true"]
    assert patches[0].path == "/api/v1/namespaces/demo-web"
    assert patches[3].path == "/apis/apps/v1/namespaces/demo-web/deployments/demo-web-production"
    dep_body = patches[3].body
    assert dep_body["spec"]["replicas"] == 2
    assert (
        dep_body["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{registry['v1'].rsplit(':', 1)[0]}@{first.image_digest}"
    )
    assert (
        dep_body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == HEALTH
    )
    gets = [r for r in fake.requests if r.method == "GET"]
    assert gets and all(r.path.endswith("/deployments/demo-web-production") for r in gets)
    assert fake.problems == []

    # A release whose pods never become ready: the rollout does not finish, the previous manifests
    # are re-applied.
    bad_digest = deployer.targets["kubernetes"].resolve_image(registry["bad"]).digest
    fake.unready_images.add(f"{registry['bad'].rsplit(':', 1)[0]}@{bad_digest}")
    before = len(fake.requests)
    bad = deployer.deploy(PROJECT, "production", registry["bad"], reason="r", actor="bob")
    assert bad.status == FAILED and bad.restored_revision == 1
    assert "progress deadline exceeded" in bad.error  # progressDeadlineSeconds comes from `within`
    applied = [r for r in fake.requests[before:] if r.method == "PATCH" and r.kind == "Deployment"]
    images = [r.body["spec"]["template"]["spec"]["containers"][0]["image"] for r in applied]
    assert images[0].endswith(bad_digest) and images[-1].endswith(first.image_digest)
    assert fake.image_of("demo-web", "demo-web-production").endswith(first.image_digest)
    assert deployer.store.current(PROJECT, "production").revision == 1
    assert fake.problems == []


def test_progress_deadline_and_manual_rollback(fake, registry):
    deployer, _ = k8s_deployer(fake, within="1s")
    assert deployer.deploy(PROJECT, "production", registry["v1"], reason="r", actor="a").status == HEALTHY
    v2 = deployer.deploy(PROJECT, "production", registry["v2"], reason="r", actor="a")
    assert v2.status == HEALTHY
    assert deployer.store.get(PROJECT, "production", 1).status == SUPERSEDED
    back = deployer.rollback(PROJECT, "production", to_revision=1, actor="carol", reason="revert")
    assert back.status == HEALTHY and back.rollback_of == 2
    last = fake.applied("Deployment")[-1].body
    assert last["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        deployer.store.get(PROJECT, "production", 1).image_digest
    )
    assert last["metadata"]["labels"][mf.LABEL_REVISION] == "1"  # revision 1's manifests, as they were
    # A rollout that exceeds its progress deadline fails at once.
    bad_digest = deployer.targets["kubernetes"].resolve_image(registry["bad"]).digest
    fake.unready_images.add(f"{registry['bad'].rsplit(':', 1)[0]}@{bad_digest}")
    dep = deployer.deploy(PROJECT, "production", registry["bad"], reason="r", actor="a")
    assert dep.status == FAILED and dep.restored_revision == back.revision


def test_missing_image_and_api_errors(fake, registry):
    deployer, _ = k8s_deployer(fake)
    assert deployer.deploy(PROJECT, "production", registry["v1"], reason="r", actor="a").status == HEALTHY
    before = len(fake.requests)
    host = registry["v1"].split("/")[0]
    missing = deployer.deploy(PROJECT, "production", f"{host}/demo/web:nope", reason="r", actor="a")
    assert missing.status == FAILED and "does not exist in the registry" in missing.error
    assert len(fake.requests) == before  # nothing was applied
    # The API server fails while the Deployment is applied: failed with its message, v1 re-applied.
    fake.fail_next.append((r"/deployments/", 500))
    broken = deployer.deploy(PROJECT, "production", registry["v2"], reason="r", actor="a")
    assert broken.status == FAILED and "answered 500: injected failure" in broken.error
    assert broken.restored_revision == 1
    assert fake.image_of("demo-web", "demo-web-production").endswith(
        deployer.store.get(PROJECT, "production", 1).image_digest
    )
    # An unreachable API server is a clear error too.
    fake.stop()
    dead = deployer.deploy(PROJECT, "production", registry["v2"], reason="r", actor="a")
    assert dead.status == FAILED and "cannot reach the Kubernetes API server" in dead.error
    fake.start = lambda: None  # the fixture's stop() runs once more; make it harmless
    fake.stop = lambda: None


@pytest.mark.podman
def test_the_same_manifests_run_on_podman_kube_play(podman_target, registry):
    """What the kubernetes target applies also runs, adapted, on podman kube play."""
    env = parse_environments(
        {"staging": {"port": 18320, "values": {"env": {"GREETING": "hi"}}, "health": {"http": HEALTH}}}
    )["staging"]
    podman_target.cleanup_later(PROJECT, env)
    image = KubernetesTarget(lambda e: None).resolve_image(registry["v2"])
    docs = mf.render(
        mf.RenderInput(
            project=PROJECT,
            env=env,
            revision=1,
            image=image.by_digest,
            image_ref=image.ref,
            container_port=mf.container_port_for(env, image.env),
        )
    )
    local = podman_target.resolve_image(image.by_digest)  # pulled from the registry by digest
    assert local.digest == image.digest
    release = Release(project=PROJECT, env=env, revision=1, image=local, manifests=docs, container_port=8080)
    state = podman_target.start(release)
    try:
        for _ in range(50):
            try:
                r = httpx.get(f"http://127.0.0.1:{state['side_port']}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert r.text.strip() == "v2"
        env_out = subprocess.run(
            ["podman", "exec", state["container"], "/bin/sh", "-c", "echo $GREETING"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        assert env_out == "hi"  # the ConfigMap's envFrom is honoured by kube play
    finally:
        podman_target.abort(release, state)
        podman_target.wait_idle()
