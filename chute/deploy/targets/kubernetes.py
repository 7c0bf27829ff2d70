"""The kubernetes target: server-side apply through the official ``kubernetes`` client.

* One namespace per project (``environments.<env>.namespace`` overrides it),
  applied before the project's objects.
* Every object is applied with ``PATCH`` ``application/apply-patch+yaml``,
  ``fieldManager=chute`` and ``force=true`` (chute owns the fields it sets).
* The rollout is followed like ``kubectl rollout status``: the Deployment's
  ``status.observedGeneration`` has caught up with ``metadata.generation``
  and ``updatedReplicas``/``availableReplicas`` equal ``spec.replicas``; a
  ``ProgressDeadlineExceeded`` condition fails it at once. The manifests set
  ``maxUnavailable: 0``, so the old pods serve until the new ones are ready.
* A rollback re-applies the earlier revision's stored manifests as they were.
* The environment's ``values.secrets`` are a ``Secret`` (``<app>-secrets``, ``type: Opaque``)
  applied the same way before the Deployment, from the values the Deployer read for this
  start (:attr:`Release.secrets`); the stored manifests only reference it
  (``env[].valueFrom.secretKeyRef``). Server-side apply drops the keys chute no longer sets.
* Images must come from a registry: the tag is resolved to a digest with the
  registry's HTTP API (``/v2/<name>/manifests/<tag>``) before anything is
  applied, and the manifests name the image by digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Collection
from typing import Any

import httpx

from .. import manifests as mf
from ..environments import Environment
from ..health import FATAL, PASS, WAIT, Check
from . import ImageNotFound, Release, ResolvedImage, TargetError

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

# kind -> (API class name, method suffix, namespaced)
_KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("CoreV1Api", "namespace", False),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map", True),
    "Secret": ("CoreV1Api", "namespaced_secret", True),
    "Service": ("CoreV1Api", "namespaced_service", True),
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account", True),
    "Deployment": ("AppsV1Api", "namespaced_deployment", True),
    "Ingress": ("NetworkingV1Api", "namespaced_ingress", True),
}
_APPLY_ORDER = ("Namespace", "ServiceAccount", "Secret", "ConfigMap", "Service", "Deployment", "Ingress")


def parse_image_ref(ref: str) -> tuple[str, str, str]:
    """``host:5000/a/b:tag`` -> (host:5000, a/b, tag); a digest reference keeps ``sha256:..``."""
    ref = ref.strip()
    first, _, rest = ref.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        raise ImageNotFound(
            f"{ref!r} names no registry: the kubernetes target pulls images from a registry, "
            "so name it like registry.example.org/team/app:tag"
        )
    if "@" in rest:
        path, _, reference = rest.partition("@")
        path = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    elif ":" in rest.rsplit("/", 1)[-1]:
        path, _, reference = rest.rpartition(":")
    else:
        path, reference = rest, "latest"
    return first, path, reference


class KubernetesTarget:
    name = "kubernetes"
    side_by_side = False  # apply changes what serves; the rolling update keeps old pods until ready

    def __init__(
        self,
        api_client_factory: Callable[[Environment], Any] | None = None,
        *,
        field_manager: str = "chute",
        insecure_registries: Collection[str] = ("localhost", "127.0.0.1"),
        http: httpx.Client | None = None,
    ) -> None:
        self._factory = api_client_factory or _client_from_kubeconfig
        self.field_manager = field_manager
        self.insecure = set(insecure_registries)
        self.http = http or httpx.Client(timeout=30.0, follow_redirects=True)
        self._clients: dict[tuple[str | None, str | None], Any] = {}
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------ images

    def resolve_image(self, ref: str) -> ResolvedImage:
        host, path, reference = parse_image_ref(ref)
        scheme = "http" if host.split(":")[0] in self.insecure else "https"
        base = f"{scheme}://{host}/v2/{path}"
        try:
            resp = self.http.get(f"{base}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        except httpx.HTTPError as exc:
            raise ImageNotFound(f"cannot reach the registry {host} to look up {ref}: {exc}") from None
        if resp.status_code == 404:
            raise ImageNotFound(f"image {ref} does not exist in the registry {host}")
        if resp.status_code == 401:
            raise ImageNotFound(
                f"the registry {host} wants credentials for {ref}; chute does not log in to "
                "registries yet: make the repository readable or use a registry that is"
            )
        if resp.status_code != 200:
            raise ImageNotFound(f"the registry {host} answered {resp.status_code} for {ref}")
        digest = (
            resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(resp.content).hexdigest()
        )
        env: dict[str, str] = {}
        try:
            manifest = resp.json()
            if "manifests" in manifest:  # an index: read the linux/amd64 image's config
                chosen = next(
                    (
                        m
                        for m in manifest["manifests"]
                        if (m.get("platform") or {}).get("architecture") == "amd64"
                    ),
                    manifest["manifests"][0],
                )
                manifest = self.http.get(
                    f"{base}/manifests/{chosen['digest']}", headers={"Accept": MANIFEST_ACCEPT}
                ).json()
            config = self.http.get(f"{base}/blobs/{manifest['config']['digest']}").json()
            for item in (config.get("config") or {}).get("Env") or []:
                key, _, value = item.partition("=")
                env[key] = value
        except (ValueError, KeyError, IndexError, httpx.HTTPError):
            pass  # the digest is what matters; the config only supplies the default port
        return ResolvedImage(ref=ref, repository=f"{host}/{path}", digest=digest, env=env)

    # ------------------------------------------------------------------ API calls

    def client(self, env: Environment) -> Any:
        key = (env.kubeconfig, env.context)
        with self._mutex:
            if key not in self._clients:
                self._clients[key] = self._factory(env)
            return self._clients[key]

    def apply(self, env: Environment, doc: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        """Server-side apply of one object; returns the object the API server answered with."""
        from kubernetes import client as k8s

        kind = doc.get("kind", "")
        if kind not in _KINDS:
            raise TargetError(
                f"the kubernetes target cannot apply kind {kind} yet (it applies {', '.join(_KINDS)})"
            )
        api_name, suffix, namespaced = _KINDS[kind]
        api = getattr(k8s, api_name)(self.client(env))
        body = json.loads(json.dumps(doc))  # a private copy
        name = body["metadata"]["name"]
        kwargs: dict[str, Any] = {
            "field_manager": self.field_manager,
            "force": True,
            "_content_type": APPLY_CONTENT_TYPE,
            "_preload_content": False,
        }
        args: list[Any] = [name]
        if namespaced:
            body["metadata"]["namespace"] = namespace
            args.append(namespace)
        resp = self._call(getattr(api, f"patch_{suffix}"), *args, body, what=f"apply {kind} {name}", **kwargs)
        return json.loads(resp.data or b"{}")

    def read_deployment(self, env: Environment, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes import client as k8s

        api = k8s.AppsV1Api(self.client(env))
        resp = self._call(
            api.read_namespaced_deployment,
            name,
            namespace,
            _preload_content=False,
            what=f"read Deployment {name}",
        )
        return json.loads(resp.data)

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            return fn(*args, _request_timeout=30, **kwargs)
        except ApiException as exc:
            message = exc.reason
            try:
                message = json.loads(exc.body).get("message") or message
            except (TypeError, ValueError):
                pass
            raise TargetError(f"{what}: the API server answered {exc.status}: {message}") from None
        except (Urllib3Error, OSError) as exc:
            raise TargetError(f"{what}: cannot reach the Kubernetes API server: {exc}") from None

    # ------------------------------------------------------------------ revisions

    def start(self, release: Release) -> dict[str, Any]:
        env = release.env
        namespace = mf.namespace_for(release.project, env)
        ns_doc = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {mf.LABEL_MANAGED_BY: "chute", mf.LABEL_PROJECT: mf.dns_name(release.project)},
            },
        }
        self.apply(env, ns_doc, None)
        secret = secret_doc(release)
        docs = sorted(
            (d for d in release.manifests if d.get("kind") != "Namespace"),
            key=lambda d: _APPLY_ORDER.index(d["kind"]) if d.get("kind") in _APPLY_ORDER else 99,
        )
        unknown = sorted({d.get("kind", "?") for d in docs} - set(_KINDS))
        if unknown:  # refuse before anything of this revision is applied
            raise TargetError(
                f"the kubernetes target cannot apply kind {', '.join(unknown)} yet "
                f"(it applies {', '.join(_KINDS)})"
            )
        if secret is not None:
            self.apply(env, secret, namespace)  # before the pods that read it
        generations: dict[str, int] = {}
        for doc in docs:
            applied = self.apply(env, doc, namespace)
            if doc["kind"] == "Deployment":
                generations[doc["metadata"]["name"]] = int(
                    (applied.get("metadata") or {}).get("generation") or 0
                )
        return {"namespace": namespace, "deployments": sorted(generations), "generations": generations}

    def probe_url(self, release: Release, state: dict[str, Any], *, serving: bool = False) -> str | None:
        return release.env.health.url  # pods are not reachable from here; rollout status is the gate

    def check(self, release: Release, state: dict[str, Any]) -> Check:
        try:
            for name in state.get("deployments", []):
                verdict = rollout_status(
                    self.read_deployment(release.env, state["namespace"], name),
                    state.get("generations", {}).get(name, 0),
                )
                if verdict.state != PASS:
                    return verdict
        except TargetError as exc:
            return Check(WAIT, str(exc))
        return Check(PASS, "rolled out: " + ", ".join(state.get("deployments", [])))

    def switch(self, release: Release, state: dict[str, Any]) -> None:
        """Nothing to do: the Service selects the new pods as soon as they are ready."""

    def retire(self, release: Release, state: dict[str, Any]) -> None:
        """Nothing to do: the rolling update has already replaced the old pods."""

    def abort(self, release: Release, state: dict[str, Any]) -> None:
        """Nothing to do here: the Deployer re-applies the previous revision (rollback: auto)."""


def secret_doc(release: Release) -> dict[str, Any] | None:
    """The environment's Secret with the values of this start; None when the manifests need none."""
    name = mf.secrets_name(release.project, release.env.name)
    keys = mf.secret_keys(release.manifests, name)
    if not keys:
        return None
    missing = [k for k in keys if k not in release.secrets]
    if missing:
        raise TargetError(f"the Secret {name} would lack {', '.join(missing)}: no value was given for them")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {
                mf.LABEL_NAME: mf.app_name(release.project, release.env.name),
                mf.LABEL_ENVIRONMENT: release.env.name,
                mf.LABEL_MANAGED_BY: "chute",
                mf.LABEL_PROJECT: mf.dns_name(release.project),
            },
            "annotations": {mf.ANNOTATION_PROJECT: release.project},
        },
        "type": "Opaque",
        # data (base64), not stringData: server-side apply then owns exactly these keys.
        "data": {k: base64.b64encode(release.secrets[k].encode()).decode() for k in keys},
    }


