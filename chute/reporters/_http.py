"""POSTing JSON to a code-review API: timeouts, bounded retries, errors that say what failed.

Credentials travel only in headers (never in URLs), and error messages have every secret
replaced by ``***`` in case a server echoes one back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from chute import __version__

from .base import ReportError

log = logging.getLogger("chute.reporters")

# A module-level name so tests can replace the back-off sleep without touching time.sleep
# for every other thread in the process.
backoff_sleep = time.sleep

USER_AGENT = f"chute/{__version__}"
DETAIL_LIMIT = 300


class ApiClient:
    """A small JSON-over-HTTP client for one code-review system."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        secrets: Iterable[str] = (),
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{system}: the URL must start with http:// or https://, got {base_url!r}")
        if retries < 0:
            raise ValueError(f"{system}: retries must be >= 0, got {retries}")
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self.secrets = [s for s in secrets if s]
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # One long-lived client: connections are reused between the posts of a report.
        self._client = httpx.Client(headers=self.headers, auth=auth, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def fail(self, response: httpx.Response) -> ReportError:
        """The error for an answer that turned out not to be acceptable after all."""
        detail = _detail(response) + _hint(self.system, response.status_code)
        return ReportError(self.system, "POST", str(response.url), response.status_code, self.redact(detail))

    def post(self, path: str, payload: Mapping[str, Any], ok: Iterable[int] = ()) -> httpx.Response:
        """POST ``payload`` as JSON to ``base_url + path`` (already percent-encoded).

        Retries connection failures and 5xx answers ``retries`` times with exponential
        backoff; any other non-2xx answer (unless listed in ``ok``) raises ReportError at once.
        """
        url = self.base_url + path
        accepted = set(ok)
        last_status: int | None = None
        last_detail = ""
        for attempt in range(self.retries + 1):
            if attempt:
                backoff_sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as exc:
                last_status, last_detail = None, f"{type(exc).__name__}: {exc}"
                log.warning(
                    "%s: POST %s attempt %d/%d failed: %s",
                    self.system,
                    url,
                    attempt + 1,
                    self.retries + 1,
                    self.redact(last_detail),
                )
                continue
            if response.is_success or response.status_code in accepted:
                log.info("%s: POST %s -> HTTP %d", self.system, url, response.status_code)
                return response
            last_status, last_detail = response.status_code, _detail(response)
            if response.status_code < 500:
                break
            log.warning(
                "%s: POST %s attempt %d/%d answered HTTP %d",
                self.system,
                url,
                attempt + 1,
                self.retries + 1,
                response.status_code,
            )
        if last_status is None:
            detail = f"could not reach the server after {self.retries + 1} attempts: {last_detail}"
        elif last_status >= 500:
            detail = f"server error after {self.retries + 1} attempts: {last_detail}"
        else:
            detail = last_detail + _hint(self.system, last_status)
        raise ReportError(self.system, "POST", url, last_status, self.redact(detail))


def _detail(response: httpx.Response) -> str:
    text = response.text.strip()
    if text.startswith(")]}'"):
        text = text[4:].strip()
    text = " ".join(text.split())
    if len(text) > DETAIL_LIMIT:
        text = text[:DETAIL_LIMIT] + "…"
    return text or response.reason_phrase or "(empty answer)"


def _hint(system: str, status: int) -> str:
    if status == 401:
        return f" — check the {system} credentials chute is configured with"
    if status == 403:
        return f" — the {system} account lacks permission for this (see docs/integrations.md)"
    if status == 404:
        return f" — the project or change does not exist on {system}, or the account cannot see it"
    return ""
