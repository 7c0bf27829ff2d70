"""Health gates: is a new revision healthy in time, and does it stay healthy?

Each tick combines up to three checks, each answering pass, fail or wait:

* the container/rollout check of the target (a hard failure, such as an exited
  container, ends the gate at once);
* an HTTP probe (the status must be one of ``expect``; a refused connection is
  "wait" while the revision starts, and a failure once it serves);
* a Prometheus query compared with ``max``/``min``.

Phase 1, :meth:`HealthGate.until_healthy`: ``success_threshold`` passing ticks
in a row within ``within`` seconds; ``failure_threshold`` failing ticks in a
row fail early. Phase 2, :meth:`HealthGate.stays_healthy`: no run of
``failure_threshold`` failing ticks for ``stable_for`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .environments import HealthPolicy, PrometheusCheck

PASS = "pass"
FAIL = "fail"
WAIT = "wait"
FATAL = "fatal"  # e.g. the container exited: no point in waiting


@dataclass(frozen=True)
class Check:
    state: str  # PASS, FAIL, WAIT or FATAL
    detail: str = ""


@dataclass
class Verdict:
    healthy: bool
    phase: str  # "within" or "stable"
    reason: str
    elapsed: float
    ticks: int
    last: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "healthy": self.healthy,
            "reason": self.reason,
            "elapsed": round(self.elapsed, 3),
            "ticks": self.ticks,
            "last": dict(self.last),
        }


def http_check(client: httpx.Client, url: str, expect: tuple[int, ...], timeout: float) -> Check:
    try:
        resp = client.get(url, timeout=timeout)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return Check(WAIT, f"GET {url}: {type(exc).__name__}: {exc}")
    except httpx.TimeoutException:
        return Check(FAIL, f"GET {url}: no answer within {timeout:g}s")
    except httpx.HTTPError as exc:
        return Check(FAIL, f"GET {url}: {exc}")
    if resp.status_code in expect:
        return Check(PASS, f"GET {url}: {resp.status_code}")
    return Check(FAIL, f"GET {url}: {resp.status_code}, expected {', '.join(map(str, expect))}")


def prometheus_value(client: httpx.Client, check: PrometheusCheck, timeout: float) -> float | None:
    """The query's value (a scalar, or a one-element vector); None when there is no data."""
    resp = client.get(check.url.rstrip("/") + "/api/v1/query", params={"query": check.query}, timeout=timeout)
    resp.raise_for_status()
    body = resp.json()
    if body.get("status") != "success":
        raise ValueError(f"prometheus: {body.get('error') or body}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    if data["resultType"] == "vector":
        result = data["result"]
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"the query returns {len(result)} series; aggregate it to one (e.g. sum(...))")
        return float(result[0]["value"][1])
    raise ValueError(f"the query returns a {data['resultType']}; it must return one number")


def prometheus_check(client: httpx.Client, check: PrometheusCheck, timeout: float) -> Check:
    try:
        value = prometheus_value(client, check, timeout)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Check(WAIT, f"prometheus {check.query!r}: {exc}")
    if value is None:
        return Check(PASS if check.no_data == "pass" else WAIT, f"prometheus {check.query!r}: no data")
    if check.max is not None and value > check.max:
        return Check(FAIL, f"prometheus {check.query!r} = {value:g} > max {check.max:g}")
    if check.min is not None and value < check.min:
        return Check(FAIL, f"prometheus {check.query!r} = {value:g} < min {check.min:g}")
    return Check(PASS, f"prometheus {check.query!r} = {value:g}")