def rollout_status(dep: dict[str, Any], min_generation: int = 0) -> Check:
    """``kubectl rollout status`` for one Deployment object."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    name = meta.get("name", "?")
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    want = int(spec.get("replicas", 1))
    if observed < max(generation, min_generation):
        return Check(
            WAIT,
            f"Deployment {name}: waiting for the controller (generation {generation}, observed {observed})",
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Check(FATAL, f"Deployment {name}: progress deadline exceeded: {cond.get('message', '')}")
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if updated < want:
        return Check(WAIT, f"Deployment {name}: {updated} of {want} replicas updated")
    if total > updated:
        return Check(WAIT, f"Deployment {name}: {total - updated} old replicas pending termination")
    if available < updated:
        return Check(WAIT, f"Deployment {name}: {available} of {updated} updated replicas available")
    return Check(PASS, f"Deployment {name}: {available} of {want} replicas available")


def _client_from_kubeconfig(env: Environment) -> Any:
    from kubernetes import config

    try:
        return config.new_client_from_config(config_file=env.kubeconfig, context=env.context)
    except (config.ConfigException, OSError) as exc:
        raise TargetError(
            f"environment {env.name}: cannot load the kubeconfig"
            f"{' context ' + env.context if env.context else ''}: {exc}"
        ) from None
