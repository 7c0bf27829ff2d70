"""Which CA bundle builds (and, on request, run containers) get to see.

On machines behind a TLS-intercepting proxy, pip and npm inside a container
fail unless they trust the proxy's CA, which the host has in its bundle. The
bundle is bind-mounted read-only for the duration of each RUN step; it is
never copied into an image.

``CHUTE_BUILD_CA_BUNDLE`` selects it: unset means the host's
``/etc/ssl/certs/ca-certificates.crt`` when that file exists, an empty value
disables the mount, any other value is the path of the bundle to use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .base import EngineUsageError

ENV_VAR = "CHUTE_BUILD_CA_BUNDLE"
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


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


def ca_explicitly_configured(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_VAR, "").strip())
