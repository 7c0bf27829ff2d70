"""The CLI's saved logins: ``chute login`` stores a token per server in a file only you can read.

The file is ``$CHUTE_CREDENTIALS``, else ``$XDG_CONFIG_HOME/chute/credentials``, else
``~/.config/chute/credentials``; JSON, mode 0600 in a 0700 directory, replaced
atomically. It holds, per server URL, the user and the token (the token is a secret:
it works like a password until it expires or is revoked), and which server the last
login was to (the default for later commands).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def path() -> Path:
    explicit = os.environ.get("CHUTE_CREDENTIALS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chute" / "credentials"


def load() -> dict[str, Any]:
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        return {"servers": {}}
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        return {"servers": {}}
    return data


def save(data: dict[str, Any]) -> Path:
    """Write ``data`` with mode 0600 (never readable by others, not even for a moment)."""
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", dir=p.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def default_server() -> str | None:
    server = load().get("default")
    return server if isinstance(server, str) and server else None


def entry(server: str) -> dict[str, Any] | None:
    found = load()["servers"].get(server.rstrip("/"))
    return found if isinstance(found, dict) else None


def token_for(server: str) -> str | None:
    e = entry(server)
    tok = e.get("token") if e else None
    return tok if isinstance(tok, str) and tok else None


def remember(server: str, **fields: Any) -> Path:
    data = load()
    server = server.rstrip("/")
    data["servers"][server] = fields
    data["default"] = server
    return save(data)


def forget(server: str) -> bool:
    data = load()
    server = server.rstrip("/")
    if server not in data["servers"]:
        return False
    del data["servers"][server]
    if data.get("default") == server:
        data["default"] = next(iter(data["servers"]), None)
    save(data)
    return True
