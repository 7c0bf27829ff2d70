"""The CLI's view of a chute server: where it is, which token to use, and clear errors."""

from __future__ import annotations

import os
from typing import Any

import httpx

from chute.paths import chute_home

DEFAULT_SERVER = "http://127.0.0.1:8080"


class ClientError(Exception):
    """A call to the server failed; the message says what to do."""


def server_url(explicit: str | None = None) -> str:
    """``--server``, else ``$CHUTE_SERVER``, else the server of the last ``chute login``, else the local one."""
    from chute import credentials

    return (explicit or os.environ.get("CHUTE_SERVER") or credentials.default_server() or DEFAULT_SERVER).rstrip("/")


def token(explicit: str | None = None, server: str | None = None) -> str | None:
    """``--token``, else ``$CHUTE_TOKEN``, else the token ``chute login`` saved for ``server``, else the
    local server's admin token file."""
    if explicit:
        return explicit
    if os.environ.get("CHUTE_TOKEN"):
        return os.environ["CHUTE_TOKEN"]
    if server:
        from chute import credentials

        saved = credentials.token_for(server)
        if saved:
            return saved
    path = chute_home() / "admin-token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Client:
    def __init__(self, server: str | None = None, tok: str | None = None, timeout: float = 60.0) -> None:
        self.server = server_url(server)
        self.token = token(tok, self.server)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the chute server at {self.server} ({exc}); start it with "
                              "`chute serve` or pass --server / set CHUTE_SERVER") from None
        if r.status_code == 401:
            raise ClientError(f"the server at {self.server} refused the token: "
                              f"{_detail(r)}; log in with `chute login`, or pass --token or set CHUTE_TOKEN")
        if r.status_code == 403:
            raise ClientError(f"not allowed: {_detail(r)}")
        if r.status_code >= 400:
            raise ClientError(f"{method} {path} failed ({r.status_code}): {_detail(r)}")
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=body, **kw)


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict):
        msg = body.get("detail") or body.get("error") or body
        if isinstance(msg, list):  # pydantic validation errors
            msg = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg')}" for e in msg)
        hint = body.get("hint")
        return f"{msg}" + (f" (hint: {hint})" if hint else "")
    return str(body)
