"""The ``environments`` section of ``.pipeline/config.yaml`` (a chute extension).

One mapping per environment: where it runs (target), how it is reached (port),
when it is deployed (auto/from/after, freezes, windows), how health is judged
(health) and what happens when it is not healthy (rollback). Every problem in
the section is reported at once, located at file:line:column, as a
:class:`~chute.config.ConfigError` (exit 4).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chute.config import EXIT_INVALID, ConfigError, Document, Problem, format_path

TARGETS = ("podman", "kubernetes")
ROLLBACK_MODES = ("auto", "manual")
DEFAULT_CONTAINER_PORT = 8080

_ENV_KEYS = (
    "target",
    "port",
    "context",
    "namespace",
    "kubeconfig",
    "auto",
    "from",
    "branch",
    "after",
    "health",
    "rollback",
    "values",
    "freeze",
    "windows",
    "chart",
)
_HEALTH_KEYS = (
    "http",
    "url",
    "expect",
    "within",
    "stable_for",
    "interval",
    "timeout",
    "success_threshold",
    "failure_threshold",
    "container",
    "prometheus",
)
_PROM_KEYS = ("url", "query", "max", "min", "no_data")
_VALUES_KEYS = ("port", "env", "replicas", "resources", "secrets")
_SECRET_KEYS = ("id", "name")
_RESOURCES_KEYS = ("requests", "limits")
_RESOURCE_NAMES = ("cpu", "memory")
_FREEZE_KEYS = ("from", "to", "reason")
_WINDOW_KEYS = ("days", "from", "to", "timezone")
_CHART_KEYS = ("path", "name", "repo", "version")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|h|m|s))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # as chute.secrets.store.NAME_RE


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class PrometheusCheck:
    """A PromQL query whose value must stay within ``min``/``max``."""

    url: str
    query: str
    max: float | None = None
    min: float | None = None
    no_data: str = "fail"  # "fail": an empty result is unhealthy; "pass": it is ignored


@dataclass(frozen=True)
class HealthPolicy:
    """How a new revision is judged. Durations are seconds."""

    http: str | None = "/healthz"  # path probed on the revision; None disables HTTP probing
    url: str | None = None  # an absolute URL instead (e.g. the ingress of a Kubernetes service)
    expect: tuple[int, ...] = (200,)
    within: float = 60.0  # the revision must be healthy this soon after it starts
    stable_for: float = 5.0  # ... and then stay healthy this long while serving
    interval: float = 0.5
    timeout: float = 2.0
    success_threshold: int = 1
    failure_threshold: int = 3
    container: bool = True  # the container must be running (and its HEALTHCHECK pass)
    prometheus: PrometheusCheck | None = None


@dataclass(frozen=True)
class FreezeWindow:
    """No deploys from ``start`` (inclusive) to ``end`` (exclusive), both UTC."""

    start: datetime
    end: datetime
    reason: str | None = None

    def describe(self) -> str:
        text = f"{self.start.isoformat()} to {self.end.isoformat()}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class DeployWindow:
    """Deploys are allowed on ``days`` between ``start`` and ``end`` (local time of ``timezone``)."""

    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    timezone: str = "UTC"

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end

    def describe(self) -> str:
        days = ",".join(_DAYS[d] for d in sorted(self.days))
        return f"{days} {self.start.strftime('%H:%M')}-{self.end.strftime('%H:%M')} {self.timezone}"


@dataclass(frozen=True)
class Resources:
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretEnv:
    """One ``values.secrets`` entry: the stored secret ``id`` given to the service as env var ``name``."""

    id: str
    name: str


@dataclass(frozen=True)
class Values:
    """What chute's own manifests are rendered from (``environments.<env>.values``)."""

    port: int | None = None  # the container port; default: the image's PORT, else 8080
    env: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1
    resources: Resources = field(default_factory=Resources)
    secrets: tuple[SecretEnv, ...] = ()  # given as env vars by reference (a Secret), never in the manifests


