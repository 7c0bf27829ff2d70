"""Rendered manifests: by digest, labels, probes from health, validation, Helm detection."""

import pytest

from chute.deploy import find_helm, parse_environments
from chute.deploy import manifests as mf
from chute.deploy.environments import ChartRef
from chute.deploy.helm import HelmUnavailable, render_chart, template_command

DIGEST = "sha256:" + "ab" * 32


def staging(**extra):
    raw = {
        "port": 18301,
        "health": {"http": "/healthz", "within": "30s", "stable_for": "5s", "failure_threshold": 2},
        "values": {"env": {"GREETING": "hi"}, "resources": {"limits": {"memory": "64Mi"}}},
    }
    raw.update(extra)
    return parse_environments({"staging": raw})["staging"]


def render(env=None, port=8080):
    return mf.render(
        mf.RenderInput(
            project="Team/Web Service",
            env=env or staging(),
            revision=7,
            image=f"registry.example.org/web@{DIGEST}",
            image_ref="registry.example.org/web:1",
            container_port=port,
        )
    )


def test_render_pins_the_digest_and_labels_everything():
    docs = render()
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    cm, dep, svc = docs
    name = "team-web-service-staging"
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == name
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == f"registry.example.org/web@{DIGEST}"
    assert c["ports"][0]["containerPort"] == 8080
    assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]
    assert cm["data"] == {"GREETING": "hi"}
    assert c["resources"] == {"limits": {"memory": "64Mi"}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert c["readinessProbe"]["failureThreshold"] == 2
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[mf.LABEL_PROJECT] == "team-web-service"
    assert labels[mf.LABEL_ENVIRONMENT] == "staging" and labels[mf.LABEL_REVISION] == "7"
    assert dep["metadata"]["annotations"][mf.ANNOTATION_PROJECT] == "Team/Web Service"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["progressDeadlineSeconds"] == 30 and dep["spec"]["minReadySeconds"] == 5
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    mf.validate(docs)


def test_config_map_name_follows_its_content():
    a = render()[0]["metadata"]["name"]
    b = render(staging(values={"env": {"GREETING": "bye"}}))[0]["metadata"]["name"]
    assert a != b and a == render()[0]["metadata"]["name"]


def test_container_port_defaults():
    env = staging()
    assert mf.container_port_for(env, {"PORT": "9000"}) == 9000
    assert mf.container_port_for(env, {"PORT": "nope"}) == 8080
    assert mf.container_port_for(env, {}) == 8080
    pinned = staging(values={"port": 7000})
    assert mf.container_port_for(pinned, {"PORT": "9000"}) == 7000
    cm = render(pinned, port=7000)[0]
    assert cm["data"] == {"PORT": "7000"}  # the service is told its port


def test_validation_lists_every_problem():
    docs = render()
    dep = docs[1]
    dep["spec"]["selector"]["matchLabels"]["extra"] = "x"
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    docs[2]["metadata"]["name"] = "Not_DNS"
    with pytest.raises(mf.ManifestError) as info:
        mf.validate(docs)
    text = " | ".join(info.value.problems)
    assert "selector extra=x does not match" in text
    assert "has no image" in text
    assert "containerPort 70000" in text
    assert "metadata.name must be a DNS-1123 name" in text
    with pytest.raises(mf.ManifestError, match="no Deployment"):
        mf.validate([docs[0]])
    with pytest.raises(mf.ManifestError, match="not valid YAML"):
        mf.from_yaml("a: [")


def test_helm_is_detected_and_used_only_when_present(tmp_path, monkeypatch):
    monkeypatch.delenv("CHUTE_HELM", raising=False)
    assert find_helm(path=str(tmp_path)) is None
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HelmUnavailable, match="no `helm` binary"):
        render_chart(ChartRef(path="chart"), "rel", "ns", {})
    # A helm on PATH is found and called with `template` and a values file (no shell).
    fake = tmp_path / "helm"
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/args\n'
        "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: x}\\n'\n"
    )
    fake.chmod(0o755)
    assert find_helm(path=str(tmp_path)) == str(fake)
    out = render_chart(ChartRef(path="charts/web", version="1.2.0"), "rel", "ns", {"a": 1}, workdir="/src")
    assert "kind: ConfigMap" in out
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["template", "rel", "/src/charts/web"]
    assert args[3:7] == ["--version", "1.2.0", "--namespace", "ns"] and args[7] == "--values"
    assert template_command(
        "helm", ChartRef(name="web", repo="https://charts.example.org"), "r", "n", "v.yaml"
    ) == [
        "helm",
        "template",
        "r",
        "web",
        "--repo",
        "https://charts.example.org",
        "--namespace",
        "n",
        "--values",
        "v.yaml",
    ]
