"""The engine protocol, the values it returns, and the errors it raises.

Every operation the runner needs from a container engine (build, run, copy,
push, inspect, remove) is one method of :class:`Engine`. The podman and docker
drivers implement it over their command-line clients; nothing above this
package knows which one is in use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

LogFn = Callable[[str], None]
"""Receives each output line (without its newline) as soon as the engine prints it."""

PullPolicy = Literal["missing", "always", "never"]
PULL_POLICIES: tuple[str, ...] = ("missing", "always", "never")

CA_PATH_IN_CONTAINER = "/dev/chute-ca-bundle.crt"
"""Where the CA bundle is mounted in RUN steps and (on request) run containers.

Not over the image's own ``/etc/ssl/certs/ca-certificates.crt``: with a
read-only file mounted there, installing or updating the ``ca-certificates``
package fails (``mv: ... Device or resource busy``), and buildah leaves an
empty file at every bind-mount target it had to create, which would end up
in the image. ``/dev`` is a tmpfs private to each RUN step, so nothing of the
mount is ever committed.
"""

CA_ENV_NAMES: tuple[str, ...] = ("PIP_CERT", "NODE_EXTRA_CA_CERTS")
"""Variables pointed at the mounted bundle by default (``CHUTE_BUILD_CA_ENV`` changes the list).

pip (``PIP_CERT``) and node/npm (``NODE_EXTRA_CA_CERTS``, which adds to node's
own list) are the tools that fetch over HTTPS in Blubber builds; apt uses
plain-HTTP mirrors.
"""

RUN_CAPABILITIES: tuple[str, ...] = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
)
"""Capabilities a root process in a run container keeps; every other one is dropped.