@dataclass(frozen=True)
class ChartRef:
    """A user's Helm chart: a local ``path``, or ``name`` (+ ``repo``, ``version``)."""

    path: str | None = None
    name: str | None = None
    repo: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    target: str = "podman"
    port: int | None = None  # podman: the host port on 127.0.0.1 the service is reached on
    context: str | None = None  # kubernetes: kubeconfig context
    namespace: str | None = None  # kubernetes: default is one namespace per project
    kubeconfig: str | None = None
    auto: bool = False
    from_pipeline: str | None = None  # deploy what this pipeline publishes ...
    branch: str = "main"  # ... on this branch
    after: str | None = None  # promote once this environment is healthy
    health: HealthPolicy = field(default_factory=HealthPolicy)
    rollback: str = "auto"
    values: Values = field(default_factory=Values)
    raw_values: Mapping[str, Any] = field(default_factory=dict)  # verbatim, for Helm charts
    freeze: tuple[FreezeWindow, ...] = ()
    windows: tuple[DeployWindow, ...] = ()
    chart: ChartRef | None = None


# --------------------------------------------------------------------------- evaluation


def active_freeze(env: Environment, now: datetime | None = None) -> FreezeWindow | None:
    """The freeze window in force at ``now`` (default: the current time), if any."""
    now = _utc(now or datetime.now(UTC))
    for window in env.freeze:
        if window.start <= now < window.end:
            return window
    return None


def outside_windows(env: Environment, now: datetime | None = None) -> bool:
    """True when ``env`` has deploy windows and ``now`` is in none of them."""
    if not env.windows:
        return False
    now = _utc(now or datetime.now(UTC))
    return not any(w.contains(now) for w in env.windows)


