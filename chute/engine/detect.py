"""Choosing the container engine: podman if it works, else docker; CHUTE_ENGINE overrides."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from .base import Engine, EngineError, EngineNotFound, EngineUsageError
from .docker import DockerEngine
from .podman import PodmanEngine

ENGINES = ("podman", "docker")
ENV_VAR = "CHUTE_ENGINE"

INSTALL_HINT = (
    "install podman (Debian: apt-get install podman buildah runc catatonit) or docker "
    "(Debian: apt-get install docker.io, then start dockerd); "
    f"set {ENV_VAR}=podman or {ENV_VAR}=docker to choose one"
)


def _probe(name: str, environ: Mapping[str, str]) -> tuple[Engine | None, str]:
    """A working engine of that kind, or None and the reason it cannot be used."""
    binary = shutil.which(name, path=environ.get("PATH"))
    if binary is None:
        return None, f"{name} is not installed (not on PATH)"
    engine: PodmanEngine | DockerEngine
    engine = (
        PodmanEngine(binary, environ=environ) if name == "podman" else DockerEngine(binary, environ=environ)
    )
    try:
        engine.version()
    except EngineError as err:
        return None, f"{name} is installed but does not work: {err.message}"
    return engine, ""


def detect_engine(preferred: str | None = None, *, environ: Mapping[str, str] | None = None) -> Engine:
    """The engine to use: ``preferred``, else ``$CHUTE_ENGINE``, else podman, else docker.

    Raises :class:`EngineNotFound` naming what was tried and how to install
    either engine.
    """
    env = dict(os.environ if environ is None else environ)
    choice = (preferred or env.get(ENV_VAR) or "").strip().lower() or None
    if choice is not None and choice not in ENGINES:
        raise EngineUsageError(
            f"unknown container engine {choice!r} (from {'the argument' if preferred else ENV_VAR})",
            f"use one of: {', '.join(ENGINES)}",
        )
    reasons = []
    for name in [choice] if choice else list(ENGINES):
        engine, reason = _probe(name, env)
        if engine is not None:
            return engine
        reasons.append(reason)
    what = f"the requested engine {choice}" if choice else "neither podman nor docker"
    raise EngineNotFound(
        f"no usable container engine: {what} works here ({'; '.join(reasons)})", INSTALL_HINT
    )
