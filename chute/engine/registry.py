"""Talking to a registry directly: is it up, and which manifest does a tag point at.

After the engine says a push worked, chute asks the registry itself
(``HEAD /v2/<name>/manifests/<tag>``) and only reports the image as published
if the digest the registry answers with is the one the engine pushed.
httpx is imported here, not at ``import chute.engine`` time.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .refs import DOCKER_HUB, ImageRef

if TYPE_CHECKING:
    import ssl

    import httpx

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class RegistryError(Exception):
    """The registry could not be asked, or answered something unexpected."""


def _ssl_context() -> ssl.SSLContext:
    # The system trust store, like podman and docker use (and which holds a proxy's CA).
    import ssl

    return ssl.create_default_context()


def _client(timeout: float) -> httpx.Client:
    import httpx

    return httpx.Client(timeout=timeout, verify=_ssl_context(), follow_redirects=True)


def ping(ref: ImageRef, timeout: float = 5.0) -> str | None:
    """None if ``/v2/`` answers (any status below 500, 401 included); else why it did not."""
    import httpx

    url = f"{ref.api_base}/v2/"
    try:
        with _client(timeout) as client:
            response = client.get(url)
    except httpx.HTTPError as err:
        return f"{url}: {_describe(err)}"
    if response.status_code >= 500:
        return f"{url}: HTTP {response.status_code}"
    return None


def _describe(err: Exception) -> str:
    text = str(err) or type(err).__name__
    if "connection refused" in text.lower():
        return "connection refused"
    if "WRONG_VERSION_NUMBER" in text:
        # A TLS handshake answered in plain text: the same failure podman reports this way.
        return "server gave HTTP response to HTTPS client (the registry speaks plain HTTP)"
    return text


# --------------------------------------------------------------------------- credentials


def auth_files(engine: str, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where podman/docker keep registry logins, most specific first."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME", str(Path.home())))
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files: list[Path] = []
    if engine == "podman":
        if env.get("REGISTRY_AUTH_FILE"):
            files.append(Path(env["REGISTRY_AUTH_FILE"]))
        runtime = env.get("XDG_RUNTIME_DIR") or f"/run/containers/{os.getuid()}"
        files.append(Path(runtime) / "containers" / "auth.json")
        if env.get("XDG_RUNTIME_DIR"):
            files.append(Path(f"/run/containers/{os.getuid()}/auth.json"))
        files.append(Path(env.get("XDG_CONFIG_HOME", str(home / ".config"))) / "containers" / "auth.json")
    files.append(docker_dir / "config.json")
    return files


def find_credentials(
    registry: str, engine: str, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """The login stored for ``registry`` by ``podman login``/``docker login``, if any."""
    keys = {registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"}
    if registry == DOCKER_HUB:
        keys |= {"https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"}
    for path in auth_files(engine, environ):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = data.get("auths") if isinstance(data, dict) else None
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if key.rstrip("/") in keys or key in keys:
                encoded = entry.get("auth") if isinstance(entry, dict) else None
                if not encoded:
                    continue
                try:
                    user, _, password = base64.b64decode(encoded).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                return user, password
    return None


_PARAM_RE = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^,\s]+)')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth/token",service="reg"`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _PARAM_RE.finditer(rest):
        if m.group(1):
            params[m.group(1).lower()] = m.group(2)
        else:
            params[m.group(3).lower()] = m.group(4)
    return scheme.lower(), params


# --------------------------------------------------------------------------- manifests


def manifest_digest(
    ref: ImageRef,
    *,
    engine: str = "podman",
    timeout: float = 10.0,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The digest the registry reports for ``ref``'s tag, or None if the tag does not exist."""
    import httpx

    url = ref.manifest_url()
    headers = {"Accept": MANIFEST_ACCEPT}
    try:
        with _client(timeout) as client:
            response = client.head(url, headers=headers)
            if response.status_code == 401:
                auth = _authorize(client, ref, response, engine, environ)
                if auth is not None:
                    response = client.head(url, headers={**headers, "Authorization": auth})
    except httpx.HTTPError as err:
        raise RegistryError(f"HEAD {url}: {_describe(err)}") from err
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise RegistryError(f"HEAD {url}: HTTP {response.status_code}")
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        raise RegistryError(f"HEAD {url}: the registry sent no Docker-Content-Digest header")
    return digest


def _authorize(
    client: httpx.Client,
    ref: ImageRef,
    response: httpx.Response,
    engine: str,
    environ: Mapping[str, str] | None,
) -> str | None:
    """The Authorization header value answering a 401 challenge, or None if we cannot."""
    scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
    creds = find_credentials(ref.registry, engine, environ)
    if scheme == "basic":
        if creds is None:
            return None
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    if scheme != "bearer" or "realm" not in params:
        return None
    query = {"scope": params.get("scope") or f"repository:{ref.repository}:pull"}
    if params.get("service"):
        query["service"] = params["service"]
    token_response = client.get(params["realm"], params=query, auth=creds)
    if token_response.status_code != 200:
        return None
    body = token_response.json()
    token = body.get("token") or body.get("access_token")
    return f"Bearer {token}" if token else None
