"""The docker driver (the docker CLI, against dockerd or ``podman system service``).

Differences from podman, and what chute does about them:

* ``docker build`` has no bind mounts, so the CA bundle cannot reach RUN
  steps without changing the Dockerfile (BuildKit secret mounts) — a
  documented limitation; chute says so in the build log when
  CHUTE_BUILD_CA_BUNDLE is set explicitly.
* There is no ``--ignorefile``: the patterns are written to the context's
  ``.dockerignore`` for the build (and the original is put back after), plus
  ``<Dockerfile>.dockerignore`` for BuildKit.
* There is no ``--digestfile``: the digest is read from the push output
  (``<tag>: digest: sha256:... size: N``) and then checked with the registry.
* Plain-HTTP registries are a daemon setting (``insecure-registries``;
  127.0.0.0/8 is insecure by default), not a push flag.
* ``--pull=never`` does not exist for ``docker build``; a missing base image
  is pulled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .base import BuildResult, LogFn
from .ca import ca_explicitly_configured
from .cli import run_streaming
from .driver import CliEngine
from .refs import ImageRef

_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_BARE_ID = re.compile(r"^[0-9a-f]{64}$")


class DockerEngine(CliEngine):
    name = "docker"
    supports_build_mounts = False

    def __init__(
        self,
        binary: str | None = None,
        *,
        host: str | None = None,
        environ: Mapping[str, str] | None = None,
        ca_bundle: Path | str | None = "auto",
        ca_env: Sequence[str] | None = None,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        if host:
            env["DOCKER_HOST"] = host
        super().__init__(binary, environ=env, ca_bundle=ca_bundle, ca_env=ca_env)

    def _image_arg(self, ref: str) -> str:
        # chute keeps bare hex IDs; the Docker API wants "sha256:<hex>" (podman's
        # compat API refuses a bare 64-hex string as a name).
        return f"sha256:{ref}" if _BARE_ID.match(ref) else ref

    def version(self) -> str:
        """The server's version; raises EngineError if the daemon cannot be reached."""
        result = self._check(
            self._capture("version", "--format", "{{json .}}", timeout=30),
            "docker version",
            "start the docker daemon, or point DOCKER_HOST at a running one",
        )
        data = json.loads(result.stdout)
        server = data.get("Server") or {}
        if not server:
            raise self._no_daemon(result.stderr)
        return str(server.get("Version", ""))

    def _no_daemon(self, detail: str) -> Exception:
        from .base import EngineError

        return EngineError(
            f"the docker daemon is not reachable: {detail.strip() or 'no server answered'}",
            "start dockerd, or set DOCKER_HOST "
            "(e.g. unix:///run/podman/podman.sock for podman system service)",
        )

    # ------------------------------------------------------------------ build

    def build(self, dockerfile: str, context_dir: str | Path, **kwargs) -> BuildResult:  # type: ignore[override]
        log = kwargs.get("log")
        if log is not None and self.ca_bundle is not None and ca_explicitly_configured(self.environ):
            log(
                "chute: note: the docker driver cannot mount the CA bundle into RUN steps "
                "(docker build has no bind mounts); HTTPS through an intercepting proxy may fail in RUN"
            )
        return super().build(dockerfile, context_dir, **kwargs)

    def _build_argv(
        self,
        *,
        dockerfile: Path,
        context: Path,
        iidfile: Path,
        target: str | None,
        tags: Sequence[str],
        labels: Mapping[str, str] | None,
        build_args: Mapping[str, str],
        ignorefile: Path | None,
        pull: str,
        marker: str,
    ) -> list[str]:
        argv = [self.binary, "build", "--force-rm", "--rm", f"--iidfile={iidfile}", f"--file={dockerfile}"]
        if pull == "always":
            argv.append("--pull")
        if target:
            argv.append(f"--target={target}")
        argv += [f"--tag={tag}" for tag in tags]
        argv += [f"--label={key}={value}" for key, value in (labels or {}).items()]
        argv += [f"--build-arg={key}={value}" for key, value in build_args.items()]
        argv.append(str(context))
        return argv

    def _build_env(self, workdir: Path) -> dict[str, str]:
        return {**self.environ, "BUILDKIT_PROGRESS": "plain"}

    @contextlib.contextmanager
    def _ignore_file(
        self, context: Path, patterns: Sequence[str] | None, workdir: Path
    ) -> Iterator[Path | None]:
        if patterns is None:
            yield None
            return
        text = "".join(f"{p}\n" for p in patterns)
        (workdir / "Dockerfile.dockerignore").write_text(text)  # BuildKit reads this one first
        target = context / ".dockerignore"
        backup = target.read_bytes() if target.is_file() else None
        target.write_text(text)
        try:
            yield None
        finally:
            if backup is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(backup)

    # ------------------------------------------------------------------ push

    def _push_once(
        self, target: ImageRef, log: LogFn, cancel: threading.Event | None, workdir: Path
    ) -> tuple[str | None, str]:
        argv = [self.binary, "push", target.engine_ref]
        log(f"$ docker push {target.engine_ref}")
        result = run_streaming(argv, env=self.environ, log=log, timeout=self.push_timeout, cancel=cancel)
        if result.ok:
            for line in reversed(result.tail):
                m = _PUSH_DIGEST.search(line)
                if m:
                    return m.group(1), ""
            return None, "docker push succeeded but printed no digest"
        if result.timed_out:
            return None, f"the push did not finish within {self.push_timeout:g} s"
        return None, result.error_line()

    def _push_hint(self, target: ImageRef, error: str) -> str:
        if "http response to https client" in error.lower():
            return (
                f"the registry speaks plain HTTP: add {target.registry!r} to insecure-registries in "
                "/etc/docker/daemon.json (or the engine's registries.conf) and restart the daemon"
            )
        return super()._push_hint(target, error)
