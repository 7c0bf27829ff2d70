"""A fake Kubernetes API server: a real HTTP server on 127.0.0.1 for the calls chute makes.

It speaks the API's shapes (paths, server-side apply, Status errors) and
checks every request the way kube-apiserver would for these calls:

* ``PATCH`` must be ``application/apply-patch+yaml`` with ``fieldManager``
  (415 / 400 otherwise, with the real messages);
* the body's ``apiVersion``/``kind`` must match the resource of the path, and
  its ``metadata.name`` (and ``namespace``) the path's;
* namespaced objects need their namespace to exist (404 otherwise).

A small "controller" advances Deployments lazily on GET: after ``delay``
seconds ``observedGeneration`` catches up and the replicas become available,
unless the pod template's image is in ``unready_images`` (then the new pods
never become available and, after ``progressDeadlineSeconds``, the
Progressing condition says ProgressDeadlineExceeded).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

# (group/version prefix, plural) -> (apiVersion, kind, namespaced)
RESOURCES = {
    ("/api/v1", "namespaces"): ("v1", "Namespace", False),
    ("/api/v1", "configmaps"): ("v1", "ConfigMap", True),
    ("/api/v1", "services"): ("v1", "Service", True),
    ("/api/v1", "secrets"): ("v1", "Secret", True),
    ("/api/v1", "serviceaccounts"): ("v1", "ServiceAccount", True),
    ("/apis/apps/v1", "deployments"): ("apps/v1", "Deployment", True),
    ("/apis/networking.k8s.io/v1", "ingresses"): ("networking.k8s.io/v1", "Ingress", True),
}
_PATH = re.compile(
    r"^(?P<gv>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?(?P<sub>/status)?$"
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any

    @property
    def kind(self) -> str | None:
        return self.body.get("kind") if isinstance(self.body, dict) else None


@dataclass
class FakeKube:
    delay: float = 0.2
    unready_images: set[str] = field(default_factory=set)
    fail_next: list[tuple[str, int]] = field(default_factory=list)  # (path regex, status) for the next match
    requests: list[Request] = field(default_factory=list)
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    changed_at: dict[tuple[str, str | None, str], float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # requests a real API server would refuse
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_PATCH(self) -> None:
                fake.handle(self, "PATCH")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_PUT(self) -> None:
                fake.handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ protocol

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        body: Any = None
        if raw:
            try:
                body = yaml.safe_load(raw)
            except yaml.YAMLError:
                body = raw.decode(errors="replace")
        req = Request(method, url.path, parse_qs(url.query), ctype, body)
        with self.lock:
            self.requests.append(req)
            for i, (pattern, status) in enumerate(self.fail_next):
                if re.search(pattern, url.path):
                    del self.fail_next[i]
                    return self.status(h, status, "InternalError", f"injected failure for {url.path}")
        m = _PATH.match(url.path)
        if not m or (m.group("gv"), m.group("plural")) not in RESOURCES:
            self.problems.append(f"unexpected {method} {url.path}")
            return self.status(h, 404, "NotFound", "the server could not find the requested resource")
        api_version, kind, namespaced = RESOURCES[(m.group("gv"), m.group("plural"))]
        ns, name = m.group("ns"), m.group("name")
        if kind == "Namespace":
            ns, name = None, name or None
        key = (kind, ns, name or "")
        if method == "GET" and name:
            with self.lock:
                obj = self.objects.get(key)
                if obj is None:
                    return self.status(h, 404, "NotFound", f'{m.group("plural")} "{name}" not found')
                if kind == "Deployment":
                    self.advance(key, obj)
                return self.send(h, 200, obj)
        if method == "PATCH" and name:
            return self.apply(h, req, api_version, kind, namespaced, ns, name, key)
        self.problems.append(f"unsupported {method} {url.path}")
        return self.status(h, 405, "MethodNotAllowed", f"{method} is not supported by this fake")

    def apply(
        self,
        h: BaseHTTPRequestHandler,
        req: Request,
        api_version: str,
        kind: str,
        namespaced: bool,
        ns: str | None,
        name: str,
        key: tuple[str, str | None, str],
    ) -> None:
        if req.content_type != "application/apply-patch+yaml":
            self.problems.append(f"PATCH {req.path} with content type {req.content_type!r}")
            return self.status(
                h,
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/apply-patch+yaml (got {req.content_type})",
            )
        if not req.query.get("fieldManager"):
            self.problems.append(f"PATCH {req.path} without fieldManager")
            return self.status(
                h,
                400,
                "BadRequest",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch",
            )
        body = req.body
        if not isinstance(body, dict):
            return self.status(h, 400, "BadRequest", "the body is not an object")
        meta = body.get("metadata") or {}
        errors = []
        if body.get("apiVersion") != api_version or body.get("kind") != kind:
            errors.append(
                f"apiVersion/kind {body.get('apiVersion')}/{body.get('kind')} do not match the "
                f"resource {api_version}/{kind}"
            )
        if meta.get("name") != name:
            errors.append(f"metadata.name {meta.get('name')!r} does not match the name in the URL {name!r}")
        if namespaced and meta.get("namespace") not in (None, ns):
            errors.append(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if errors:
            self.problems.extend(errors)
            return self.status(h, 400, "BadRequest", "; ".join(errors))
        with self.lock:
            if namespaced and ("Namespace", None, ns) not in self.objects:
                return self.status(h, 404, "NotFound", f'namespaces "{ns}" not found')
            old = self.objects.get(key)
            obj = json.loads(json.dumps(body))
            obj["metadata"]["namespace"] = ns if namespaced else None
            if not namespaced:
                obj["metadata"].pop("namespace")
            generation = (old or {}).get("metadata", {}).get("generation", 0)
            if old is None or old.get("spec") != obj.get("spec"):
                generation += 1
                self.changed_at[key] = time.monotonic()
            obj["metadata"].update(
                {
                    "uid": (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()),
                    "resourceVersion": str(len(self.requests)),
                    "generation": generation,
                    "managedFields": [
                        {
                            "manager": req.query["fieldManager"][0],
                            "operation": "Apply",
                            "apiVersion": api_version,
                        }
                    ],
                }
            )
            if kind == "Deployment":
                obj["status"] = (old or {}).get("status") or {}
            self.objects[key] = obj
            return self.send(h, 201 if old is None else 200, obj)

    def advance(self, key: tuple[str, str | None, str], obj: dict[str, Any]) -> None:
        """The Deployment controller, evaluated when someone looks."""
        spec, status = obj["spec"], obj.setdefault("status", {})
        since = time.monotonic() - self.changed_at.get(key, 0)
        if since < self.delay:
            return
        want = int(spec.get("replicas", 1))
        status["observedGeneration"] = obj["metadata"]["generation"]
        images = {c["image"] for c in spec["template"]["spec"]["containers"]}
        if images & self.unready_images:
            # maxUnavailable 0: the old pods stay; the new one never becomes available.
            status.update(
                {
                    "replicas": want + 1,
                    "updatedReplicas": 1,
                    "availableReplicas": want,
                    "unavailableReplicas": 1,
                    "readyReplicas": want,
                }
            )
            deadline = int(spec.get("progressDeadlineSeconds", 600))
            cond = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            if since >= deadline:
                cond = {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{key[2]}" has timed out progressing.',
                }
            status["conditions"] = [cond]
        else:
            status.update(
                {
                    "replicas": want,
                    "updatedReplicas": want,
                    "availableReplicas": want,
                    "readyReplicas": want,
                    "unavailableReplicas": 0,
                    "conditions": [
                        {"type": "Available", "status": "True"},
                        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                    ],
                }
            )

    @staticmethod
    def send(h: BaseHTTPRequestHandler, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def status(self, h: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self.send(
            h,
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    # ------------------------------------------------------------------ for assertions

    def applied(self, kind: str) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH" and r.kind == kind]

    def image_of(self, namespace: str, name: str) -> str:
        obj = self.objects[("Deployment", namespace, name)]
        return obj["spec"]["template"]["spec"]["containers"][0]["image"]
