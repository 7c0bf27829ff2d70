"""The podman driver.

Builds use ``podman build --format docker`` (so HEALTHCHECK survives) with the
layer cache on. The CA bundle is bind-mounted into every RUN step with
``--volume`` (at a path under the step's private /dev, see
:data:`~.base.CA_PATH_IN_CONTAINER`) and its path handed to pip and node as
build args (see :mod:`.dockerfile`); nothing of it is written into the image.

A killed ``podman build`` leaves its RUN process and its working container
behind. Each build therefore runs with a private ``TMPDIR`` (where buildah
puts the OCI bundle of each RUN step) and a marker in its build options, so a
cancelled build's leftovers can be found and removed without touching
concurrent builds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import CA_PATH_IN_CONTAINER, EngineMisconfigured, LogFn
from .cli import ProcessResult, run_capture, run_streaming
from .driver import CliEngine, _check_ref
from .refs import ImageRef

DEFAULT_CONTAINERS_CONF = Path("/etc/chute/containers.conf")

_MISCONFIGURED = re.compile(
    r"error setting rlimit|setrlimit|rlimit type \d+|crun: .*(?:not permitted|permission denied|cgroup)",
    re.IGNORECASE,
)

MISCONFIGURED_HINT = (
    "podman on this machine needs runc and explicit ulimits. Write /etc/chute/containers.conf with\n"
    "        [containers]\n"
    '        default_ulimits = ["nofile=1024:1024","nproc=1024:1024"]\n'
    "        [engine]\n"
    '        runtime = "runc"\n'
    "      then `export CONTAINERS_CONF=/etc/chute/containers.conf` (apt-get install runc if it is missing;"
    " scripts/lib.sh configure_podman does all of this)"
)


def podman_environ(
    environ: Mapping[str, str] | None = None, default_conf: Path = DEFAULT_CONTAINERS_CONF
) -> dict[str, str]:
    """The environment podman runs with: CONTAINERS_CONF defaults to chute's known-good file."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("CONTAINERS_CONF") and default_conf.is_file():
        env["CONTAINERS_CONF"] = str(default_conf)
    return env


def _build_marker_host(marker: str) -> str:
    return f"chute-build-{marker}"


