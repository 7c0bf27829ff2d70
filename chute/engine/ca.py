"""Which CA bundle builds (and, on request, run containers) get to see, and who is told about it.

On machines behind a TLS-intercepting proxy, pip and npm inside a container
fail unless they trust the proxy's CA, which the host has in its bundle. The
bundle is bind-mounted read-only at :data:`~chute.engine.base.CA_PATH_IN_CONTAINER`
for the duration of each RUN step, and a few variables (``PIP_CERT``,
``NODE_EXTRA_CA_CERTS``) point at it; it is never copied into an image.

``CHUTE_BUILD_CA_BUNDLE`` selects the bundle: unset means the host's
``/etc/ssl/certs/ca-certificates.crt`` when that file exists, an empty value
disables the mount, any other value is the path of the bundle to use.
``CHUTE_BUILD_CA_ENV`` (comma-separated names) replaces the list of variables,
e.g. ``PIP_CERT,NODE_EXTRA_CA_CERTS,REQUESTS_CA_BUNDLE,CURL_CA_BUNDLE``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from .base import CA_ENV_NAMES, EngineUsageError

ENV_VAR = "CHUTE_BUILD_CA_BUNDLE"
ENV_NAMES_VAR = "CHUTE_BUILD_CA_ENV"
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve_ca_bundle(
    environ: Mapping[str, str] | None = None, host_bundle: Path = HOST_BUNDLE
) -> Path | None:
    """The bundle to mount, or None; raise if the variable names a file that is not there."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR)
    if value is None:
        return host_bundle if host_bundle.is_file() else None
    if value.strip() == "":
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise EngineUsageError(
            f"{ENV_VAR} is set to {value!r}, which is not a readable file",
            f"point it at a PEM bundle (e.g. {HOST_BUNDLE}), "
            "or set it to an empty value to mount no CA bundle",
        )
    return path.resolve()


def resolve_ca_env_names(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The variables that point at the mounted bundle."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_NAMES_VAR)
    if value is None:
        return CA_ENV_NAMES
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    bad = [n for n in names if not _NAME_RE.match(n)]
    if bad:
        raise EngineUsageError(
            f"{ENV_NAMES_VAR} contains invalid variable names: {', '.join(bad)}",
            "give a comma-separated list such as PIP_CERT,NODE_EXTRA_CA_CERTS",
        )
    return names


def ca_explicitly_configured(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_VAR, "").strip())
