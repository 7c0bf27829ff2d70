"""A user's Helm chart, rendered with ``helm template`` when a ``helm`` binary is present.

chute never installs releases with Helm: it renders the chart and applies the
output with its own targets, so health gates, history and rollback work the
same for charts as for chute's own manifests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .environments import ChartRef


class HelmUnavailable(Exception):
    """The environment names a chart but no ``helm`` binary can be found."""


class HelmError(Exception):
    """``helm template`` failed; the message carries helm's own output."""


def find_helm(path: str | None = None) -> str | None:
    """The helm binary: ``$CHUTE_HELM``, else ``helm`` on ``path``/``$PATH``; None when absent."""
    explicit = os.environ.get("CHUTE_HELM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("helm", path=path)


def template_command(
    helm: str,
    chart: ChartRef,
    release: str,
    namespace: str,
    values_file: str,
    workdir: str | os.PathLike[str] = ".",
) -> list[str]:
    """The ``helm template`` argv (no shell: every value is its own argument)."""
    argv = [helm, "template", release]
    if chart.path:
        argv.append(str(Path(workdir) / chart.path))
    else:
        argv.append(str(chart.name))
        if chart.repo:
            argv += ["--repo", chart.repo]
    if chart.version:
        argv += ["--version", chart.version]
    argv += ["--namespace", namespace, "--values", values_file]
    return argv


def render_chart(
    chart: ChartRef,
    release: str,
    namespace: str,
    values: Mapping[str, Any],
    *,
    workdir: str | os.PathLike[str] = ".",
    helm: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Run ``helm template`` and return its YAML. Raises HelmUnavailable or HelmError."""
    binary = helm or find_helm()
    if not binary:
        raise HelmUnavailable(
            "this environment deploys a Helm chart, but no `helm` binary was found on PATH",
        )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="chute-values-", delete=False) as fh:
        yaml.safe_dump(dict(values), fh, sort_keys=False)
        values_file = fh.name
    try:
        argv = template_command(binary, chart, release, namespace, values_file, workdir)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm template did not finish within {timeout:g}s") from None
        if proc.returncode != 0:
            raise HelmError(f"helm template failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout
    finally:
        os.unlink(values_file)


def chart_values(image_repo: str, image_digest: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """PipelineLib's generated values (``docker``, ``main_app``) deep-merged with the overrides."""
    base: dict[str, Any] = {
        "docker": {
            "registry": image_repo.split("/", 1)[0] if "/" in image_repo else "",
            "pull_policy": "IfNotPresent",
        },
        "main_app": {"image": image_repo, "version": image_digest, "digest": image_digest},
    }
    return deep_merge(base, overrides)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