class PodmanEngine(CliEngine):
    name = "podman"
    supports_build_mounts = True

    def __init__(
        self,
        binary: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        ca_bundle: Path | str | None = "auto",
        ca_env: Sequence[str] | None = None,
    ) -> None:
        super().__init__(binary, environ=podman_environ(environ), ca_bundle=ca_bundle, ca_env=ca_env)
        self._info: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """``podman info`` (cached): storage paths and the OCI runtime."""
        if self._info is None:
            result = self._check(self._capture("info", "--format", "json"), "podman info")
            self._info = json.loads(result.stdout)
        return self._info

    def version(self) -> str:
        result = self._check(self._capture("version", "--format", "json", timeout=30), "podman version")
        return json.loads(result.stdout).get("Client", {}).get("Version", "")

    # ------------------------------------------------------------------ errors

    def _raise_if_misconfigured(self, result: ProcessResult, remove: str | None = None) -> None:
        text = "\n".join(result.tail) + "\n" + result.stderr
        if _MISCONFIGURED.search(text):
            if remove:
                self.remove_containers([remove])
            conf = self.environ.get("CONTAINERS_CONF", "(unset)")
            raise EngineMisconfigured(
                f"podman cannot start containers on this machine (CONTAINERS_CONF={conf}): "
                f"{result.error_line()}",
                MISCONFIGURED_HINT,
            )

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
        argv = [
            self.binary,
            "build",
            "--format=docker",
            "--layers=true",
            "--force-rm=true",
            f"--pull={pull}",
            f"--iidfile={iidfile}",
            f"--file={dockerfile}",
            # Invisible to the build (it only lands in the build's saved options),
            # it lets _cleanup_aborted_build find this build's working containers.
            f"--add-host={_build_marker_host(marker)}:127.0.0.1",
        ]
        if target:
            argv.append(f"--target={target}")
        argv += [f"--tag={tag}" for tag in tags]
        argv += [f"--label={key}={value}" for key, value in (labels or {}).items()]
        argv += [f"--build-arg={key}={value}" for key, value in build_args.items()]
        if ignorefile is not None:
            argv.append(f"--ignorefile={ignorefile}")
        if self.ca_bundle is not None:
            argv.append(f"--volume={self.ca_bundle}:{CA_PATH_IN_CONTAINER}:ro")
        argv.append(str(context))
        return argv

    def _build_env(self, workdir: Path) -> dict[str, str]:
        tmp = workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        return {**self.environ, "TMPDIR": str(tmp)}

    def _cleanup_aborted_build(self, workdir: Path, marker: str, log: LogFn) -> None:
        """Kill this build's RUN processes and remove its working containers."""
        tmp = str(workdir / "tmp") + os.sep
        with contextlib.suppress(Exception):
            runtime = self.info().get("host", {}).get("ociRuntime", {}).get("path") or "runc"
            listing = run_capture([runtime, "list", "--format", "json"], env=self.environ, timeout=30)
            for entry in json.loads(listing.stdout or "null") or []:
                if str(entry.get("bundle", "")).startswith(tmp):
                    run_capture([runtime, "kill", entry["id"], "KILL"], env=self.environ, timeout=30)
                    run_capture([runtime, "delete", "--force", entry["id"]], env=self.environ, timeout=30)
                    log(f"chute: killed build step process {entry['id']}")
        leftovers = self._marked_build_containers(marker)
        if leftovers:
            self.remove_containers(leftovers)
            log(f"chute: removed {len(leftovers)} build container(s) of the cancelled build")

    def _marked_build_containers(self, marker: str) -> list[str]:
        """IDs of buildah working containers whose build options carry ``marker``."""
        store = self.info().get("store", {})
        graphroot, driver = store.get("graphRoot"), store.get("graphDriverName")
        if not graphroot or not driver:
            return []
        listing = self._capture("ps", "--all", "--external", "--format", "json")
        found = []
        wanted = f"{_build_marker_host(marker)}:"
        for entry in json.loads(listing.stdout or "null") or []:
            cid = entry.get("Id", "")
            state_file = Path(graphroot) / f"{driver}-containers" / cid / "userdata" / "buildah.json"
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                continue
            hosts = (state.get("CommonBuildOpts") or {}).get("AddHost") or []
            if any(str(h).startswith(wanted) for h in hosts):
                found.append(cid)
        return found

    # ------------------------------------------------------------------ push

    def _push_once(
        self, target: ImageRef, log: LogFn, cancel: threading.Event | None, workdir: Path
    ) -> tuple[str | None, str]:
        digestfile = workdir / f"digest-{len(list(workdir.iterdir()))}"
        argv = [self.binary, "push", f"--digestfile={digestfile}"]
        if target.insecure:
            argv.append("--tls-verify=false")
        argv.append(target.engine_ref)
        log(f"$ podman push {target.engine_ref}")
        result = run_streaming(argv, env=self.environ, log=log, timeout=self.push_timeout, cancel=cancel)
        if result.ok and digestfile.is_file():
            digest = digestfile.read_text().strip()
            if digest:
                return digest, ""
        if result.timed_out:
            return None, f"the push did not finish within {self.push_timeout:g} s"
        return None, result.error_line()

    # ------------------------------------------------------------------ inspect / remove

    def image_exists(self, ref: str) -> bool:
        _check_ref(ref, "image")
        result = self._capture("image", "exists", ref)
        if result.returncode in (0, 1):
            return result.returncode == 0
        self._check(result, f"checking for image {ref}")
        return False

    def _rm_args(self) -> list[str]:
        # --time=0: a container being removed is being abandoned; don't wait for it.
        return ["rm", "--force", "--ignore", "--time=0"]

    def _rmi_args(self) -> list[str]:
        return ["rmi", "--force", "--ignore"]
