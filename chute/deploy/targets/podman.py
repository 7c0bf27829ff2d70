"""The podman target: chute's manifests through ``podman kube play`` (podman 4.3).

What kube play honours and what this target does about it (notes/machine.md §2):

* Deployments, ConfigMaps (for ``envFrom``), env, resources and ``hostPort``
  with ``hostIP: 127.0.0.1`` are honoured; Services are ignored.
* readinessProbe is ignored; an httpGet livenessProbe becomes a ``curl``
  healthcheck whose restart action fails and takes the pod down. Both probes
  are removed here: chute's health gate probes the revision itself.
* ``--replace`` stops the old pod before the new one starts, so a port cannot
  change hands without a gap. Each revision runs as its own pod
  (``<app>-r<revision>``) on a free side port, and the environment's public
  port belongs to a small proxy (:mod:`chute.deploy.router`) that switches
  between revisions with no gap. The previous revision keeps running until
  the new one has been healthy for ``stable_for``, so an automatic rollback is
  a switch back, not a restart.
* The environment's secrets (``env[].valueFrom.secretKeyRef`` in the manifests):
  kube play 4.3 mis-stores a ``kind: Secret`` of the YAML (it keeps it as YAML,
  then wants JSON), but resolves ``secretKeyRef`` from a podman secret holding
  ``{"KEY": base64(value)}``. So each start makes such a podman secret
  (``<app>-r<revision>-secrets``, the value through stdin, never a command line
  or a file of chute's), plays the YAML that references it, and removes the
  secret at once: the values are then only in the container's configuration,
  as any env value is. The kube file chute keeps holds the reference only.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..environments import Environment
from ..health import FAIL, FATAL, PASS, WAIT, Check
from ..manifests import LABEL_ENVIRONMENT, LABEL_PROJECT, app_name, dns_name, find, secret_keys, secrets_name
from . import ImageNotFound, Release, ResolvedImage, TargetError

ROUTER_MODULE = "chute.deploy.router"


def default_state_dir() -> Path:
    base = os.environ.get("CHUTE_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "chute"
    )
    return Path(base) / "deploy" / "podman"


def split_repository(ref: str) -> str:
    """``host:5000/a/b:tag@sha256:..`` -> ``host:5000/a/b``."""
    ref = ref.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _registry_host(ref: str) -> str | None:
    """The registry to pull ``ref`` from; None for podman's local-only ``localhost/`` names."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first):
        return first
    return None