class HealthGate:
    """Runs the two phases for one revision.

    ``http_url`` is the full probe URL (or None); ``container`` is the target's
    check of the revision's containers or rollout (or None).
    """

    def __init__(
        self,
        policy: HealthPolicy,
        *,
        http_url: str | None,
        container: Callable[[], Check] | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.http_url = http_url
        self.container = container if policy.container else None
        self._own_client = client is None
        self.client = client or httpx.Client(headers={"User-Agent": "chute-health"})
        self.sleep = sleep
        self.clock = clock
        self.container_every = 1.0
        self._container_last: Check | None = None
        self._container_at = 0.0

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> HealthGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tick(self) -> dict[str, Check]:
        p = self.policy
        checks: dict[str, Check] = {}
        if self.container is not None:
            # Asking podman costs 0.1-0.5 s; while the container is fine, ask at most once a second so
            # that the HTTP probe keeps its interval.
            now = self.clock()
            if (
                self._container_last is None
                or self._container_last.state != PASS
                or now - self._container_at >= self.container_every
            ):
                self._container_last, self._container_at = self.container(), now
            checks["container"] = self._container_last
            if checks["container"].state == FATAL:
                return checks
        if self.http_url:
            checks["http"] = http_check(self.client, self.http_url, p.expect, p.timeout)
        if p.prometheus is not None:
            checks["prometheus"] = prometheus_check(self.client, p.prometheus, p.timeout)
        return checks

    @staticmethod
    def _combine(checks: dict[str, Check], *, serving: bool) -> str:
        states = [c.state for c in checks.values()]
        if FATAL in states:
            return FATAL
        if FAIL in states:
            return FAIL
        if WAIT in states:
            # Once it serves, "not answering" is a failure; no data from Prometheus stays "wait".
            http_waits = "http" in checks and checks["http"].state == WAIT
            container_waits = "container" in checks and checks["container"].state == WAIT
            return FAIL if serving and (http_waits or container_waits) else WAIT
        return PASS

    def until_healthy(self) -> Verdict:
        """Phase 1: healthy within ``within`` seconds."""
        p = self.policy
        start = self.clock()
        deadline = start + p.within
        passes = fails = ticks = 0
        last: dict[str, Check] = {}
        while True:
            t0 = self.clock()
            last = self.tick()
            ticks += 1
            state = self._combine(last, serving=False)
            if state == PASS:
                passes, fails = passes + 1, 0
                if passes >= p.success_threshold:
                    return self._verdict(True, "within", "healthy", start, ticks, last)
            elif state == FATAL:
                return self._verdict(False, "within", "it cannot become healthy", start, ticks, last)
            elif state == FAIL:
                passes, fails = 0, fails + 1
                if fails >= p.failure_threshold:
                    return self._verdict(
                        False, "within", f"{fails} failed checks in a row", start, ticks, last
                    )
            else:
                passes = 0
            if self.clock() >= deadline:
                return self._verdict(False, "within", f"not healthy within {p.within:g}s", start, ticks, last)
            self.sleep(max(0.0, min(p.interval - (self.clock() - t0), deadline - self.clock())))

    def stays_healthy(self, duration: float | None = None) -> Verdict:
        """Phase 2: no run of ``failure_threshold`` failures for ``stable_for`` seconds."""
        p = self.policy
        duration = p.stable_for if duration is None else duration
        start = self.clock()
        end = start + duration
        fails = ticks = 0
        last: dict[str, Check] = {}
        while True:
            t0 = self.clock()
            last = self.tick()
            ticks += 1
            state = self._combine(last, serving=True)
            if state == FATAL:
                return self._verdict(False, "stable", "it stopped being able to serve", start, ticks, last)
            if state == FAIL:
                fails += 1
                if fails >= p.failure_threshold:
                    return self._verdict(
                        False, "stable", f"{fails} failed checks in a row while serving", start, ticks, last
                    )
            else:
                fails = 0
            if self.clock() >= end:
                return self._verdict(True, "stable", f"stayed healthy for {duration:g}s", start, ticks, last)
            self.sleep(max(0.0, min(p.interval - (self.clock() - t0), end - self.clock())))

    def _verdict(
        self, ok: bool, phase: str, reason: str, start: float, ticks: int, last: dict[str, Check]
    ) -> Verdict:
        detail = {k: f"{c.state}: {c.detail}" for k, c in last.items()}
        if not ok and last:
            # The failing checks first, then the rest: a timeout says what was still missing.
            order = {FATAL: 0, FAIL: 1, WAIT: 2, PASS: 3}
            details = [c.detail for c in sorted(last.values(), key=lambda c: order[c.state]) if c.detail]
            if details:
                reason = f"{reason}: " + "; ".join(details)
        return Verdict(ok, phase, reason, self.clock() - start, ticks, detail)