This is podman's default set minus SETPCAP, SETFCAP and SYS_CHROOT, and
docker's minus those three and NET_RAW, MKNOD and AUDIT_WRITE: enough for an
image that starts as root to chown its files and drop to its own user, and
nothing that helps a process escape or sniff the network. A non-root user
(Blubber's default) has no effective capabilities at all.

The others are dropped by name (``--cap-drop=X`` for each of
:data:`ALL_CAPABILITIES` not kept) rather than with ``--cap-drop=all
--cap-add=...``: podman gives explicitly added capabilities to non-root
users too, which would hand DAC_OVERRIDE to the image's unprivileged user.
"""

ALL_CAPABILITIES: tuple[str, ...] = (
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL",
    "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN",
    "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
)  # fmt: skip
"""Linux capabilities (up to 5.9's CHECKPOINT_RESTORE) that podman 4.3 and docker accept by name."""

MANAGED_LABEL = "chute.managed"
"""Set to "1" on every container chute runs, so leftovers can be found and removed."""


# --------------------------------------------------------------------------- errors


class EngineError(Exception):
    """A container engine operation failed; ``str()`` is a message for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n    hint: {self.hint}"
        return self.message


class EngineNotFound(EngineError):
    """Neither podman nor docker can be used on this machine."""


class EngineMisconfigured(EngineError):
    """The engine is installed but cannot start containers (e.g. the ulimit/runtime problem)."""


class EngineUsageError(EngineError):
    """The caller passed a value the engine cannot accept (bad env name, label, ref...)."""


class ImageNotFound(EngineError):
    def __init__(self, ref: str, hint: str | None = None) -> None:
        super().__init__(f"image {ref!r} does not exist in the engine's local storage", hint)
        self.ref = ref


class ContainerNotFound(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"container {name!r} does not exist")
        self.name = name


class OperationCancelled(EngineError):
    """The cancel event was set; the engine process and what it started were stopped."""


class OperationTimedOut(EngineError):
    """The operation ran past its timeout; the engine process and what it started were stopped."""


class BuildError(EngineError):
    """An image build failed. ``step`` and ``output`` point at the instruction that failed."""

    def __init__(
        self,
        message: str,
        *,
        step: str | None,
        output: Sequence[str],
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.step = step
        self.output = list(output)

    def __str__(self) -> str:
        lines = [self.message]
        if self.step:
            lines.append(f"    failing step: {self.step}")
        if self.output:
            lines.append("    last output of that step:")
            lines.extend(f"      | {line}" for line in self.output)
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)


class RunError(EngineError):
    """A container could not be created or started at all (not: it exited non-zero)."""


class CopyError(EngineError):
    """Copying files out of a container failed."""


class PushError(EngineError):
    """Pushing to a registry failed after all attempts.

    ``pushed`` holds the refs that were pushed and verified before the failure,
    so the caller can record them; nothing else may be treated as published.
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        ref: str,
        attempts: int,
        last_error: str,
        pushed: Sequence[PushedImage] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.registry = registry
        self.ref = ref
        self.attempts = attempts
        self.last_error = last_error
        self.pushed = list(pushed)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Limits:
    """Resource limits for a run container; None leaves the engine's default."""

    cpus: float | None = None
    memory: int | str | None = None  # bytes, or podman/docker syntax such as "512m"
    pids: int | None = None


@dataclass(frozen=True)
class BuildResult:
    image_id: str  # 64 hex digits, no "sha256:" prefix
    tags: tuple[str, ...] = ()
    steps: int = 0  # instructions the engine reported
    cached_steps: int = 0  # of those, how many came from the layer cache
    duration: float = 0.0
    output_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None only when the container was removed before it reported one
    container_name: str
    timed_out: bool = False
    cancelled: bool = False
    tail_lines: tuple[str, ...] = ()
    duration: float = 0.0
    removed: bool = False  # True when the container no longer exists (keep=False, or cancelled)
    oom_killed: bool = False  # the kernel killed it for going over its memory limit

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


@dataclass(frozen=True)
class PushedImage:
    ref: str  # as the caller wrote it (may start with http://)
    digest: str  # "sha256:...", the manifest digest the registry reports
    registry: str = ""  # host[:port]
    repository: str = ""
    tag: str = ""

    @property
    def pinned(self) -> str:
        """``registry/repository@digest``: the reference that can never move."""
        return f"{self.registry}/{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]  # e.g. ("CMD-SHELL", "wget -q ... || exit 1")
    interval: float | None = None  # seconds
    timeout: float | None = None
    start_period: float | None = None
    retries: int | None = None


@dataclass(frozen=True)
class ImageInfo:
    id: str  # 64 hex digits
    digest: str | None = None
    repo_digests: tuple[str, ...] = ()
    repo_tags: tuple[str, ...] = ()
    created: str | None = None  # RFC 3339, as the engine reports it
    user: str = ""
    workdir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()  # "8080/tcp"
    healthcheck: Healthcheck | None = None


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image_id: str
    image: str
    status: str  # created, running, exited, ...
    running: bool
    exit_code: int | None
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    privileged: bool = False
    oom_killed: bool = False


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Engine(Protocol):
    """What the runner may ask of a container engine."""

    name: str  # "podman" or "docker"

    def build(
        self,
        dockerfile: str,
        context_dir: str | Path,
        *,
        target: str | None = None,
        tags: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
        ignore_patterns: Sequence[str] | None = None,
        pull: PullPolicy = "missing",
        log: LogFn | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> BuildResult: ...

    def run(
        self,
        image: str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        timeout: float | None = None,
        log: LogFn | None = None,
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
        workdir: str | None = None,
        limits: Limits | None = None,
        network: str = "default",
        keep: bool = True,
        ca_bundle: bool = False,
        pull: PullPolicy = "missing",
        files: Mapping[str, str] | None = None,
    ) -> RunResult: ...

    def copy_out(self, container: str, source: str, destination: str | Path) -> Path: ...

    def push(
        self,
        image: str,
        refs: Sequence[str],
        *,
        log: LogFn | None = None,
        retries: int = 3,
        backoff: float = 2.0,
        cancel: threading.Event | None = None,
    ) -> list[PushedImage]: ...

    def inspect_image(self, ref: str) -> ImageInfo: ...

    def image_exists(self, ref: str) -> bool: ...

    def inspect_container(self, name: str) -> ContainerInfo: ...

    def remove_containers(self, names: Sequence[str]) -> None: ...

    def containers_labelled(self, labels: Mapping[str, str]) -> list[str]: ...

    def tag(self, image: str, ref: str) -> None: ...

    def remove_images(self, ids: Sequence[str], *, keep_cache: bool = False) -> None: ...

    def stop(self, name: str, timeout: float = 10) -> None: ...
