"""The agent side of the agent protocol (see chute.server.api.agents)."""

from __future__ import annotations

import time
from typing import Any

import httpx

JOB_PATIENCE = 600.0  # seconds a running job's calls wait for its server to come back


class LostJob(Exception):
    """The server gave the job to someone else (our lease expired)."""


class AgentClient:
    def __init__(self, server: str, token: str, name: str, *, timeout: float = 30.0,
                 patience: float = JOB_PATIENCE) -> None:
        self.server = server.rstrip("/")
        self.name = name
        self.patience = patience
        self.http = httpx.Client(base_url=self.server, timeout=httpx.Timeout(timeout, connect=5.0),
                                 headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any], *, retries: int = 5, patience: float | None = None,
              timeout: float | None = None) -> httpx.Response:
        """POST, retrying connection errors and 5xx (the server may be restarting).

        ``retries`` attempts; with ``patience``, a server that does not answer (no connection,
        or 502/503/504 from a proxy in front of it) is tried until that many seconds have
        passed: a job's calls wait out a server restart rather than give up on the job (the
        restarted server gives running jobs a new lease, so the work still counts). Another
        5xx is an answer, an error of the server: ``retries`` tries only.
        """
        delay = 0.5
        deadline = time.monotonic() + patience if patience is not None else None
        attempt = 0
        last: Exception | None = None
        while True:
            attempt += 1
            away = True
            try:
                kwargs: dict[str, Any] = {"json": body}
                if timeout is not None:
                    kwargs["timeout"] = timeout
                r = self.http.post(path, **kwargs)
                if r.status_code < 500:
                    return r
                last = RuntimeError(f"{path}: HTTP {r.status_code} {r.text[:200]}")
                away = r.status_code in (502, 503, 504)
            except httpx.TransportError as exc:
                last = exc
            wait_until = deadline if away else None  # the server is away: wait for it, within patience
            spent = attempt >= retries if wait_until is None else time.monotonic() + delay > wait_until
            if spent:
                raise ConnectionError(f"chute server {self.server} unreachable: {last}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

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
        self._held(self._post(f"/api/v1/jobs/{job_id}/graph", {"agent": self.name, "graph": graph},
                              patience=self.patience))

    def stage(self, job_id: int, stage: str, status: str, error: str = "",
              exports: dict[str, Any] | None = None) -> None:
        body = {"agent": self.name, "stage": stage, "status": status, "error": error, "exports": exports}
        self._held(self._post(f"/api/v1/jobs/{job_id}/stage", body, patience=self.patience))

    def logs(self, job_id: int, chunks: list[dict[str, Any]]) -> None:
        self._held(self._post(f"/api/v1/jobs/{job_id}/logs", {"agent": self.name, "chunks": chunks},
                              patience=self.patience))

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
                              patience=self.patience))
