"""What to run and who is watching: the runner's inputs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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
    reuse: dict[str, Any] = field(default_factory=dict)  # stage -> {"exports": {...}} from an earlier run
    run_id: int | str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # put on every container the run starts
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    max_parallel: int = 4
    run_timeout: float = 20 * 60.0  # PipelineLib's hard-coded 20 minutes, here a default
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
