"""The agent side of the agent protocol (see chute.server.api.agents)."""

from __future__ import annotations

import time
from typing import Any

import httpx


class LostJob(Exception):
    """The server gave the job to someone else (our lease expired)."""


class AgentClient:
    def __init__(self, server: str, token: str, name: str, *, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.name = name
        self.http = httpx.Client(base_url=self.server, timeout=httpx.Timeout(timeout, connect=5.0),
                                 headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any], *, retries: int = 5,
              timeout: float | None = None) -> httpx.Response:
        """POST with bounded retries on connection errors and 5xx (the server may be restarting)."""
        delay = 0.5
        last: Exception | None = None
        for _ in range(retries):
            try:
                kwargs: dict[str, Any] = {"json": body}
                if timeout is not None:
                    kwargs["timeout"] = timeout
                r = self.http.post(path, **kwargs)
                if r.status_code < 500:
                    return r
                last = RuntimeError(f"{path}: HTTP {r.status_code} {r.text[:200]}")
            except httpx.TransportError as exc:
                last = exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise ConnectionError(f"chute server {self.server} unreachable: {last}")

    def claim(self, wait: float = 20.0) -> dict[str, Any] | None:
        r = self._post("/api/v1/agents/claim", {"agent": self.name, "wait": wait}, timeout=wait + 15)
        if r.status_code == 204:
            return None
        r.raise_for_status()
        return r.json()

    def heartbeat(self, job_id: int) -> str:
        r = self._post(f"/api/v1/jobs/{job_id}/heartbeat", {"agent": self.name}, retries=2)
        r.raise_for_status()
        return str(r.json()["status"])

    def _held(self, r: httpx.Response) -> None:
        if r.status_code == 409:
            raise LostJob(r.json().get("detail", "job lost"))
        r.raise_for_status()

    def graph(self, job_id: int, graph: dict[str, Any]) -> None:
        self._held(self._post(f"/api/v1/jobs/{job_id}/graph", {"agent": self.name, "graph": graph}))

    def stage(self, job_id: int, stage: str, status: str, error: str = "",
              exports: dict[str, Any] | None = None) -> None:
        body = {"agent": self.name, "stage": stage, "status": status, "error": error, "exports": exports}
        self._held(self._post(f"/api/v1/jobs/{job_id}/stage", body))

    def logs(self, job_id: int, chunks: list[dict[str, Any]]) -> None:
        self._held(self._post(f"/api/v1/jobs/{job_id}/logs", {"agent": self.name, "chunks": chunks}))

    def secrets(self, job_id: int) -> tuple[dict[str, str], list[str]]:
        """The credentials of a trusted job we hold: (name -> value, names not defined)."""
        r = self._post(f"/api/v1/jobs/{job_id}/secrets", {"agent": self.name})
        if r.status_code == 403:
            raise PermissionError(r.json().get("detail", "secrets refused"))
        self._held(r)
        body = r.json()
        return dict(body.get("secrets") or {}), list(body.get("missing") or [])

    def complete(self, job_id: int, result: dict[str, Any]) -> None:
        self._held(self._post(f"/api/v1/jobs/{job_id}/complete", {"agent": self.name, "result": result},
                              retries=10))
