"""Integration fixtures: real podman (CONTAINERS_CONF as .ci/run sets it) and a real registry."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CONF = "/etc/chute/containers.conf"


def _podman_ok() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it)"
    if not os.environ.get("CONTAINERS_CONF") and os.path.exists(CONF):
        os.environ["CONTAINERS_CONF"] = CONF
    r = subprocess.run(["podman", "image", "exists", "localhost/debian:bookworm"], capture_output=True)
    if r.returncode != 0:
        return "base image localhost/debian:bookworm is missing (.ci/run makes it with debootstrap)"
    return None


@pytest.fixture(scope="session")
def podman() -> None:
    why = _podman_ok()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT``: CHUTE_TEST_REGISTRY (from .ci/run) or a docker-registry of our own."""
    url = os.environ.get("CHUTE_TEST_REGISTRY")
    if url:
        yield url
        return
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (.ci/run installs it)")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    cfg = root / "config.yml"
    cfg.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {root}/data}}\n"
                   f"  delete: {{enabled: true}}\nhttp: {{addr: \"127.0.0.1:{port}\"}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def leftover_containers(label_value: str) -> list[str]:
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"label=chute.run={label_value}", "--format",
                          "{{.Names}}"], capture_output=True, text=True).stdout
    return out.split()


def write_repo(root: Path, files: dict[str, str]) -> Path:
    from tests.conftest import make_repo

    return make_repo(root, files=files)
