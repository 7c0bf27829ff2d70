"""Continuous deployment: environments, targets, health gates, rollback, freezes.

What others may import from here:

* config: :func:`parse_environments`, :class:`Environment` (and its parts),
  :func:`load_environments`, :func:`active_freeze`, :func:`outside_windows`,
  :func:`parse_duration`;
* the core: :class:`Deployer` (``deploy``, ``rollback``, ``history``,
  ``promote_from``, ``on_published``, ``recover_interrupted``) and its errors;
* state: :class:`Deployment`, the :class:`DeploymentStore` protocol,
  :class:`MemoryStore`, :class:`JsonFileStore`;
* targets: :class:`PodmanTarget`, :class:`KubernetesTarget` (imported lazily:
  it loads the ``kubernetes`` client);
* the PipelineLib ``deploy`` step: :func:`run_test_release`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .deployer import DeployBlocked, DeployBusy, Deployer, DeployError, Outcome, OutdatedImage, SecretsUnavailable
from .environments import (
    ChartRef,
    DeployWindow,
    Environment,
    FreezeWindow,
    HealthPolicy,
    PrometheusCheck,
    SecretEnv,
    Values,
    active_freeze,
    load_environments,
    outside_windows,
    parse_duration,
    parse_environments,
)
from .health import HealthGate, Verdict
from .helm import HelmError, HelmUnavailable, find_helm
from .manifests import ManifestError, render, validate
from .model import (
    DEPLOYING,
    FAILED,
    HEALTHY,
    PENDING,
    ROLLED_BACK,
    STATUSES,
    SUPERSEDED,
    Deployment,
)
from .store import DeploymentStore, JsonFileStore, MemoryStore
from .targets import ImageNotFound, Release, ResolvedImage, Target, TargetError
from .targets.podman import PodmanTarget
from .testrelease import TestReleaseResult, run_test_release

if TYPE_CHECKING:
    from .targets.kubernetes import KubernetesTarget


def __getattr__(name: str) -> Any:
    if name == "KubernetesTarget":
        from .targets.kubernetes import KubernetesTarget

        return KubernetesTarget
    raise AttributeError(name)


__all__ = [
    "DEPLOYING",
    "FAILED",
    "HEALTHY",
    "PENDING",
    "ROLLED_BACK",
    "STATUSES",
    "SUPERSEDED",
    "ChartRef",
    "DeployBlocked",
    "DeployBusy",
    "DeployError",
    "DeployWindow",
    "Deployer",
    "Deployment",
    "DeploymentStore",
    "Environment",
    "FreezeWindow",
    "HealthGate",
    "HealthPolicy",
    "HelmError",
    "HelmUnavailable",
    "ImageNotFound",
    "JsonFileStore",
    "KubernetesTarget",
    "ManifestError",
    "MemoryStore",
    "Outcome",
    "OutdatedImage",
    "PodmanTarget",
    "PrometheusCheck",
    "Release",
    "ResolvedImage",
    "SecretEnv",
    "SecretsUnavailable",
    "Target",
    "TargetError",
    "TestReleaseResult",
    "Values",
    "Verdict",
    "active_freeze",
    "find_helm",
    "load_environments",
    "outside_windows",
    "parse_duration",
    "parse_environments",
    "render",
    "run_test_release",
    "validate",
]
