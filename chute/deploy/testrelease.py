"""PipelineLib's ``deploy`` step: install a throwaway release, test it, remove it.

PipelineLib ran ``helm install --wait --timeout``, ``helm test`` and
``helm uninstall`` in a CI namespace (spec/pipelinelib.md §5.9). chute does
the same with its own renderer on the podman target when no ``helm`` is
present: the release runs on a free local port, "installed" means the health
gate passed within ``timeout``, and "test" means an optional command run in a
container that reaches the release at ``$CHUTE_RELEASE_URL``. The release is
always removed afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chute.config import ConfigError, Problem

from . import manifests as mf
from .environments import ChartRef, parse_environments
from .health import HealthGate
from .helm import HelmError, HelmUnavailable, chart_values, render_chart
from .targets import ImageNotFound, Release, TargetError
from .targets.podman import PodmanTarget


@dataclass
class TestReleaseResult:
    ok: bool
    release: str
    reason: str
    url: str | None = None
    health: dict[str, Any] = field(default_factory=dict)
    test_exit_code: int | None = None
    test_output: str = ""
    seconds: float = 0.0


def run_test_release(
    project: str,
    image: str,
    *,
    target: PodmanTarget | None = None,
    chart: ChartRef | None = None,
    test: bool = True,
    test_command: Sequence[str] | None = None,
    test_image: str | None = None,
    timeout: float = 120.0,
    overrides: Mapping[str, Any] | None = None,
    health_path: str | None = "/healthz",
    workdir: str = ".",
    test_timeout: float = 600.0,
) -> TestReleaseResult:
    """Install ``image`` as a throwaway release, gate it, run ``test_command``, remove it.

    ``overrides`` are the step's ``deploy.overrides``: chute's ``values``
    (port, env, replicas, resources) for its own renderer, or Helm values for
    a ``chart``. ``test_command`` runs in ``test_image`` (default: the release's
    image) with ``--network host``.
    """
    started = time.monotonic()
    target = target or PodmanTarget()
    release_name = "t" + secrets.token_hex(4)  # like PipelineLib's random 8-character release name
    raw_env: dict[str, Any] = {
        "target": "podman",
        "port": 1,
        "health": {"http": health_path or False, "within": timeout, "stable_for": 0},
    }
    if chart is not None:
        raw_env["chart"] = {k: v for k, v in vars(chart).items() if v is not None}
        raw_env["values"] = dict(overrides or {})
    elif overrides:
        raw_env["values"] = dict(overrides)
    env = parse_environments({release_name: raw_env}, None, ("deploy", "overrides"))[release_name]
    if env.values.secrets:  # a throwaway release of a pipeline step is no environment: no secrets
        raise ConfigError([Problem(
            "a test release gets no secrets: environment secrets go only to the services of "
            "`environments` that list them",
            "deploy.overrides.secrets",
            hint="remove `secrets`, or deploy to an environment (docs/deploy.md, \"Secrets of an environment\")",
        )])
    env = _without_port(env)

    def done(ok: bool, reason: str, **kw: Any) -> TestReleaseResult:
        return TestReleaseResult(
            ok=ok, release=release_name, reason=reason, seconds=time.monotonic() - started, **kw
        )

    try:
        resolved = target.resolve_image(image)
    except ImageNotFound as exc:
        return done(False, str(exc))
    port = mf.container_port_for(env, resolved.env)
    try:
        if chart is not None:
            text = render_chart(
                chart,
                release_name,
                "ci",
                chart_values(resolved.repository, resolved.digest, overrides or {}),
                workdir=workdir,
            )
            docs = mf.from_yaml(text)
        else:
            docs = mf.render(
                mf.RenderInput(
                    project=project,
                    env=env,
                    revision=1,
                    image=resolved.by_digest,
                    image_ref=image,
                    container_port=port,
                )
            )
        mf.validate(docs)
    except (HelmUnavailable, HelmError, mf.ManifestError) as exc:
        return done(False, str(exc))
    release = Release(
        project=project, env=env, revision=1, image=resolved, manifests=docs, container_port=port
    )
    state: dict[str, Any] = {}
    try:
        state = target.start(release)
        url = f"http://127.0.0.1:{state['side_port']}"
        probe = f"{url}{env.health.http}" if env.health.http else None
        with HealthGate(env.health, http_url=probe, container=lambda: target.check(release, state)) as gate:
            verdict = gate.until_healthy()
        if not verdict.healthy:
            return done(
                False,
                f"the release did not become healthy: {verdict.reason}",
                url=url,
                health=verdict.to_dict(),
            )
        if not test or not test_command:
            return done(True, "healthy", url=url, health=verdict.to_dict())
        code, output = _run_test(
            target, test_image or resolved.by_digest, list(test_command), url, release_name, test_timeout
        )
        ok = code == 0
        return done(
            ok,
            "test passed" if ok else f"the test command exited with {code}",
            url=url,
            health=verdict.to_dict(),
            test_exit_code=code,
            test_output=output,
        )
    except TargetError as exc:
        return done(False, str(exc))
    finally:
        if state:
            target.abort(release, state)


def _without_port(env: Any) -> Any:
    from dataclasses import replace

    return replace(env, port=None)


def _run_test(
    target: PodmanTarget, image: str, command: list[str], url: str, release: str, timeout: float
) -> tuple[int, str]:
    name = f"{release}-test"
    labels: list[str] = []
    for k, v in target.extra_labels.items():
        labels += ["--label", f"{k}={v}"]
    argv = [
        target.podman,
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--init",
        *labels,
        "-e",
        f"CHUTE_RELEASE_URL={url}",
        "--entrypoint",
        command[0],
        image,
        *command[1:],
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        subprocess.run([target.podman, "rm", "-f", name], capture_output=True, check=False)
        return 124, f"the test did not finish within {timeout:g}s"
    return proc.returncode, (proc.stdout + proc.stderr)[-20000:]
