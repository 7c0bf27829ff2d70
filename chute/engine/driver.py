"""The engine operations over a docker-compatible command line.

podman and docker take the same verbs and nearly the same flags; this class
holds what they share (argument checks, run isolation, copy, the push loop
with verification, inspect parsing). :mod:`.podman` and :mod:`.docker` fill
in where they differ: the build command, push and its digest, and cleanup.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import registry
from .base import (
    ALL_CAPABILITIES,
    CA_PATH_IN_CONTAINER,
    MANAGED_LABEL,
    PULL_POLICIES,
    RUN_CAPABILITIES,
    BuildError,
    BuildResult,
    ContainerInfo,
    ContainerNotFound,
    CopyError,
    EngineError,
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
from .buildlog import BuildLog, failure_hint
from .ca import resolve_ca_bundle, resolve_ca_env_names
from .cli import ProcessResult, run_capture, run_streaming
from .dockerfile import declare_args_in_stages
from .refs import ImageRef, normalize_id, parse_push_ref

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MEMORY_RE = re.compile(r"^[0-9]+[bkmgBKMG]?$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

_NOT_RETRYABLE = (
    "http response to https client",
    "unauthorized",
    "authentication required",
    "denied",
    "name unknown",
    "invalid reference",
    "manifest invalid",
    "x509",
    "certificate",
    "no such file or directory",  # a local problem, e.g. a missing auth file
)


def _noop(_line: str) -> None:
    pass


def _check_ref(value: str, what: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() or c == "\0" for c in value):
        raise EngineUsageError(f"{what} {value!r} is not a valid image reference")
    return value


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value or ""):
        raise EngineUsageError(
            f"{what} {value!r} is not valid",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return value


def _check_labels(labels: Mapping[str, str] | None) -> list[str]:
    out = []
    for key, value in (labels or {}).items():
        if not key or "=" in key or any(c.isspace() for c in key) or key.startswith("-"):
            raise EngineUsageError(f"label name {key!r} is not valid", "use a name without spaces or '='")
        out.append(f"--label={key}={value}")
    return out


def write_env_file(directory: Path, env: Mapping[str, str] | None) -> tuple[Path | None, list[str]]:
    """Put environment values where no shell and no process listing can see them.

    Values go in an env file (mode 0600) that the engine reads verbatim: no
    quoting, no ``$`` expansion. Env files cannot hold line breaks, so values
    that contain one are passed as separate ``--env=NAME=value`` arguments
    (still no shell). Returns the file (or None) and those extra arguments.
    """
    lines: list[str] = []
    inline: list[str] = []
    for key, raw in (env or {}).items():
        value = str(raw)
        if not _ENV_NAME_RE.match(key):
            raise EngineUsageError(
                f"environment variable name {key!r} is not valid",
                "start with a letter or '_', then letters, digits, '_', '.' or '-'",
            )
        if "\0" in value:
            raise EngineUsageError(f"the value of environment variable {key} contains a NUL byte")
        if "\n" in value or "\r" in value:
            inline.append(f"--env={key}={value}")
        else:
            lines.append(f"{key}={value}")
    if not lines:
        return None, inline
    path = directory / "env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path, inline


_FILE_TARGET_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")


def _private_tmpfs() -> str | None:
    """/dev/shm when it is a writable directory (a tmpfs on Linux), else the default temp dir."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _write_files(directory: Path, files: Mapping[str, str] | None) -> list[str]:
    """Write each file (0444 in a 0700 directory) and return the read-only ``--volume`` arguments."""
    args = []
    for i, (target, text) in enumerate((files or {}).items()):
        path = directory / f"file-{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # Readable by the image's own (often unprivileged) user; the 0700 directory keeps others out.
        os.chmod(path, 0o444)
        args.append(f"--volume={path}:{target}:ro")
    return args