class PodmanTarget:
    name = "podman"
    side_by_side = True  # a new revision runs next to the serving one until switch()

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        podman: str = "podman",
        extra_labels: Mapping[str, str] | None = None,
        stop_timeout: int = 2,
        pull_timeout: float = 300.0,
        python: str = sys.executable,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.podman = podman
        self.extra_labels = dict(extra_labels or {})
        self.stop_timeout = stop_timeout
        self.pull_timeout = pull_timeout
        self.python = python
        self._pending: list[threading.Thread] = []
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------ podman calls

    def _run(
        self, *args: str, timeout: float = 120.0, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                [self.podman, *args], capture_output=True, text=True, timeout=timeout, check=False, input=input
            )
        except FileNotFoundError:
            raise TargetError(
                f"`{self.podman}` is not installed: install podman (apt-get install podman)"
            ) from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"podman {' '.join(args[:2])} did not finish within {timeout:g}s") from None
        if check and proc.returncode != 0:
            raise TargetError(
                f"podman {' '.join(args[:2])} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    # ------------------------------------------------------------------ images

    def resolve_image(self, ref: str) -> ResolvedImage:
        """Find ``ref`` in local storage (pulling it from its registry if needed) and read its digest."""
        ref = ref.strip()
        if not ref or any(c.isspace() for c in ref) or ref.startswith("-"):
            raise ImageNotFound(f"{ref!r} is not an image reference")
        proc = self._run("image", "inspect", ref, check=False, timeout=30)
        if proc.returncode != 0 and _registry_host(ref):
            tls = [] if not _insecure(ref) else ["--tls-verify=false"]
            pull = self._run("pull", "-q", *tls, ref, check=False, timeout=self.pull_timeout)
            if pull.returncode != 0:
                raise ImageNotFound(
                    f"image {ref} does not exist in local storage and cannot be pulled: "
                    f"{pull.stderr.strip().splitlines()[-1] if pull.stderr.strip() else 'error'}"
                )
            proc = self._run("image", "inspect", ref, check=False, timeout=30)
        if proc.returncode != 0:
            raise ImageNotFound(
                f"image {ref} does not exist in podman's local storage "
                "(build or pull it first, or name a registry to pull from)"
            )
        info = json.loads(proc.stdout)[0]
        digest = info.get("Digest") or ""
        repo_digests: list[str] = info.get("RepoDigests") or []
        repository = split_repository(ref)
        if ref.startswith("sha256:") or (len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref)):
            if not repo_digests:
                raise ImageNotFound(f"image {ref} has no name; tag it (podman tag) so it can be deployed")
            repository = split_repository(repo_digests[0])
            digest = repo_digests[0].split("@", 1)[1]
        if "@sha256:" in ref:
            digest = "sha256:" + ref.split("@sha256:", 1)[1]
        else:  # a pulled image: the registry's digest for this repository, not the local one
            mine = [d for d in repo_digests if split_repository(d) == repository]
            if mine:
                digest = mine[0].split("@", 1)[1]
        if not digest.startswith("sha256:"):
            raise ImageNotFound(f"image {ref} has no digest in local storage")
        env = {}
        for item in (info.get("Config") or {}).get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        hc = info.get("Healthcheck") or (info.get("Config") or {}).get("Healthcheck") or {}
        test = tuple(hc.get("Test") or ())
        return ResolvedImage(
            ref=ref,
            repository=repository,
            digest=digest,
            env=env,
            healthcheck=test if test and test[0] in ("CMD", "CMD-SHELL") else (),
        )

    # ------------------------------------------------------------------ revisions

    def adapt(self, release: Release, side_port: int) -> list[dict[str, Any]]:
        """The release's manifests as podman kube play runs them (see the module docstring)."""
        name = self.pod_base(release)
        env_secret = secrets_name(release.project, release.env.name)
        out: list[dict[str, Any]] = []
        for doc in release.manifests:
            kind = doc.get("kind")
            if kind == "ConfigMap":
                out.append(copy.deepcopy(doc))
            elif kind == "Deployment":
                d = copy.deepcopy(doc)
                d["metadata"]["name"] = name
                d["metadata"].setdefault("labels", {}).update(self.extra_labels)
                spec = d["spec"]
                spec["replicas"] = 1
                template = spec["template"]
                template.setdefault("metadata", {}).setdefault("labels", {}).update(self.extra_labels)
                pod_spec = template["spec"]
                pod_spec.setdefault("restartPolicy", "Always")
                for i, c in enumerate(pod_spec["containers"]):
                    c.pop("readinessProbe", None)
                    c.pop("livenessProbe", None)
                    c.pop("startupProbe", None)
                    if c.get("image") == release.image.by_digest:
                        c["imagePullPolicy"] = "Never"  # resolve_image made sure it is local
                    else:
                        c["imagePullPolicy"] = "IfNotPresent"
                    for e in c.get("env") or []:
                        ref = ((e or {}).get("valueFrom") or {}).get("secretKeyRef")
                        if isinstance(ref, dict) and ref.get("name") == env_secret:
                            ref["name"] = self.secret_name(release)  # this revision's podman secret
                    for p in c.get("ports") or []:
                        p.pop("hostPort", None)
                        p.pop("hostIP", None)
                    if i == 0:
                        ports = c.setdefault("ports", [])
                        match = [p for p in ports if p.get("containerPort") == release.container_port]
                        if not match:
                            ports.append({"containerPort": release.container_port})
                            match = [ports[-1]]
                        match[0]["hostPort"] = side_port
                        match[0]["hostIP"] = "127.0.0.1"
                out.append(d)
            # Services, Ingresses, ...: ignored by kube play; the router plays the Service's part.
        if not find(out, "Deployment"):
            raise TargetError("the manifests have no Deployment for podman kube play to run")
        return out

    def pod_base(self, release: Release) -> str:
        return f"{app_name(release.project, release.env.name)}-r{release.revision}"

    def secret_name(self, release: Release) -> str:
        return f"{self.pod_base(release)}-secrets"

    def _make_secret(self, release: Release) -> str | None:
        """The podman secret kube play reads this revision's ``secretKeyRef`` values from."""
        keys = secret_keys(release.manifests, secrets_name(release.project, release.env.name))
        if not keys:
            return None
        missing = [k for k in keys if k not in release.secrets]
        if missing:
            raise TargetError(f"no value was given for the secrets {', '.join(missing)}")
        name = self.secret_name(release)
        self._run("secret", "rm", name, check=False, timeout=30)  # a leftover of a killed deploy
        content = json.dumps({k: base64.b64encode(release.secrets[k].encode()).decode() for k in keys})
        proc = self._run("secret", "create", name, "-", input=content, check=False, timeout=30)
        if proc.returncode != 0:
            raise TargetError(f"podman secret create {name} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return name

    def _remove_secrets(self, prefix: str) -> None:
        proc = self._run("secret", "ls", "--format", "{{.Name}}", check=False, timeout=30)
        for name in proc.stdout.split():
            rest = name[len(prefix):] if name.startswith(prefix) else ""
            if rest.endswith("-secrets") and rest.removesuffix("-secrets").isdigit():
                self._run("secret", "rm", name, check=False, timeout=30)

    def start(self, release: Release) -> dict[str, Any]:
        side_port = _free_port()
        docs = self.adapt(release, side_port)
        base = self.pod_base(release)
        kube_file = self.state_dir / f"{base}.yaml"
        kube_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        state = {
            "pod": f"{base}-pod-0",
            "container": f"{base}-pod-0-"
            f"{find(docs, 'Deployment')[0]['spec']['template']['spec']['containers'][0]['name']}",
            "side_port": side_port,
            "kube_file": str(kube_file),
            # kube play 4.3 drops the image's HEALTHCHECK; chute runs it itself with podman exec.
            "healthcheck": list(release.image.healthcheck),
        }
        try:
            secret = self._make_secret(release)
            try:
                self._run("kube", "play", "--replace", str(kube_file), timeout=120)
            finally:
                if secret:  # the container has its env now; podman keeps no other copy
                    self._run("secret", "rm", secret, check=False, timeout=30)
        except TargetError:
            self.abort(release, state)
            raise
        return state

    def probe_url(self, release: Release, state: dict[str, Any], *, serving: bool = False) -> str | None:
        path = release.env.health.http
        if not path:
            return None
        port = release.env.port if serving and release.env.port else state["side_port"]
        return f"http://127.0.0.1:{port}{path}"

    def check(self, release: Release, state: dict[str, Any]) -> Check:
        proc = self._run("container", "inspect", state["container"], check=False, timeout=30)
        if proc.returncode != 0:
            return Check(FATAL, f"container {state['container']} is gone")
        info = json.loads(proc.stdout)[0]
        st = info.get("State") or {}
        status = st.get("Status", "")
        restarts = int(info.get("RestartCount") or 0)
        if status in ("exited", "stopped", "dead", "removing"):
            return Check(FATAL, f"container {state['container']} {status} (exit code {st.get('ExitCode')})")
        if status != "running":
            return Check(WAIT, f"container {state['container']} is {status}")
        # A restarted container is running again, and its exit code then reads 0: say it only if known.
        exited = f", last exit code {st.get('ExitCode')}" if st.get("ExitCode") else ""
        if restarts > int(state.get("restarts", 0)):
            state["restarts"] = restarts
            return Check(FAIL, f"container {state['container']} restarted ({restarts} restarts{exited})")
        hc_test = state.get("healthcheck") or []
        if (info.get("Config") or {}).get("Healthcheck"):
            hc = self._run("healthcheck", "run", state["container"], check=False, timeout=30)
        elif hc_test:
            argv = ["/bin/sh", "-c", hc_test[1]] if hc_test[0] == "CMD-SHELL" else hc_test[1:]
            hc = self._run("exec", state["container"], *argv, check=False, timeout=30)
        if (info.get("Config") or {}).get("Healthcheck") or hc_test:
            if hc.returncode != 0:
                said = (hc.stdout or hc.stderr).strip() or "unhealthy"
                return Check(FAIL, f"container {state['container']} healthcheck: {said}")
            return Check(PASS, f"container {state['container']} running, healthcheck passed")
        if restarts:
            return Check(PASS, f"container {state['container']} running (restarted {restarts} times{exited})")
        return Check(PASS, f"container {state['container']} running")

    def is_warm(self, release: Release, state: dict[str, Any]) -> bool:
        """Does this revision still run, so that switching back to it is enough?"""
        return bool(state.get("container")) and self.check(release, state).state == PASS

    # ------------------------------------------------------------------ traffic

    def _router_files(self, env: Environment, project: str) -> tuple[Path, Path, Path, Path]:
        base = self.state_dir / f"{app_name(project, env.name)}.router"
        return (
            base.with_suffix(".json"),
            base.with_suffix(".json.applied"),
            base.with_suffix(".json.ready"),
            base.with_suffix(".log"),
        )

    def router_pid(self, project: str, env: Environment) -> int | None:
        state, _, ready, _ = self._router_files(env, project)
        try:
            pid = int(ready.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if ROUTER_MODULE.encode() in cmdline and str(state).encode() in cmdline:
            return pid
        return None

    def switch(self, release: Release, state: dict[str, Any]) -> None:
        env = release.env
        if not env.port:
            raise TargetError(f"environment {env.name} has no port to serve on")
        state_file, applied, ready, log = self._router_files(env, release.project)
        try:
            generation = json.loads(state_file.read_text()).get("generation", 0) + 1
        except (OSError, ValueError):
            generation = 1
        tmp = state_file.with_name(state_file.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "upstream": f"127.0.0.1:{state['side_port']}",
                    "generation": generation,
                    "revision": release.revision,
                }
            )
        )
        os.replace(tmp, state_file)
        pid = self.router_pid(release.project, env)
        if pid is None:
            self._start_router(env, state_file, ready, log)
        else:
            os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if int(applied.read_text()) >= generation and self.router_pid(release.project, env):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        raise TargetError(
            f"the router on 127.0.0.1:{env.port} did not take revision {release.revision}; see {log}"
        )

    def _start_router(self, env: Environment, state_file: Path, ready: Path, log: Path) -> None:
        ready.unlink(missing_ok=True)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", env.port or 0))
            except OSError as exc:
                raise TargetError(
                    f"port 127.0.0.1:{env.port} of environment {env.name} is taken by another "
                    f"process ({exc.strerror}); free it or choose another port"
                ) from None
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    ROUTER_MODULE,
                    "--listen",
                    f"127.0.0.1:{env.port}",
                    "--state",
                    str(state_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ready.exists():
                return
            if proc.poll() is not None:
                raise TargetError(f"the router for {env.name} exited (code {proc.returncode}); see {log}")
            time.sleep(0.01)
        raise TargetError(f"the router for {env.name} did not start within 10s; see {log}")

    def stop_router(self, project: str, env: Environment) -> None:
        pid = self.router_pid(project, env)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                break
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if we are its parent
            except ChildProcessError:
                pass
            time.sleep(0.01)

    # ------------------------------------------------------------------ cleanup

    def retire(self, release: Release, state: dict[str, Any]) -> None:
        """Remove a revision's pod in the background: it serves no traffic, and removing a pod with a
        published port takes podman about 3.5 s (network teardown), which no deploy should wait for."""
        self._remove_later(state.get("pod"), state.get("kube_file"))

    def _remove_later(self, pod: str | None, kube_file: str | None) -> None:
        def remove() -> None:
            if pod:
                self._run("pod", "rm", "-f", "-t", str(self.stop_timeout), pod, check=False, timeout=120)
            if kube_file:
                Path(kube_file).unlink(missing_ok=True)

        worker = threading.Thread(target=remove, name=f"retire-{pod}")  # not a daemon: finishes before exit
        with self._mutex:
            self._pending = [t for t in self._pending if t.is_alive()]
            self._pending.append(worker)
        worker.start()

    abort = retire

    def served_revision(self, project: str, env: Environment) -> int | None:
        """The revision the router sends traffic to: None when no router runs, or when it has not
        applied the newest state file (a switch was cut short: what it serves is not known)."""
        state_file, applied, _, _ = self._router_files(env, project)
        if self.router_pid(project, env) is None:
            return None
        try:
            state = json.loads(state_file.read_text())
            done = int(applied.read_text())
        except (OSError, ValueError):
            return None
        if done < int(state.get("generation", 0)) or state.get("revision") is None:
            return None
        return int(state["revision"])

    def prune(self, project: str, env: Environment, keep: int | None) -> list[str]:
        """Remove the pods of every revision of ``env`` but ``keep`` (in the background, like retire).

        Only for when no deploy of ``env`` runs (the caller holds its lock): what a killed deploy
        started, and what it did not get to retire. Returns the pods removed.
        """
        proc = self._run(
            "pod", "ps", "--format", "{{.Name}}",
            "--filter", f"label={LABEL_PROJECT}={dns_name(project)}",
            "--filter", f"label={LABEL_ENVIRONMENT}={env.name}",
            check=False, timeout=30,
        )
        keep_pod = f"{app_name(project, env.name)}-r{keep}-pod-0" if keep is not None else None
        removed = []
        for pod in proc.stdout.split():
            if pod == keep_pod:
                continue
            self._remove_later(pod, str(self.state_dir / f"{pod.removesuffix('-pod-0')}.yaml"))
            removed.append(pod)
        self._remove_secrets(f"{app_name(project, env.name)}-r")  # left by a deploy killed in kube play
        return removed

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Wait for background removals (tests and ``down`` call this)."""
        with self._mutex:
            pending = list(self._pending)
        for worker in pending:
            worker.join(timeout)

    def down(self, project: str, env: Environment) -> None:
        """Remove every revision and the router of an environment."""
        self.wait_idle()
        self.stop_router(project, env)
        proc = self._run(
            "pod",
            "ps",
            "-q",
            "--filter",
            f"label={LABEL_PROJECT}={dns_name(project)}",
            "--filter",
            f"label={LABEL_ENVIRONMENT}={env.name}",
            check=False,
            timeout=30,
        )
        ids = proc.stdout.split()
        if ids:
            self._run("pod", "rm", "-f", "-t", str(self.stop_timeout), *ids, check=False, timeout=60)
        self._remove_secrets(f"{app_name(project, env.name)}-r")
        for f in self._router_files(env, project):
            f.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _insecure(ref: str) -> bool:
    host = _registry_host(ref) or ""
    return host.split(":")[0] in ("localhost", "127.0.0.1")
