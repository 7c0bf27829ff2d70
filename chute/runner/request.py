"""What to run and who is watching: the runner's inputs."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chute.secrets.masking import Masker

_MEMORY = re.compile(r"^[0-9]+[bkmgBKMG]?$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NETWORKS = ("isolated", "none", "default")  # or the name of an engine network


class IsolationError(ValueError):
    """A CHUTE_RUN_* setting that cannot be used; the message names it and says what is allowed."""


@dataclass(frozen=True)
class Isolation:
    """How run containers are confined: per-step limits, a timeout, and a network per trust level.

    Read from the environment of ``chute run`` or of the agent (docs/security.md, "Isolation"):
    ``CHUTE_RUN_CPUS`` (default 2, at most the machine's), ``CHUTE_RUN_MEMORY`` (default 2g),
    ``CHUTE_RUN_PIDS`` (default 1024), ``CHUTE_RUN_TIMEOUT`` (seconds, default 1200),
    ``CHUTE_RUN_NETWORK`` and ``CHUTE_RUN_NETWORK_UNTRUSTED`` (``isolated``, ``none``, ``default``
    or an engine network). ``none``, ``0`` or an empty value turns a limit off.

    Agents default to the ``isolated`` network (outbound traffic, nothing on the host: see
    :mod:`chute.engine.isolation`); ``chute run`` on a workstation keeps the engine's default
    network unless ``CHUTE_RUN_NETWORK`` says otherwise.
    """

    cpus: float | None = None
    memory: str | None = None
    pids: int | None = None
    timeout: float | None = None  # None: RunRequest.run_timeout
    network_trusted: str = "default"
    network_untrusted: str = "default"

    error: str = ""  # a setting that could not be used: runs end in error with this message

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, agent: bool = False) -> Isolation:
        """The settings from the environment; a bad one gives defaults plus ``error`` (checked before running)."""
        try:
            return cls._from_env(os.environ if environ is None else environ, agent)
        except IsolationError as err:
            return cls(error=str(err))

    @classmethod
    def _from_env(cls, env: Mapping[str, str], agent: bool) -> Isolation:

        def get(name: str, default: str) -> str | None:
            raw = env.get(name)
            value = (default if raw is None else raw).strip()
            return None if value.lower() in ("", "0", "none", "off") else value

        cpus = get("CHUTE_RUN_CPUS", str(min(2, os.cpu_count() or 1)))
        memory = get("CHUTE_RUN_MEMORY", "2g")
        pids = get("CHUTE_RUN_PIDS", "1024")
        timeout = get("CHUTE_RUN_TIMEOUT", "1200")
        try:
            cpu_value = float(cpus) if cpus is not None else None
            if cpu_value is not None and not cpu_value > 0:
                raise ValueError
        except ValueError:
            raise IsolationError(f"CHUTE_RUN_CPUS={cpus!r} is not a positive number of CPUs") from None
        if memory is not None and not _MEMORY.match(memory):
            raise IsolationError(f"CHUTE_RUN_MEMORY={memory!r} is not a size; write bytes or e.g. 512m, 2g")
        if pids is not None and not pids.isdigit():
            raise IsolationError(f"CHUTE_RUN_PIDS={pids!r} is not a whole number of processes")
        try:
            timeout_value = float(timeout) if timeout is not None else None
        except ValueError:
            raise IsolationError(f"CHUTE_RUN_TIMEOUT={timeout!r} is not a number of seconds") from None
        default_network = "isolated" if agent else "default"
        trusted = (env.get("CHUTE_RUN_NETWORK") or default_network).strip()
        untrusted = (env.get("CHUTE_RUN_NETWORK_UNTRUSTED") or trusted).strip()
        for name, value in (("CHUTE_RUN_NETWORK", trusted), ("CHUTE_RUN_NETWORK_UNTRUSTED", untrusted)):
            if value == "host" or not _NETWORK.match(value):
                raise IsolationError(f"{name}={value!r} cannot be used for run steps; use isolated, none, default "
                                     "or the name of an engine network")
        return cls(cpu_value, memory, int(pids) if pids is not None else None, timeout_value, trusted, untrusted)

    @classmethod
    def for_agent(cls) -> Isolation:
        return cls.from_env(agent=True)

    def step_timeout(self, request_timeout: float | None) -> float | None:
        if request_timeout is not None:
            return request_timeout
        return self.timeout

    def network_for(self, trusted: bool) -> str:
        return self.network_trusted if trusted else self.network_untrusted

    def limits(self) -> Any:
        from chute.engine import Limits

        if self.cpus is None and self.memory is None and self.pids is None:
            return None
        return Limits(cpus=self.cpus, memory=self.memory, pids=self.pids)

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPUs" if self.cpus else "no CPU limit",
                 f"{self.memory} memory" if self.memory else "no memory limit",
                 f"{self.pids} processes" if self.pids else "no process limit"]
        return ", ".join(parts)


@dataclass
class RunRequest:
    """One execution of one or more pipelines of a checked-out repository."""

    repo_dir: Path
    pipelines: list[str] | None = None  # None: every pipeline, in file order
    stage: str | None = None  # only this stage and its ancestors
    project: str = ""
    commit: str = ""
    branch: str = ""
    tag: str | None = None
    change: str | None = None
    patchset: str | None = None
    remote: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    registry: str | None = None  # "host:port[/namespace]" or "http://host:port[/namespace]"; None: local only
    trusted: bool = True  # may publish, promote, deploy, trigger, and get secrets
    secrets: dict[str, str] = field(default_factory=dict)  # run.credentials ids -> values (trusted only)
    default_branch: str = ""  # where privileged steps of an untrusted change run once merged (for messages)
    isolation: Isolation = field(default_factory=Isolation.from_env)  # limits and network of run steps
    reuse: dict[str, Any] = field(default_factory=dict)  # stage -> {"exports": {...}} from an earlier run
    run_id: int | str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # put on every container the run starts
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    max_parallel: int = 4
    run_timeout: float | None = None  # None: isolation.timeout (CHUTE_RUN_TIMEOUT, default PipelineLib's 20 min)
    build_timeout: float = 60 * 60.0
    keep_images: bool = False  # keep the local tags of built (and pushed) images after the run
    config_path: str = ".pipeline/config.yaml"


class Observer:
    """Callbacks for progress; the default does nothing. Called from worker threads."""

    def graph(self, graph: dict[str, Any]) -> None:
        """The stages and edges of the pipeline about to run."""

    def stage(self, name: str, status: str, error: str = "", exports: dict[str, Any] | None = None) -> None:
        """A stage changed status: running, success, failure, skipped, cancelled, reused."""

    def log(self, stage: str, text: str) -> None:
        """Output of a stage (one or more whole lines, ending in a newline)."""


@dataclass
class Runtime:
    """Things shared by the steps of one pipeline run."""

    request: RunRequest
    engine: Any
    observer: Observer
    cancel: threading.Event
    workdir: Path
    containers: list[str] = field(default_factory=list)
    local_images: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    masker: Masker = field(default_factory=Masker)  # hides request.secrets (set by the runner)
