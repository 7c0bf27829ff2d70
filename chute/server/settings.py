"""Server settings: command-line flags over environment variables over defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from chute.store import chute_home


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return default


@dataclass
class Settings:
    home: Path = field(default_factory=chute_home)
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL"))
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""  # how people and review systems reach us; defaults to http://host:port
    embedded_agent: bool = True
    registry: str | None = field(default_factory=lambda: os.environ.get("CHUTE_REGISTRY"))
    poll_interval: float = field(default_factory=lambda: _env_float("CHUTE_POLL_INTERVAL", 60.0))
    lease_seconds: float = field(default_factory=lambda: _env_float("CHUTE_LEASE_SECONDS", 60.0))
    reap_interval: float = field(default_factory=lambda: _env_float("CHUTE_REAP_INTERVAL", 5.0))
    # Seconds a deploy lock outlives its holder: a dead server's lock frees itself after this.
    deploy_lease: float = field(default_factory=lambda: _env_float("CHUTE_DEPLOY_LEASE_SECONDS", 30.0))
    max_attempts: int = 3
    # Access (docs/security.md): reading without logging in, registering repositories without being
    # a server admin, and how long a UI session lives (idle and in all).
    anonymous_read: bool = field(default_factory=lambda: _env_bool("CHUTE_ANONYMOUS_READ", True))
    self_service: bool = field(default_factory=lambda: _env_bool("CHUTE_SELF_SERVICE", True))
    session_idle: float = field(default_factory=lambda: _env_float("CHUTE_SESSION_IDLE", 2 * 3600.0))
    session_max_age: float = field(default_factory=lambda: _env_float("CHUTE_SESSION_MAX_AGE", 12 * 3600.0))

    def __post_init__(self) -> None:
        if not self.base_url:
            self.base_url = os.environ.get("CHUTE_BASE_URL") or f"http://{self.host}:{self.port}"
        self.base_url = self.base_url.rstrip("/")

    def run_url(self, run_id: int) -> str:
        return f"{self.base_url}/runs/{run_id}"
