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

    def __post_init__(self) -> None:
        if not self.base_url:
            self.base_url = os.environ.get("CHUTE_BASE_URL") or f"http://{self.host}:{self.port}"
        self.base_url = self.base_url.rstrip("/")

    def run_url(self, run_id: int) -> str:
        return f"{self.base_url}/runs/{run_id}"
