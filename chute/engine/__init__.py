"""Container engines behind one small protocol: build, run, copy, push, inspect, remove.

Use :func:`detect_engine` to get an :class:`Engine` (podman if it works, else
docker; ``CHUTE_ENGINE`` overrides). Everything else in chute talks to the
engine only through the methods of :class:`Engine` and the values below.
Importing this package is cheap: httpx is imported only when pushing.
"""

from .base import (
    CA_ENV_NAMES,
    CA_PATH_IN_CONTAINER,
    MANAGED_LABEL,
    RUN_CAPABILITIES,
    BuildError,
    BuildResult,
    ContainerInfo,
    ContainerNotFound,
    CopyError,
    Engine,
    EngineError,
    EngineMisconfigured,
    EngineNotFound,
    EngineUsageError,
    Healthcheck,
    ImageInfo,
    ImageNotFound,
    Limits,
    LogFn,
    OperationCancelled,
    OperationTimedOut,
    PushedImage,
    PushError,
    RunError,
    RunResult,
)
from .ca import resolve_ca_bundle
from .detect import detect_engine
from .docker import DockerEngine
from .podman import PodmanEngine
from .refs import ImageRef, parse_push_ref

__all__ = [
    "CA_ENV_NAMES",
    "CA_PATH_IN_CONTAINER",
    "MANAGED_LABEL",
    "RUN_CAPABILITIES",
    "BuildError",
    "BuildResult",
    "ContainerInfo",
    "ContainerNotFound",
    "CopyError",
    "DockerEngine",
    "Engine",
    "EngineError",
    "EngineMisconfigured",
    "EngineNotFound",
    "EngineUsageError",
    "Healthcheck",
    "ImageInfo",
    "ImageNotFound",
    "ImageRef",
    "Limits",
    "LogFn",
    "OperationCancelled",
    "OperationTimedOut",
    "PodmanEngine",
    "PushError",
    "PushedImage",
    "RunError",
    "RunResult",
    "detect_engine",
    "parse_push_ref",
    "resolve_ca_bundle",
]