def _limit_args(limits: Limits | None) -> list[str]:
    if limits is None:
        return []
    out = []
    if limits.cpus is not None:
        if not limits.cpus > 0:
            raise EngineUsageError(f"cpu limit {limits.cpus!r} must be a positive number of CPUs")
        out.append(f"--cpus={limits.cpus:g}")
    if limits.memory is not None:
        memory = str(limits.memory)
        if not _MEMORY_RE.match(memory):
            raise EngineUsageError(
                f"memory limit {limits.memory!r} is not valid", "give bytes, or a number with b, k, m or g"
            )
        # Swap equal to the limit: the limit is the memory a step gets, not half of it.
        out += [f"--memory={memory}", f"--memory-swap={memory}"]
    if limits.pids is not None:
        if int(limits.pids) < 1:
            raise EngineUsageError(f"pids limit {limits.pids!r} must be at least 1")
        out.append(f"--pids-limit={int(limits.pids)}")
    return out


def _first_json(text: str) -> Any:
    data = json.loads(text or "null")
    if isinstance(data, list):
        return data[0] if data else None
    return data


def _ns_to_seconds(value: Any) -> float | None:
    return value / 1e9 if isinstance(value, int | float) and value else None


def parse_image_info(data: Mapping[str, Any]) -> ImageInfo:
    """ImageInfo from one element of ``podman image inspect`` / ``docker image inspect``."""
    cfg = data.get("Config") or {}
    env: dict[str, str] = {}
    for item in cfg.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    hc_data = cfg.get("Healthcheck") or data.get("Healthcheck") or data.get("HealthCheck")
    healthcheck = None
    if hc_data and hc_data.get("Test"):
        healthcheck = Healthcheck(
            test=tuple(hc_data["Test"]),
            interval=_ns_to_seconds(hc_data.get("Interval")),
            timeout=_ns_to_seconds(hc_data.get("Timeout")),
            start_period=_ns_to_seconds(hc_data.get("StartPeriod")),
            retries=hc_data.get("Retries") or None,
        )
    entrypoint = cfg.get("Entrypoint")
    cmd = cfg.get("Cmd")
    return ImageInfo(
        id=normalize_id(data.get("Id", "")),
        digest=data.get("Digest") or None,
        repo_digests=tuple(data.get("RepoDigests") or ()),
        repo_tags=tuple(data.get("RepoTags") or ()),
        created=data.get("Created"),
        user=cfg.get("User") or "",
        workdir=cfg.get("WorkingDir") or "",
        env=env,
        entrypoint=tuple(entrypoint) if isinstance(entrypoint, list) else None,
        cmd=tuple(cmd) if isinstance(cmd, list) else None,
        labels=dict(cfg.get("Labels") or data.get("Labels") or {}),
        exposed_ports=tuple(sorted((cfg.get("ExposedPorts") or {}).keys())),
        healthcheck=healthcheck,
    )


def parse_container_info(data: Mapping[str, Any]) -> ContainerInfo:
    """ContainerInfo from one element of ``podman/docker container inspect``."""
    state = data.get("State") or {}
    cfg = data.get("Config") or {}
    status = str(state.get("Status") or "").lower()
    finished = status in ("exited", "stopped", "dead")
    image_name = data.get("ImageName") or cfg.get("Image") or ""
    return ContainerInfo(
        id=data.get("Id", ""),
        name=str(data.get("Name", "")).lstrip("/"),
        image_id=normalize_id(str(data.get("Image", ""))),
        image=image_name,
        status=status,
        running=bool(state.get("Running")),
        exit_code=state.get("ExitCode") if finished else None,
        labels=dict(cfg.get("Labels") or {}),
        created=data.get("Created"),
        started_at=state.get("StartedAt") or None,
        finished_at=state.get("FinishedAt") or None,
        privileged=bool((data.get("HostConfig") or {}).get("Privileged")),
        oom_killed=bool(state.get("OOMKilled")),
    )


def _is_missing(text: str) -> bool:
    lowered = text.lower()
    return "no such" in lowered or "not known" in lowered or "not found" in lowered