def parse_duration(value: Any) -> float:
    """``60s``, ``5m``, ``1h30m``, ``250ms`` or a plain number of seconds -> seconds.

    Raises ValueError with a readable message.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 60s, 5m, 1h30m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        if _DURATION_RE.fullmatch(text):
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))
    raise ValueError(f"{value!r} is not a duration: write a number of seconds or text like 60s, 5m, 1h30m")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time such as 2026-12-24T00:00:00Z") from None
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 time such as 2026-12-24T00:00:00Z")
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: add Z for UTC or an offset like +01:00")
    return moment.astimezone(UTC)


def _parse_clock(value: Any) -> time:
    # YAML 1.1 reads an unquoted 09:00 as the sexagesimal number 540: accept it as minutes.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
            return time(int(m.group(1)), int(m.group(2)))
        if value.strip() == "24:00":
            return time.max
    raise ValueError(f"{value!r} is not a time of day such as 09:00")


# --------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, document: Document | None, prefix: tuple[str | int, ...]) -> None:
        self.doc = document
        self.prefix = prefix
        self.problems: list[Problem] = []

    def error(
        self, path: Sequence[str | int], message: str, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        full = (*self.prefix, *path)
        if self.doc is not None:
            self.problems.append(self.doc.problem(full, message, hint, at_key=at_key))
        else:
            self.problems.append(Problem(message, format_path(full), hint=hint))

    def mapping(self, value: Any, path: Sequence[str | int], what: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"{what} must be a mapping, not {_kind(value)}")
            return None
        return value

    def known_keys(self, data: Mapping[str, Any], allowed: Sequence[str], path: Sequence[str | int]) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f"did you mean `{close[0]}`?" if close else "known keys: " + ", ".join(allowed)
                self.error((*path, key), f"unknown key `{key}`", hint, at_key=True)

    def duration(
        self,
        data: Mapping[str, Any],
        key: str,
        path: Sequence[str | int],
        default: float,
        *,
        positive: bool = False,
    ) -> float:
        if key not in data or data[key] is None:
            return default
        try:
            seconds = parse_duration(data[key])
        except ValueError as exc:
            self.error((*path, key), str(exc), "for example 30s, 5m or 1h30m; a plain number means seconds")
            return default
        if positive and seconds <= 0:
            self.error((*path, key), "must be more than zero")
            return default
        return seconds

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: Sequence[str | int],
        default: int | None,
        lo: int,
        hi: int,
    ) -> int | None:
        if key not in data or data[key] is None:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            else:
                self.error((*path, key), f"must be a whole number from {lo} to {hi}, not {_kind(value)}")
                return default
        if not lo <= value <= hi:
            self.error((*path, key), f"{value} is out of range: must be from {lo} to {hi}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: Sequence[str | int], default: bool) -> bool:
        if key not in data or data[key] is None:
            return default
        if not isinstance(data[key], bool):
            self.error((*path, key), f"must be true or false, not {_kind(data[key])}")
            return default
        return data[key]

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: Sequence[str | int],
        choices: Sequence[str] | None = None,
    ) -> str | None:
        if key not in data or data[key] is None:
            return None
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            self.error((*path, key), f"must be a non-empty string, not {_kind(value)}")
            return None
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else None
            self.error((*path, key), f"`{value}` is not one of: {', '.join(choices)}", hint)
            return None
        return value

    # ---- sections

    def health(self, value: Any, path: tuple[str | int, ...]) -> HealthPolicy:
        data = self.mapping(value, path, "health")
        if data is None:
            return HealthPolicy()
        self.known_keys(data, _HEALTH_KEYS, path)
        http: str | None = "/healthz"
        if "http" in data:
            raw = data["http"]
            if raw is False or raw is None:
                http = None
            elif isinstance(raw, str) and raw.startswith("/"):
                http = raw
            else:
                self.error(
                    (*path, "http"),
                    "must be a path starting with / (or false to skip HTTP probes)",
                    "for example http: /healthz",
                )
        url = self.string(data, "url", path)
        if url is not None and not re.match(r"^https?://", url):
            self.error((*path, "url"), "must be an absolute http:// or https:// URL")
            url = None
        expect: tuple[int, ...] = (200,)
        if "expect" in data:
            raw = data["expect"]
            items = raw if isinstance(raw, list) else [raw]
            codes = []
            for i, item in enumerate(items):
                sub = (*path, "expect", i) if isinstance(raw, list) else (*path, "expect")
                if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
                    codes.append(item)
                else:
                    self.error(sub, f"{item!r} is not an HTTP status code (100-599)")
            expect = tuple(codes) or expect
        within = self.duration(data, "within", path, 60.0, positive=True)
        stable_for = self.duration(data, "stable_for", path, 5.0)
        interval = self.duration(data, "interval", path, 0.5, positive=True)
        timeout = self.duration(data, "timeout", path, 2.0, positive=True)
        success = self.integer(data, "success_threshold", path, 1, 1, 100) or 1
        failure = self.integer(data, "failure_threshold", path, 3, 1, 100) or 3
        container = self.boolean(data, "container", path, True)
        if interval > within:
            self.error(
                (*path, "interval"),
                f"the probe interval ({interval:g}s) is longer than "
                f"`within` ({within:g}s), so no probe would run in time",
            )
        prometheus = None
        if data.get("prometheus") is not None:
            prometheus = self.prometheus(data["prometheus"], (*path, "prometheus"))
        return HealthPolicy(
            http=http,
            url=url,
            expect=expect,
            within=within,
            stable_for=stable_for,
            interval=interval,
            timeout=timeout,
            success_threshold=success,
            failure_threshold=failure,
            container=container,
            prometheus=prometheus,
        )

    def prometheus(self, value: Any, path: tuple[str | int, ...]) -> PrometheusCheck | None:
        data = self.mapping(value, path, "prometheus")
        if data is None:
            return None
        self.known_keys(data, _PROM_KEYS, path)
        url = self.string(data, "url", path)
        query = self.string(data, "query", path)
        ok = True
        if url is None:
            self.error(path, "`url` is required (the Prometheus server, e.g. http://127.0.0.1:9090)")
            ok = False
        elif not re.match(r"^https?://", url):
            self.error((*path, "url"), "must be an http:// or https:// URL")
            ok = False
        if query is None:
            self.error(path, "`query` is required (a PromQL expression returning one number)")
            ok = False
        bounds: dict[str, float | None] = {"max": None, "min": None}
        for key in bounds:
            if data.get(key) is None:
                continue
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                self.error((*path, key), f"must be a number, not {_kind(v)}")
                ok = False
            else:
                bounds[key] = float(v)
        if bounds["max"] is None and bounds["min"] is None:
            self.error(path, "give `max` or `min` (or both) to compare the query's value with")
            ok = False
        elif bounds["max"] is not None and bounds["min"] is not None and bounds["min"] > bounds["max"]:
            self.error((*path, "min"), f"min ({bounds['min']:g}) is greater than max ({bounds['max']:g})")
            ok = False
        no_data = self.string(data, "no_data", path, ("fail", "pass")) or "fail"
        if not ok:
            return None
        return PrometheusCheck(
            url=url or "", query=query or "", max=bounds["max"], min=bounds["min"], no_data=no_data
        )

    def values(self, value: Any, path: tuple[str | int, ...], strict: bool) -> Values:
        data = self.mapping(value, path, "values")
        if data is None:
            return Values()
        if not strict:  # a Helm chart's values: passed through as written
            return Values()
        self.known_keys(data, _VALUES_KEYS, path)
        port = self.integer(data, "port", path, None, 1, 65535)
        replicas = self.integer(data, "replicas", path, 1, 0, 100)
        env: dict[str, str] = {}
        if data.get("env") is not None:
            raw_env = data["env"]
            if not isinstance(raw_env, dict):
                self.error((*path, "env"), f"must be a mapping of NAME: value, not {_kind(raw_env)}")
            else:
                for k, v in raw_env.items():
                    if not _ENV_NAME_RE.match(str(k)):
                        self.error(
                            (*path, "env", k),
                            f"`{k}` is not a valid environment variable name",
                            "use letters, digits and _, not starting with a digit",
                            at_key=True,
                        )
                    elif isinstance(v, dict | list):
                        self.error((*path, "env", k), "must be a plain value, not " + _kind(v))
                    else:
                        env[str(k)] = _scalar_text(self.doc, (*self.prefix, *path, "env", k), v)
        resources = Resources()
        if data.get("resources") is not None:
            resources = self.resources(data["resources"], (*path, "resources"))
        secrets: tuple[SecretEnv, ...] = ()
        if data.get("secrets") is not None:
            secrets = self.secrets(data["secrets"], (*path, "secrets"), env, port)
        return Values(
            port=port,
            env=env,
            replicas=replicas if replicas is not None else 1,
            resources=resources,
            secrets=secrets,
        )

    def secrets(
        self, value: Any, path: tuple[str | int, ...], env: Mapping[str, str], port: int | None
    ) -> tuple[SecretEnv, ...]:
        """``values.secrets``: ``[DB_PASSWORD, {id: tls.key, name: TLS_KEY}, ...]``."""
        if not isinstance(value, list):
            self.error(
                path,
                f"must be a list of secret names, not {_kind(value)}",
                "e.g. secrets: [DB_PASSWORD, {id: api.token, name: API_TOKEN}]",
            )
            return ()
        out: list[SecretEnv] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            where = (*path, i)
            if isinstance(item, dict):
                self.known_keys(item, _SECRET_KEYS, where)
                sid, name = item.get("id"), item.get("name", item.get("id"))
                if not isinstance(sid, str):
                    self.error(where, "`id` (the secret's name in `chute secret set`) is required")
                    continue
            elif isinstance(item, str):
                sid = name = item
            else:
                self.error(where, f"must be a secret name or {{id, name}}, not {_kind(item)}")
                continue
            if not _SECRET_ID_RE.match(sid):
                self.error(
                    where,
                    f"`{sid}` is not a valid secret name",
                    "letters, digits, '_', '.' and '-' (not first), at most 128 characters",
                )
                continue
            if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
                self.error(
                    where,
                    f"`{name}` is not a valid environment variable name",
                    f"give it one: {{id: {sid}, name: {re.sub(r'[^A-Za-z0-9_]', '_', sid).upper()}}}",
                )
                continue
            if name in seen:
                self.error(where, f"`{name}` is given twice (also entry {seen[name] + 1})")
                continue
            if name in env or (name == "PORT" and port):
                self.error(
                    where,
                    f"`{name}` is also set in `values.env`",
                    "a variable comes from `env` or from `secrets`, not both",
                )
                continue
            seen[name] = i
            out.append(SecretEnv(id=sid, name=name))
        return tuple(out)

    def resources(self, value: Any, path: tuple[str | int, ...]) -> Resources:
        data = self.mapping(value, path, "resources")
        if data is None:
            return Resources()
        self.known_keys(data, _RESOURCES_KEYS, path)
        out: dict[str, dict[str, str]] = {}
        for section in _RESOURCES_KEYS:
            sub = self.mapping(data.get(section), (*path, section), section)
            out[section] = {}
            if not sub:
                continue
            self.known_keys(sub, _RESOURCE_NAMES, (*path, section))
            for name in _RESOURCE_NAMES:
                if sub.get(name) is None:
                    continue
                text = str(sub[name]).strip()
                if not _QUANTITY_RE.match(text):
                    self.error(
                        (*path, section, name),
                        f"{sub[name]!r} is not a Kubernetes quantity",
                        "for example 250m or 0.5 (cpu), 64Mi or 1Gi (memory)",
                    )
                else:
                    out[section][name] = text
        return Resources(requests=out["requests"], limits=out["limits"])

    def freeze(self, value: Any, path: tuple[str | int, ...]) -> tuple[FreezeWindow, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(
                path,
                f"must be a list of {{from, to}} windows, not {_kind(value)}",
                'for example freeze: [{from: "2026-12-24T00:00:00Z", to: "2026-12-27T00:00:00Z"}]',
            )
            return ()
        windows = []
        for i, item in enumerate(value):
            ipath = (*path, i)
            data = self.mapping(item, ipath, "a freeze window")
            if data is None:
                continue
            self.known_keys(data, _FREEZE_KEYS, ipath)
            bounds: dict[str, datetime] = {}
            for key in ("from", "to"):
                if data.get(key) is None:
                    self.error(ipath, f"`{key}` is required", "an ISO 8601 time such as 2026-12-24T00:00:00Z")
                    continue
                try:
                    bounds[key] = _parse_timestamp(data[key])
                except ValueError as exc:
                    self.error((*ipath, key), str(exc))
            reason = data.get("reason")
            if len(bounds) == 2:
                if bounds["from"] >= bounds["to"]:
                    self.error(
                        (*ipath, "to"),
                        f"the window ends ({bounds['to'].isoformat()}) before or when "
                        f"it starts ({bounds['from'].isoformat()})",
                        "`to` must be later than `from`",
                    )
                else:
                    windows.append(
                        FreezeWindow(
                            bounds["from"], bounds["to"], str(reason) if reason is not None else None
                        )
                    )
        return tuple(windows)

    def windows(self, value: Any, path: tuple[str | int, ...]) -> tuple[DeployWindow, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(
                path,
                f"must be a list of {{days, from, to}} windows, not {_kind(value)}",
                'for example windows: [{days: [mon, tue, wed, thu], from: "09:00", to: "16:00"}]',
            )
            return ()
        out = []
        for i, item in enumerate(value):
            ipath = (*path, i)
            data = self.mapping(item, ipath, "a deploy window")
            if data is None:
                continue
            self.known_keys(data, _WINDOW_KEYS, ipath)
            ok = True
            days: set[int] = set(range(7))
            if data.get("days") is not None:
                raw_days = data["days"] if isinstance(data["days"], list) else [data["days"]]
                days = set()
                for j, d in enumerate(raw_days):
                    name = str(d).strip().lower()[:3]
                    if name in _DAYS:
                        days.add(_DAYS.index(name))
                    else:
                        dpath = (*ipath, "days", j) if isinstance(data["days"], list) else (*ipath, "days")
                        self.error(dpath, f"{d!r} is not a day", "use mon, tue, wed, thu, fri, sat, sun")
                        ok = False
            clock: dict[str, time] = {}
            for key in ("from", "to"):
                if data.get(key) is None:
                    self.error(ipath, f"`{key}` is required", 'a time of day such as "09:00" (quote it)')
                    ok = False
                    continue
                try:
                    clock[key] = _parse_clock(data[key])
                except ValueError as exc:
                    self.error((*ipath, key), str(exc), 'quote times: "09:00"')
                    ok = False
            tz = self.string(data, "timezone", ipath) or "UTC"
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                self.error(
                    (*ipath, "timezone"), f"unknown time zone {tz!r}", "for example UTC or Europe/Berlin"
                )
                ok = False
            if ok and clock["from"] >= clock["to"]:
                self.error(
                    (*ipath, "to"),
                    "the window ends before or when it starts",
                    "`to` must be later than `from` on the same day",
                )
                ok = False
            if ok:
                out.append(DeployWindow(frozenset(days), clock["from"], clock["to"], tz))
        return tuple(out)

    def chart(self, value: Any, path: tuple[str | int, ...]) -> ChartRef | None:
        if isinstance(value, str):
            return ChartRef(path=value)
        data = self.mapping(value, path, "chart")
        if data is None:
            return None
        self.known_keys(data, _CHART_KEYS, path)
        ref = ChartRef(
            path=self.string(data, "path", path),
            name=self.string(data, "name", path),
            repo=self.string(data, "repo", path),
            version=self.string(data, "version", path),
        )
        if not ref.path and not ref.name:
            self.error(path, "give the chart's `path` (in the repository) or its `name` (with `repo`)")
            return None
        return ref

    def environment(self, name: str, value: Any, pipelines: Collection[str] | None) -> Environment | None:
        path: tuple[str | int, ...] = (name,)
        if not _NAME_RE.match(name):
            self.error(
                path,
                f"`{name}` is not a valid environment name",
                "use lower-case letters, digits and -, at most 40 characters",
                at_key=True,
            )
        data = self.mapping(value, path, f"environment `{name}`")
        if data is None:
            return None
        self.known_keys(data, _ENV_KEYS, path)
        context = self.string(data, "context", path)
        target = self.string(data, "target", path, TARGETS) or ("kubernetes" if context else "podman")
        port = self.integer(data, "port", path, None, 1, 65535)
        if target == "podman" and port is None and "port" not in data:
            self.error(
                path,
                "the podman target needs `port`: the host port the service is reached on",
                "for example port: 18181 (it listens on 127.0.0.1)",
            )
        namespace = self.string(data, "namespace", path)
        if namespace is not None and not _NAME_RE.match(namespace):
            self.error(
                (*path, "namespace"),
                f"`{namespace}` is not a valid Kubernetes namespace",
                "use lower-case letters, digits and -",
            )
        if target == "podman":
            for key in ("context", "namespace", "kubeconfig"):
                if key in data:
                    self.error(
                        (*path, key),
                        f"`{key}` applies only to the kubernetes target",
                        "add target: kubernetes, or remove this key",
                        at_key=True,
                    )
        auto = self.boolean(data, "auto", path, False)
        from_pipeline = self.string(data, "from", path)
        after = self.string(data, "after", path)
        if from_pipeline and pipelines is not None and from_pipeline not in pipelines:
            close = difflib.get_close_matches(from_pipeline, list(pipelines), n=1, cutoff=0.6)
            self.error(
                (*path, "from"),
                f"no pipeline is named `{from_pipeline}`",
                f"did you mean `{close[0]}`?"
                if close
                else "known pipelines: " + (", ".join(pipelines) or "none"),
            )
        if from_pipeline and after:
            self.error(
                (*path, "after"),
                "give either `from` (deploy what a pipeline publishes) or `after` "
                "(promote from another environment), not both",
                at_key=True,
            )
        if auto and not from_pipeline and not after:
            self.error(
                (*path, "auto"),
                "auto: true needs `from` (the pipeline whose images are deployed) "
                "or `after` (the environment to promote from)",
                at_key=True,
            )
        branch = self.string(data, "branch", path) or "main"
        health = self.health(data.get("health"), (*path, "health"))
        rollback = self.string(data, "rollback", path, ROLLBACK_MODES) or "auto"
        chart = self.chart(data["chart"], (*path, "chart")) if data.get("chart") is not None else None
        raw_values = data.get("values") if isinstance(data.get("values"), dict) else {}
        values = self.values(data.get("values"), (*path, "values"), strict=chart is None)
        if target == "podman" and values.replicas > 1:
            self.error(
                (*path, "values", "replicas"),
                "the podman target runs one replica per revision",
                "use replicas: 1, or the kubernetes target",
            )
        freeze = self.freeze(data.get("freeze"), (*path, "freeze"))
        windows = self.windows(data.get("windows"), (*path, "windows"))
        return Environment(
            name=name,
            target=target,
            port=port,
            context=context,
            namespace=namespace,
            kubeconfig=self.string(data, "kubeconfig", path),
            auto=auto,
            from_pipeline=from_pipeline,
            branch=branch,
            after=after,
            health=health,
            rollback=rollback,
            values=values,
            raw_values=raw_values or {},
            freeze=freeze,
            windows=windows,
            chart=chart,
        )


def parse_environments(
    raw: Any,
    document: Document | None = None,
    path_prefix: tuple[str | int, ...] = ("environments",),
    *,
    pipelines: Collection[str] | None = None,
) -> dict[str, Environment]:
    """Validate the ``environments`` mapping; raise ConfigError with every problem at once.

    ``pipelines``, when given, are the pipeline names that ``from`` may name.
    """
    p = _Parser(document, path_prefix)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        p.error(
            (),
            f"environments must be a mapping of name: settings, not {_kind(raw)}",
            "for example environments: {staging: {port: 18181}}",
        )
        raise ConfigError(p.problems, EXIT_INVALID)
    envs: dict[str, Environment] = {}
    for name, value in raw.items():
        env = p.environment(str(name), value, pipelines)
        if env is not None:
            envs[env.name] = env
    # cross-environment rules
    ports: dict[int, str] = {}
    for env in envs.values():
        if env.target == "podman" and env.port is not None:
            if env.port in ports:
                p.error(
                    (env.name, "port"),
                    f"port {env.port} is already used by environment `{ports[env.port]}`",
                    "each podman environment needs its own port",
                )
            ports.setdefault(env.port, env.name)
        if env.after is not None and env.after not in raw:
            close = difflib.get_close_matches(env.after, [str(k) for k in raw], n=1, cutoff=0.6)
            p.error(
                (env.name, "after"),
                f"no environment is named `{env.after}`",
                f"did you mean `{close[0]}`?" if close else "known environments: " + ", ".join(map(str, raw)),
            )
        elif env.after == env.name:
            p.error((env.name, "after"), "an environment cannot come after itself")
    for cycle in _after_cycles(envs):
        p.error(
            (cycle[0], "after"),
            "`after` makes a cycle: " + " -> ".join([*cycle, cycle[0]]),
            "promotion must flow one way, e.g. staging -> production",
        )
    if p.problems:
        raise ConfigError(_sorted(p.problems), EXIT_INVALID)
    return envs


def load_environments(path: str, display_name: str | None = None) -> dict[str, Environment]:
    """Read the ``environments`` of a ``.pipeline/config.yaml``; ``from`` is checked against its pipelines."""
    from chute.config import load_file

    doc = load_file(path, display_name)
    data = doc.data if isinstance(doc.data, dict) else {}
    pipelines = data.get("pipelines")
    names = list(pipelines) if isinstance(pipelines, dict) else None
    return parse_environments(data.get("environments"), doc, pipelines=names)


def promotion_order(envs: Mapping[str, Environment]) -> list[str]:
    """Environment names so that each comes after the one it is promoted from."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        after = envs[name].after
        if after in envs:
            visit(after)
        done.append(name)

    for name in envs:
        visit(name)
    return done


def _after_cycles(envs: Mapping[str, Environment]) -> list[list[str]]:
    cycles: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    for start in envs:
        chain = [start]
        current = envs[start].after
        while current in envs and current not in chain:
            chain.append(current)
            current = envs[current].after
        if current == start and len(chain) > 1:
            key = frozenset(chain)
            if key not in reported:
                reported.add(key)
                cycles.append(chain)
    return cycles


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _scalar_text(doc: Document | None, path: tuple[str | int, ...], value: Any) -> str:
    """Env values as the user wrote them: ``on`` stays "on", ``1.10`` stays "1.10"."""
    if doc is not None:
        mark = doc.marks.get(path)
        if mark is not None and mark.raw is not None and mark.tag != "str":
            return mark.raw
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
