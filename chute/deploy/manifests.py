"""Kubernetes manifests for one revision of one environment, and their offline validation.

chute renders a Deployment, a Service and a ConfigMap (the environment's
``env`` values) with the image pinned BY DIGEST. The same documents are applied
to a Kubernetes cluster as they are, and adapted for ``podman kube play`` by
the podman target.

The environment's ``values.secrets`` appear only as references: ``env`` entries
with ``valueFrom.secretKeyRef`` naming the environment's Secret
(:func:`secrets_name`) and the secret's id as key. The values are never part of
the manifests (which are stored with each revision); the targets make the
Secret at apply time from :attr:`~chute.deploy.targets.Release.secrets`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .environments import DEFAULT_CONTAINER_PORT, Environment

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PROJECT = "chute.dev/project"
LABEL_ENVIRONMENT = "chute.dev/environment"
LABEL_REVISION = "chute.dev/revision"
ANNOTATION_PROJECT = "chute.dev/project-name"
ANNOTATION_IMAGE_REF = "chute.dev/image-ref"

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ManifestError(Exception):
    """Manifests that cannot be applied; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid manifests: " + "; ".join(problems))


def dns_name(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text; long names keep a short hash so they stay unique."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "app"
    if len(name) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        name = name[: limit - 7].rstrip("-") + "-" + digest
    return name


def app_name(project: str, environment: str) -> str:
    """The resource name of a project's service in one environment (fits a pod name with suffixes)."""
    return dns_name(f"{project}-{environment}", limit=40)


def secrets_name(project: str, environment: str) -> str:
    """The name of the Secret that holds an environment's ``values.secrets`` (one per environment)."""
    return f"{app_name(project, environment)}-secrets"


def secret_keys(docs: Iterable[Mapping[str, Any]], name: str) -> list[str]:
    """The keys of Secret ``name`` that the Deployments' containers reference (sorted)."""
    keys: set[str] = set()
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            for e in c.get("env") or []:
                ref = ((e or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name") == name and isinstance(ref.get("key"), str):
                    keys.add(ref["key"])
    return sorted(keys)


def namespace_for(project: str, env: Environment) -> str:
    return env.namespace or dns_name(project)


@dataclass(frozen=True)
class RenderInput:
    project: str
    env: Environment
    revision: int
    image: str  # by digest: repo@sha256:...
    image_ref: str  # as asked for (annotation only)
    container_port: int


def container_port_for(env: Environment, image_env: Mapping[str, str]) -> int:
    """``values.port``, else the image's ``PORT`` environment value, else 8080."""
    if env.values.port:
        return env.values.port
    raw = image_env.get("PORT", "")
    if raw.isdigit() and 0 < int(raw) < 65536:
        return int(raw)
    return DEFAULT_CONTAINER_PORT


def render(inp: RenderInput) -> list[dict[str, Any]]:
    """The ConfigMap, Deployment and Service of one revision, as plain data."""
    env = inp.env
    name = app_name(inp.project, env.name)
    selector = {LABEL_NAME: name, LABEL_ENVIRONMENT: env.name}
    labels = {
        **selector,
        LABEL_MANAGED_BY: "chute",
        LABEL_PROJECT: dns_name(inp.project),
        LABEL_REVISION: str(inp.revision),
    }
    annotations = {ANNOTATION_PROJECT: inp.project, ANNOTATION_IMAGE_REF: inp.image_ref}
    env_values = dict(env.values.env)
    if env.values.port and "PORT" not in env_values:
        env_values["PORT"] = str(env.values.port)  # the conventional way to tell a service its port
    config_hash = hashlib.sha256(repr(sorted(env_values.items())).encode()).hexdigest()[:8]
    config_name = f"{name}-env-{config_hash}"  # a new name per content, so a change rolls the pods
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name, "labels": dict(labels), "annotations": dict(annotations)},
        "data": env_values,
    }
    container: dict[str, Any] = {
        "name": "app",
        "image": inp.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": inp.container_port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": config_name}}],
    }
    if env.values.secrets:
        # By reference only: the Secret itself is made by the target from the current values.
        secret = secrets_name(inp.project, env.name)
        container["env"] = [
            {"name": s.name, "valueFrom": {"secretKeyRef": {"name": secret, "key": s.id}}}
            for s in env.values.secrets
        ]
    resources = {
        k: dict(v)
        for k, v in (("requests", env.values.resources.requests), ("limits", env.values.resources.limits))
        if v
    }
    if resources:
        container["resources"] = resources
    health = env.health
    if health.http:
        period = max(1, math.ceil(health.interval))
        probe = {
            "httpGet": {"path": health.http, "port": inp.container_port},
            "periodSeconds": period,
            "timeoutSeconds": max(1, math.ceil(health.timeout)),
            "failureThreshold": health.failure_threshold,
        }
        container["readinessProbe"] = {**probe, "successThreshold": health.success_threshold}
        # Liveness is more patient than readiness: restarting is a bigger step than unrouting.
        container["livenessProbe"] = {
            **probe,
            "periodSeconds": max(10, period),
            "initialDelaySeconds": max(1, math.ceil(health.within / 4)),
        }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "replicas": env.values.replicas,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": max(1, math.ceil(health.within)),
            "minReadySeconds": int(health.stable_for),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": dict(selector)},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": {"containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [config_map, deployment, service]


def to_yaml(docs: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False, default_flow_style=False)


def from_yaml(text: str) -> list[dict[str, Any]]:
    """Parse multi-document YAML (e.g. ``helm template`` output); drops empty documents."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError([f"the manifests are not valid YAML: {exc}"]) from None
    bad = [i for i, d in enumerate(docs) if not isinstance(d, dict)]
    if bad:
        raise ManifestError([f"document {i + 1} is not a mapping" for i in bad])
    return docs


def validate(docs: list[dict[str, Any]]) -> None:
    """Offline structural checks of the fields chute and the targets rely on; raise ManifestError."""
    problems: list[str] = []
    if not docs:
        raise ManifestError(["there are no manifests"])
    deployments = 0
    for i, doc in enumerate(docs):
        where = f"document {i + 1}"
        kind = doc.get("kind")
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        name = meta.get("name")
        if not isinstance(doc.get("apiVersion"), str) or not doc.get("apiVersion"):
            problems.append(f"{where}: apiVersion is missing")
        if not isinstance(kind, str) or not kind:
            problems.append(f"{where}: kind is missing")
            continue
        where = f"{kind} {name!r}" if name else f"{where} ({kind})"
        if not isinstance(name, str) or not _DNS1123.match(name) or len(name) > 253:
            problems.append(f"{where}: metadata.name must be a DNS-1123 name (lower-case letters, digits, -)")
        for key, value in (meta.get("labels") or {}).items():
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                problems.append(f"{where}: label {key}={value!r} is not a valid label value")
        if kind == "Deployment":
            deployments += 1
            problems.extend(_validate_deployment(where, doc))
        elif kind == "Service":
            spec = doc.get("spec") or {}
            ports = spec.get("ports") or []
            if not ports:
                problems.append(f"{where}: spec.ports is empty")
            for p in ports:
                if not isinstance(p, dict) or not _valid_port(p.get("port")):
                    problems.append(f"{where}: a port is not a number from 1 to 65535")
        elif kind == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                if not isinstance(value, str):
                    problems.append(f"{where}: data.{key} must be a string")
    if deployments == 0:
        problems.append("no Deployment: chute needs one to run the service and follow its rollout")
    if problems:
        raise ManifestError(problems)


def _validate_deployment(where: str, doc: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        problems.append(f"{where}: spec.replicas must be a whole number >= 0")
    match = ((spec.get("selector") or {}).get("matchLabels")) or {}
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    tlabels = ((template.get("metadata") or {}).get("labels")) or {}
    if not match:
        problems.append(f"{where}: spec.selector.matchLabels is empty")
    for k, v in match.items():
        if tlabels.get(k) != v:
            problems.append(f"{where}: the selector {k}={v} does not match the pod template's labels")
    containers = ((template.get("spec") or {}).get("containers")) or []
    if not containers:
        problems.append(f"{where}: spec.template.spec.containers is empty")
    seen: set[str] = set()
    for c in containers:
        cname = c.get("name") if isinstance(c, dict) else None
        if not isinstance(cname, str) or not _DNS1123.match(cname):
            problems.append(f"{where}: a container has no valid name")
            continue
        if cname in seen:
            problems.append(f"{where}: two containers are named {cname}")
        seen.add(cname)
        if not isinstance(c.get("image"), str) or not c["image"].strip():
            problems.append(f"{where}: container {cname} has no image")
        for p in c.get("ports") or []:
            if not _valid_port(p.get("containerPort")):
                problems.append(
                    f"{where}: container {cname}: containerPort {p.get('containerPort')!r} "
                    "is not a number from 1 to 65535"
                )
        for e in c.get("env") or []:
            if not isinstance(e, dict) or not _ENV_NAME.match(str(e.get("name", ""))):
                problems.append(f"{where}: container {cname}: bad env entry {e!r}")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = c.get(probe_name)
            if probe is not None and not any(k in probe for k in ("httpGet", "exec", "tcpSocket", "grpc")):
                problems.append(
                    f"{where}: container {cname}: {probe_name} has no handler "
                    "(httpGet, exec, tcpSocket or grpc)"
                )
    return problems


def _valid_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def find(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]