class CliEngine:
    """An :class:`~chute.engine.base.Engine` over a docker-compatible CLI."""

    name = "cli"
    stop_grace = 5  # seconds a timed-out container gets between SIGTERM and SIGKILL
    push_timeout = 1800.0  # seconds for one push attempt
    supports_build_mounts = False  # can the CA bundle be mounted into RUN steps?

    def __init__(
        self,
        binary: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        ca_bundle: Path | str | None = "auto",
        ca_env: Sequence[str] | None = None,
    ) -> None:
        self.binary = binary or shutil.which(self.name) or self.name
        self.environ: dict[str, str] = dict(os.environ if environ is None else environ)
        if ca_bundle == "auto":
            self.ca_bundle = resolve_ca_bundle(self.environ)
        else:
            self.ca_bundle = Path(ca_bundle) if ca_bundle else None
        self.ca_env: tuple[str, ...] = resolve_ca_env_names(self.environ) if ca_env is None else tuple(ca_env)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(binary={self.binary!r})"

    # ------------------------------------------------------------------ plumbing

    def _capture(self, *args: str, timeout: float | None = 120) -> ProcessResult:
        result = run_capture([self.binary, *args], env=self.environ, timeout=timeout)
        if result.returncode is None and not result.timed_out:
            raise EngineError(
                f"cannot execute {self.binary!r}: {result.stderr}",
                f"install {self.name}, or set CHUTE_ENGINE to the other engine",
            )
        if result.timed_out:
            raise EngineError(f"`{self.name} {' '.join(args[:2])}` did not answer within {timeout:g} s")
        return result

    def _check(self, result: ProcessResult, what: str, hint: str | None = None) -> ProcessResult:
        if result.returncode != 0:
            self._raise_if_misconfigured(result)
            raise EngineError(f"{what} failed: {result.error_line()}", hint)
        return result

    def _image_arg(self, ref: str) -> str:
        """How an image reference or bare ID is written on this engine's command line."""
        return ref

    def _raise_if_misconfigured(self, result: ProcessResult, remove: str | None = None) -> None:
        """Overridden by drivers that recognise a broken engine setup in an error.

        ``remove`` names a container the failed command created, to be removed
        before raising.
        """

    # ------------------------------------------------------------------ build

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
        raise NotImplementedError

    def _build_env(self, workdir: Path) -> dict[str, str]:
        return self.environ

    @contextlib.contextmanager
    def _ignore_file(
        self, context: Path, patterns: Sequence[str] | None, workdir: Path
    ) -> Iterator[Path | None]:
        if patterns is None:
            yield None
            return
        path = workdir / "ignore"
        path.write_text("".join(f"{p}\n" for p in patterns))
        yield path

    def _cleanup_aborted_build(self, workdir: Path, marker: str, log: LogFn) -> None:
        """Remove what a killed build left behind (overridden per engine)."""

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
        pull: str = "missing",
        log: LogFn | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> BuildResult:
        """Build ``dockerfile`` (text) with ``context_dir`` as context; return the image ID.

        The Dockerfile is written to a private temporary directory, outside the
        context. The layer cache is used. Labels are set with ``--label``. On
        timeout or cancel the engine process and the build containers it left
        are removed, then OperationTimedOut/OperationCancelled is raised.
        """
        log = log or _noop
        context = Path(context_dir)
        if not context.is_dir():
            raise EngineUsageError(f"build context {str(context)!r} is not a directory")
        if pull not in PULL_POLICIES:
            raise EngineUsageError(f"pull policy {pull!r} is not one of {', '.join(PULL_POLICIES)}")
        if target is not None:
            _check_name(target, "build target")
        for tag in tags:
            _check_ref(tag, "tag")
        _check_labels(labels)
        args = dict(build_args or {})
        for key in args:
            if not _ENV_NAME_RE.match(key):
                raise EngineUsageError(f"build arg name {key!r} is not valid")

        text = dockerfile
        if self.ca_bundle is not None and self.supports_build_mounts:
            text = declare_args_in_stages(text, self.ca_env)
            args = {**{n: CA_PATH_IN_CONTAINER for n in self.ca_env}, **args}

        workdir = Path(tempfile.mkdtemp(prefix="chute-build-"))
        marker = secrets.token_hex(8)
        try:
            dockerfile_path = workdir / "Dockerfile"
            dockerfile_path.write_text(text, encoding="utf-8")
            iidfile = workdir / "image-id"
            buildlog = BuildLog()

            def on_line(line: str) -> None:
                buildlog.feed(line)
                log(line)

            with self._ignore_file(context, ignore_patterns, workdir) as ignorefile:
                argv = self._build_argv(
                    dockerfile=dockerfile_path,
                    context=context.resolve(),
                    iidfile=iidfile,
                    target=target,
                    tags=tags,
                    labels=labels,
                    build_args=args,
                    ignorefile=ignorefile,
                    pull=pull,
                    marker=marker,
                )
                try:
                    result = run_streaming(
                        argv, env=self._build_env(workdir), log=on_line, timeout=timeout, cancel=cancel
                    )
                except KeyboardInterrupt:
                    self._cleanup_aborted_build(workdir, marker, log)
                    raise
            if result.cancelled or result.timed_out:
                self._cleanup_aborted_build(workdir, marker, log)
                if result.cancelled:
                    raise OperationCancelled(
                        "the image build was cancelled; its build containers were removed"
                    )
                raise OperationTimedOut(
                    f"the image build did not finish within {timeout:g} s; it was stopped",
                    "raise the build timeout, or make the slow step faster (see the log)",
                )
            if result.returncode is None:
                raise EngineError(f"cannot execute {self.binary!r}: {result.tail[-1] if result.tail else ''}")
            if result.returncode != 0 or not iidfile.is_file():
                self._raise_if_misconfigured(result)
                failure = buildlog.failure(result.tail)
                where = f" at {failure.step}" if failure.step else ""
                raise BuildError(
                    f"image build failed{where}: {failure.reason or f'exit status {result.returncode}'}",
                    step=failure.step,
                    output=failure.output,
                    hint=failure_hint(failure),
                )
            image_id = normalize_id(iidfile.read_text())
            return BuildResult(
                image_id=image_id,
                tags=tuple(tags),
                steps=buildlog.steps,
                cached_steps=buildlog.cached,
                duration=result.duration,
                output_tail=result.tail[-20:],
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # ------------------------------------------------------------------ run

    def _run_extra_args(self, pull: str) -> list[str]:
        return [f"--pull={pull}"]

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
        pull: str = "missing",
        files: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run ``image`` with ``args``, isolated, streaming its output to ``log``.

        Never privileged; no host mounts (except the CA bundle, read-only, when
        ``ca_bundle`` is asked for, and ``files``); no engine socket; an init process;
        no new privileges; only :data:`RUN_CAPABILITIES`; the image's own user.

        ``files`` (container path -> text) are written to a private directory on a
        tmpfs and mounted read-only, one file each (secrets given as files); they are
        removed when the container exits. ``network="isolated"`` is chute's own network
        (:mod:`.isolation`): outbound traffic, but nothing on this machine.

        Timeout: the container is stopped (and kept if ``keep``). Cancel or
        Ctrl-C: the container is removed (``rm -f``), whatever ``keep`` says.
        A non-zero exit is a result, not an error; EngineError means the
        container could not be run at all.
        """
        log = log or _noop
        _check_ref(image, "image")
        name = _check_name(name or f"chute-run-{secrets.token_hex(4)}", "container name")
        if pull not in PULL_POLICIES:
            raise EngineUsageError(f"pull policy {pull!r} is not one of {', '.join(PULL_POLICIES)}")
        if network != "default":
            _check_name(network, "network")
        for target in files or {}:
            if not _FILE_TARGET_RE.match(target) or "/../" in f"{target}/" or "/./" in f"{target}/":
                raise EngineUsageError(f"file target {target!r} must be an absolute path of letters, digits, "
                                       "'_', '.', '-' and '/'")
        if network == "isolated":
            network = self._isolated_network(log)
        if workdir is not None and not workdir.startswith("/"):
            raise EngineUsageError(f"working directory {workdir!r} must be an absolute path")
        label_args = _check_labels({MANAGED_LABEL: "1", **(labels or {})})
        limit_args = _limit_args(limits)
        run_env = dict(env or {})
        ca_args: list[str] = []
        if ca_bundle:
            if self.ca_bundle is None:
                log("chute: no CA bundle is configured (CHUTE_BUILD_CA_BUNDLE); running without one")
            else:
                ca_args = [f"--volume={self.ca_bundle}:{CA_PATH_IN_CONTAINER}:ro"]
                for ca_name in self.ca_env:
                    run_env.setdefault(ca_name, CA_PATH_IN_CONTAINER)

        # Env values and files may be secrets: keep them on a tmpfs when there is one (never on disk).
        tmp = Path(tempfile.mkdtemp(prefix="chute-run-", dir=_private_tmpfs()))
        try:
            env_file, inline_env = write_env_file(tmp, run_env)
            file_args = _write_files(tmp, files)
            argv = [
                self.binary,
                "run",
                f"--name={name}",
                "--init",
                # A run step executes a command; the image's HEALTHCHECK is for deployments
                # (and podman without systemd only logs errors trying to schedule it).
                "--no-healthcheck",
                "--security-opt=no-new-privileges",
                *(f"--cap-drop={cap}" for cap in ALL_CAPABILITIES if cap not in RUN_CAPABILITIES),
                *label_args,
                *self._run_extra_args(pull),
                *([f"--env-file={env_file}"] if env_file else []),
                *inline_env,
                *([f"--workdir={workdir}"] if workdir else []),
                *limit_args,
                *([f"--network={network}"] if network != "default" else []),
                *ca_args,
                *file_args,
                self._image_arg(image),
                *args,
            ]

            def on_abort(reason: str) -> None:
                if reason == "timeout":
                    log(f"chute: timeout after {timeout:g} s: stopping container {name}")
                    self._stop_quietly(name, self.stop_grace)
                else:
                    log(f"chute: cancelled: removing container {name}")
                    self.remove_containers([name])

            try:
                result = run_streaming(
                    argv, env=self.environ, log=log, timeout=timeout, cancel=cancel, on_abort=on_abort
                )
            except KeyboardInterrupt:
                self.remove_containers([name])  # in case it was created after the first removal
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

        if result.returncode is None and not (result.cancelled or result.timed_out):
            raise RunError(f"cannot execute {self.binary!r}: {result.tail[-1] if result.tail else ''}")
        if result.cancelled:
            self.remove_containers([name])
            return RunResult(
                None,
                name,
                cancelled=True,
                tail_lines=result.tail[-50:],
                duration=result.duration,
                removed=True,
            )
        if result.returncode == 125 and "already in use" in result.error_line():
            # Another container has this name: report it, and leave that container alone.
            raise RunError(
                f"cannot run {image!r}: a container named {name!r} already exists",
                "remove it first (remove_containers), or choose another name",
            )
        if result.returncode == 0 and not result.timed_out:
            # An attached run exits with its command's status: 0 means the container was created,
            # started and its command succeeded, so there is nothing to ask the engine (an inspect
            # costs a podman call, 0.3 to 1 s on a busy machine).
            exit_code: int | None = 0
            oom_killed = False
        else:
            info = self._inspect_container_or_none(name)
            if info is None:
                if result.timed_out:  # stopped before the engine had even created it
                    return RunResult(None, name, timed_out=True, tail_lines=result.tail[-50:], removed=True)
                self._raise_if_misconfigured(result)
                self._raise_run_failure(image, result)
            if info.status in ("created", "configured", "initialized") and result.returncode not in (0, None):
                # The engine created the container but could not start the command.
                self._raise_if_misconfigured(result, remove=name)
            exit_code = info.exit_code if info.exit_code is not None else result.returncode
            oom_killed = info.oom_killed
        removed = False
        if not keep:
            self.remove_containers([name])
            removed = True
        return RunResult(
            exit_code=exit_code,
            container_name=name,
            timed_out=result.timed_out,
            tail_lines=result.tail[-50:],
            duration=result.duration,
            removed=removed,
            oom_killed=oom_killed,
        )

    def _isolated_network(self, log: LogFn) -> str:
        """The isolated network's name once its firewall is in place, else "none" (never an open network)."""
        from .isolation import NETWORK, IsolationUnavailable, ensure_isolated

        try:
            ensure_isolated(self._capture, self.name, self.environ)
        except IsolationUnavailable as err:
            log(f"chute: {err}; running with no network at all (set CHUTE_RUN_NETWORK=default to allow "
                "the engine's default network, which reaches this machine's ports)")
            return "none"
        return NETWORK

    def _raise_run_failure(self, image: str, result: ProcessResult) -> NoReturn:
        error = result.error_line()
        if _is_missing(error) and ("image" in error.lower() or "pull" in error.lower()):
            raise ImageNotFound(
                image, "build it first, or check the name (with pull='never' nothing is pulled)"
            )
        raise RunError(f"cannot run {image!r}: {error}")

    def _stop_quietly(self, name: str, grace: float) -> None:
        with contextlib.suppress(EngineError):
            self._capture("stop", "-t", str(int(grace)), name, timeout=grace + 30)

    # ------------------------------------------------------------------ copy

    def copy_out(self, container: str, source: str, destination: str | Path) -> Path:
        """Copy ``source`` out of a (stopped) container; ``source/`` copies the directory's contents."""
        dest = Path(destination).absolute()
        if not source:
            raise EngineUsageError("copy source is empty")
        if source.endswith("/"):
            dest.mkdir(parents=True, exist_ok=True)
            src = source.rstrip("/") + "/."
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = source
        result = self._capture("cp", f"{container}:{src}", str(dest), timeout=600)
        if result.returncode != 0:
            error = result.error_line()
            hint = None
            if "container" in error.lower() and _is_missing(error):
                hint = "the container is gone: copy before the run's container is removed (keep=True)"
            elif _is_missing(error):
                hint = f"{source!r} does not exist in the container; check the path the step wrote"
            raise CopyError(f"could not copy {source!r} out of container {container!r}: {error}", hint)
        return dest

    # ------------------------------------------------------------------ push

    def _push_once(
        self, target: ImageRef, log: LogFn, cancel: threading.Event | None, workdir: Path
    ) -> tuple[str | None, str]:
        """Push ``target.engine_ref``; return (digest or None, error text)."""
        raise NotImplementedError

    def push(
        self,
        image: str,
        refs: Sequence[str],
        *,
        log: LogFn | None = None,
        retries: int = 3,
        backoff: float = 2.0,
        cancel: threading.Event | None = None,
    ) -> list[PushedImage]:
        """Tag ``image`` as each of ``refs`` and push it; return what the registry confirmed.

        A ref written ``http://host:port/name:tag`` is pushed over plain HTTP.
        Each ref gets up to ``1 + retries`` attempts, ``backoff`` seconds apart
        (doubling). A ref counts as pushed only when the engine reported its
        digest and the registry answers the same digest for the tag.
        """
        log = log or _noop
        _check_ref(image, "image")
        targets = [parse_push_ref(ref) for ref in refs]
        pushed: list[PushedImage] = []
        workdir = Path(tempfile.mkdtemp(prefix="chute-push-"))
        try:
            for target in targets:
                # No separate existence check first: a missing image fails the tag (one call less).
                tagged = self._capture("tag", self._image_arg(image), target.engine_ref)
                if tagged.returncode != 0 and _is_missing(tagged.error_line()):
                    raise ImageNotFound(image, "build the image before publishing it")
                self._check(tagged, f"tagging {image} as {target.engine_ref}")
                digest = self._push_with_retries(target, log, retries, backoff, cancel, workdir, pushed)
                pushed.append(
                    PushedImage(target.original, digest, target.registry, target.repository, target.tag)
                )
                log(f"chute: pushed {target.engine_ref}@{digest}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return pushed

    def _push_with_retries(
        self,
        target: ImageRef,
        log: LogFn,
        retries: int,
        backoff: float,
        cancel: threading.Event | None,
        workdir: Path,
        pushed: list[PushedImage],
    ) -> str:
        attempts_allowed = 1 + max(0, retries)
        attempt = 0
        error = ""
        while True:
            attempt += 1
            if cancel is not None and cancel.is_set():
                raise OperationCancelled(f"push of {target.original} was cancelled")
            error = registry.ping(target) or ""
            if not error:
                digest, error = self._push_once(target, log, cancel, workdir)
                if cancel is not None and cancel.is_set():
                    raise OperationCancelled(f"push of {target.original} was cancelled")
                if digest:
                    return self._verify_pushed(target, digest, attempt, pushed)
            retryable = not any(marker in error.lower() for marker in _NOT_RETRYABLE)
            if attempt >= attempts_allowed or not retryable:
                raise PushError(
                    f"could not push {target.engine_ref} to registry {target.registry} "
                    f"({attempt} attempt{'s' if attempt != 1 else ''}): {error}",
                    registry=target.registry,
                    ref=target.original,
                    attempts=attempt,
                    last_error=error,
                    pushed=pushed,
                    hint=self._push_hint(target, error),
                )
            delay = backoff * (2 ** (attempt - 1))
            log(
                f"chute: push to {target.registry} failed (attempt {attempt} of {attempts_allowed}): "
                f"{error}; retrying in {delay:g} s"
            )
            if cancel is not None:
                if cancel.wait(delay):
                    raise OperationCancelled(f"push of {target.original} was cancelled")
            else:
                time.sleep(delay)

    def _verify_pushed(self, target: ImageRef, digest: str, attempt: int, pushed: list[PushedImage]) -> str:
        def fail(message: str, hint: str | None = None) -> PushError:
            return PushError(
                message,
                registry=target.registry,
                ref=target.original,
                attempts=attempt,
                last_error=message,
                pushed=pushed,
                hint=hint,
            )

        if not _DIGEST_RE.match(digest):
            raise fail(f"{self.name} reported an unexpected digest {digest!r} for {target.engine_ref}")
        try:
            remote = registry.manifest_digest(target, engine=self.name, environ=self.environ)
        except registry.RegistryError as err:
            raise fail(
                f"pushed {target.engine_ref}, but could not confirm it with the registry: {err}",
                f"make sure chute can read from {target.registry} "
                f"(e.g. `{self.name} login {target.registry}`)",
            ) from err
        if remote is None:
            raise fail(
                f"the registry {target.registry} has no manifest for {target.engine_ref} after the push"
            )
        if remote != digest:
            raise fail(
                f"the registry {target.registry} reports {remote} for {target.engine_ref}, "
                f"but {self.name} pushed {digest}",
                "another push to the same tag may have happened at the same time; push again",
            )
        return digest

    def _push_hint(self, target: ImageRef, error: str) -> str:
        lowered = error.lower()
        if "http response to https client" in lowered:
            return f"the registry speaks plain HTTP: write the image name as http://{target.engine_ref}"
        if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
            return f"log in first: {self.name} login {target.registry}"
        if "x509" in lowered or "certificate" in lowered:
            return (
                "the registry's TLS certificate is not trusted: add its CA to the system bundle, "
                "or write http:// for a plain-HTTP registry"
            )
        return (
            f"is the registry running and reachable at {target.api_base}/v2/ ? "
            "Check the registry setting (CHUTE_REGISTRY or --registry)"
        )

    # ------------------------------------------------------------------ inspect

    def inspect_image(self, ref: str) -> ImageInfo:
        _check_ref(ref, "image")
        result = self._capture("image", "inspect", self._image_arg(ref))
        if result.returncode != 0:
            if _is_missing(result.error_line()):
                raise ImageNotFound(ref)
            self._check(result, f"inspecting image {ref}")
        data = _first_json(result.stdout)
        if not data:
            raise ImageNotFound(ref)
        return parse_image_info(data)

    def image_exists(self, ref: str) -> bool:
        try:
            self.inspect_image(ref)
        except ImageNotFound:
            return False
        return True

    def _inspect_container_or_none(self, name: str) -> ContainerInfo | None:
        result = self._capture("container", "inspect", name)
        if result.returncode != 0:
            if _is_missing(result.error_line()):
                return None
            self._check(result, f"inspecting container {name}")
        data = _first_json(result.stdout)
        return parse_container_info(data) if data else None

    def inspect_container(self, name: str) -> ContainerInfo:
        _check_ref(name, "container")
        info = self._inspect_container_or_none(name)
        if info is None:
            raise ContainerNotFound(name)
        return info

    # ------------------------------------------------------------------ remove / stop

    def _rm_args(self) -> list[str]:
        return ["rm", "--force"]

    def _rmi_args(self) -> list[str]:
        return ["rmi", "--force"]

    def _remove(self, base: list[str], items: Sequence[str], what: str) -> None:
        items = [i for i in items if i]
        for item in items:
            _check_ref(item, what)
        for start in range(0, len(items), 50):
            chunk = items[start : start + 50]
            result = self._capture(*base, *chunk, timeout=300)
            if result.returncode == 0:
                continue
            real_errors = [
                line
                for line in result.stderr.splitlines()
                if line.strip() and not _is_missing(line) and not line.startswith("time=")
            ]
            if real_errors:
                raise EngineError(f"removing {what}s {', '.join(chunk)} failed: {real_errors[-1]}")

    def remove_containers(self, names: Sequence[str]) -> None:
        """Remove containers (running or not); names that do not exist are ignored."""
        self._remove(self._rm_args(), names, "container")

    def containers_labelled(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the containers, in any state, that carry every one of ``labels``."""
        filters = [f"--filter=label={arg.removeprefix('--label=')}" for arg in _check_labels(labels)]
        result = self._check(self._capture("ps", "--all", "--format", "{{.Names}}", *filters, timeout=60),
                             "listing containers")
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def tag(self, image: str, ref: str) -> None:
        """Give ``image`` (an ID or name) the local name ``ref``."""
        _check_ref(image, "image")
        _check_ref(ref, "ref")
        self._check(self._capture("tag", self._image_arg(image), ref), f"tagging {image} as {ref}")

    def remove_images(self, ids: Sequence[str], *, keep_cache: bool = False) -> None:
        """Remove images by ID or name, with all their tags; missing ones are ignored.

        ``keep_cache`` keeps the untagged parent layers (``--no-prune``): removing a
        built image otherwise also removes the intermediate images that are the
        layer cache of the next build of the same Dockerfile.
        """
        args = self._rmi_args() + (["--no-prune"] if keep_cache else [])
        self._remove(args, [self._image_arg(i) for i in ids if i], "image")

    def stop(self, name: str, timeout: float = 10) -> None:
        _check_ref(name, "container")
        result = self._capture("stop", "-t", str(int(timeout)), name, timeout=timeout + 60)
        if result.returncode != 0:
            if _is_missing(result.error_line()):
                raise ContainerNotFound(name)
            self._check(result, f"stopping container {name}")
