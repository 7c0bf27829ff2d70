"""Real services for the engine tests: a docker-registry, and podman's Docker-compatible API.

Plain helpers (not fixtures), so both engine test modules can use them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

CONTAINERS_CONF = "/etc/chute/containers.conf"


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF") and Path(CONTAINERS_CONF).is_file():
        env["CONTAINERS_CONF"] = CONTAINERS_CONF
    return env


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(), check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (libxcrypt does bcrypt; no extra package needed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    # Cost 4 (16 rounds): the registry checks the hash on every request of a push.
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def start_registry(state: Path, users: dict[str, str] | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """Debian's docker-registry on a free 127.0.0.1 port (config as in machine.md §9).

    With ``users``, the registry requires HTTP basic auth (htpasswd).
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        raise FileNotFoundError("docker-registry")
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    config = state / "registry.yml"
    auth = ""
    if users:
        htpasswd = state / "htpasswd"
        htpasswd.write_text("".join(f"{user}:{bcrypt_hash(pw)}\n" for user, pw in users.items()))
        auth = f"auth:\n  htpasswd: {{realm: chute-test, path: {htpasswd}}}\n"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {state / 'storage'}}}\n"
        "  delete: {enabled: true}\n"
        f'http: {{addr: "127.0.0.1:{port}"}}\n' + auth
    )
    log = open(state / "registry.log", "wb")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/v2/", timeout=1).status_code in (200, 401), 20, f"{url}/v2/")
    return url, proc


def start_podman_service(state: Path, insecure_registries: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
    """``podman system service`` on a private socket (machine.md §4), for the docker CLI.

    Its registries.conf marks the test registry as plain HTTP, as a docker
    daemon's ``insecure-registries`` would.
    """
    sock = state / "podman.sock"
    registries = state / "registries.conf"
    registries.write_text(
        "unqualified-search-registries = []\n"
        + "".join(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n' for host in insecure_registries)
    )
    env = {**podman_env(), "CONTAINERS_REGISTRIES_CONF": str(registries)}
    log = open(state / "podman-service.log", "wb")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    transport = httpx.HTTPTransport(uds=str(sock))

    def ping() -> bool:
        with httpx.Client(transport=transport, timeout=1) as client:
            return client.get("http://d/_ping").text == "OK"

    wait_until(ping, 20, f"podman system service on {sock}")
    return f"unix://{sock}", proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def manifest_head(url: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    accept = (
        "application/vnd.docker.distribution.manifest.v2+json, "
        "application/vnd.oci.image.manifest.v1+json, "
        "application/vnd.docker.distribution.manifest.list.v2+json, "
        "application/vnd.oci.image.index.v1+json"
    )
    return httpx.head(url, headers={"Accept": accept}, timeout=10, auth=auth)


def build_containers_with_label(key: str, value: str) -> list[str]:
    """Build (buildah) containers whose image carries ``key=value``: a build's leftovers.

    Tests build from a base image with a unique label, so this finds their
    leftovers and never those of other builds running on the machine.
    """
    listing = json.loads(podman("ps", "--all", "--external", "--format", "json").stdout or "[]")
    by_image: dict[str, list[str]] = {}
    for entry in listing:
        image = entry.get("ImageID") or entry.get("Image")
        if image:
            by_image.setdefault(image, []).append(entry["Id"])
    found: list[str] = []
    images = sorted(by_image)
    # One inspect per 100 images: a machine with many leftover build containers (killed builds)
    # made one call per container take minutes.
    for start in range(0, len(images), 100):
        batch = images[start:start + 100]
        inspected = podman("image", "inspect", *batch, check=False)
        if inspected.returncode != 0:  # an image vanished meanwhile: look at the batch one by one
            results = [podman("image", "inspect", i, check=False) for i in batch]
            docs = [json.loads(r.stdout)[0] for r in results if r.returncode == 0]
        else:
            docs = json.loads(inspected.stdout)
        for doc in docs:
            if (doc.get("Labels") or {}).get(key) == value:
                found += [c for i in batch if doc.get("Id", "").startswith(i) or i.startswith(doc.get("Id", "-"))
                          for c in by_image[i]]
    return found
