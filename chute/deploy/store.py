"""Where deployments are kept: a narrow protocol, an in-memory and a JSON-file implementation.

The server implements :class:`DeploymentStore` on SQL; each method is one
short transaction, so the protocol maps onto a table of deployments plus a
table of environment locks. ``update`` is the only write to an existing row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .model import FAILED, HEALTHY, ROLLED_BACK, SUPERSEDED, Deployment


@runtime_checkable
class DeploymentStore(Protocol):
    def next_revision(self, project: str, environment: str) -> int:
        """Reserve and return the next revision number (1, 2, ...) of an environment."""

    def record(self, deployment: Deployment) -> None:
        """Insert a new deployment (its revision must come from ``next_revision``)."""

    def update(self, project: str, environment: str, revision: int, **changes: Any) -> Deployment:
        """Change fields of one deployment (status, times, error, ...); returns the new value."""

    def get(self, project: str, environment: str, revision: int) -> Deployment | None: ...

    def current(self, project: str, environment: str) -> Deployment | None:
        """The deployment that serves now: the newest with status healthy."""

    def last_healthy(self, project: str, environment: str, before: int | None = None) -> Deployment | None:
        """The newest deployment (older than ``before``) that was healthy and not rolled back."""

    def list(self, project: str, environment: str, limit: int | None = None) -> list[Deployment]:
        """Deployments newest first."""

    def try_lock(self, project: str, environment: str, owner: str, ttl: float) -> bool:
        """Take the environment's deploy lock unless someone else holds an unexpired one."""

    def unlock(self, project: str, environment: str, owner: str) -> None: ...


def _pick_current(rows: list[Deployment]) -> Deployment | None:
    healthy = [d for d in rows if d.status == HEALTHY]
    return max(healthy, key=lambda d: d.revision) if healthy else None


def _pick_last_healthy(rows: list[Deployment], before: int | None) -> Deployment | None:
    ok = [d for d in rows if d.status in (HEALTHY, SUPERSEDED) and (before is None or d.revision < before)]
    return max(ok, key=lambda d: d.revision) if ok else None


_ALLOWED_STATUS = {HEALTHY, FAILED, ROLLED_BACK, SUPERSEDED, "pending", "deploying"}


class MemoryStore:
    """A :class:`DeploymentStore` in a dict; thread-safe. For tests and embedding."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[int, Deployment]] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._locks: dict[tuple[str, str], tuple[str, float]] = {}
        self._mutex = threading.Lock()

    def next_revision(self, project: str, environment: str) -> int:
        with self._mutex:
            key = (project, environment)
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def record(self, deployment: Deployment) -> None:
        with self._mutex:
            rows = self._rows.setdefault((deployment.project, deployment.environment), {})
            if deployment.revision in rows:
                raise ValueError(f"revision {deployment.revision} of {deployment.environment} already exists")
            rows[deployment.revision] = replace(deployment)

    def update(self, project: str, environment: str, revision: int, **changes: Any) -> Deployment:
        if "status" in changes and changes["status"] not in _ALLOWED_STATUS:
            raise ValueError(f"unknown status {changes['status']!r}")
        with self._mutex:
            rows = self._rows.get((project, environment), {})
            if revision not in rows:
                raise KeyError(f"no revision {revision} of {project}/{environment}")
            rows[revision] = replace(rows[revision], **changes)
            return replace(rows[revision])

    def get(self, project: str, environment: str, revision: int) -> Deployment | None:
        with self._mutex:
            row = self._rows.get((project, environment), {}).get(revision)
            return replace(row) if row else None

    def _all(self, project: str, environment: str) -> list[Deployment]:
        with self._mutex:
            return [replace(d) for d in self._rows.get((project, environment), {}).values()]

    def current(self, project: str, environment: str) -> Deployment | None:
        return _pick_current(self._all(project, environment))

    def last_healthy(self, project: str, environment: str, before: int | None = None) -> Deployment | None:
        return _pick_last_healthy(self._all(project, environment), before)

    def list(self, project: str, environment: str, limit: int | None = None) -> list[Deployment]:
        rows = sorted(self._all(project, environment), key=lambda d: d.revision, reverse=True)
        return rows[:limit] if limit else rows

    def try_lock(self, project: str, environment: str, owner: str, ttl: float) -> bool:
        with self._mutex:
            held = self._locks.get((project, environment))
            now = time.monotonic()
            if held and held[0] != owner and held[1] > now:
                return False
            self._locks[(project, environment)] = (owner, now + ttl)
            return True

    def unlock(self, project: str, environment: str, owner: str) -> None:
        with self._mutex:
            held = self._locks.get((project, environment))
            if held and held[0] == owner:
                del self._locks[(project, environment)]


class JsonFileStore:
    """A :class:`DeploymentStore` in one JSON file, safe across processes (flock + atomic replace).

    For the CLI and tests; the server uses SQL. Every call reads the file, so
    two ``chute`` processes see each other's deployments and locks.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[dict[str, Any]]:
        with open(self._lockfile, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                data = self._read()
                yield data
                if write:
                    tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                    with open(tmp, "w") as fh:
                        json.dump(data, fh, indent=1, sort_keys=True)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path) as fh:
                data = json.load(fh)
        except FileNotFoundError:
            data = {}
        except json.JSONDecodeError as exc:
            raise RuntimeError(
                f"{self.path}: the deployment store is not valid JSON ({exc}); "
                "restore it from a backup or move it away"
            ) from None
        data.setdefault("version", 1)
        data.setdefault("counters", {})
        data.setdefault("deployments", {})
        data.setdefault("locks", {})
        return data

    @staticmethod
    def _key(project: str, environment: str) -> str:
        return f"{project}\x1f{environment}"

    def next_revision(self, project: str, environment: str) -> int:
        with self._transaction(write=True) as data:
            key = self._key(project, environment)
            data["counters"][key] = data["counters"].get(key, 0) + 1
            return data["counters"][key]

    def record(self, deployment: Deployment) -> None:
        with self._transaction(write=True) as data:
            rows = data["deployments"].setdefault(self._key(deployment.project, deployment.environment), {})
            if str(deployment.revision) in rows:
                raise ValueError(f"revision {deployment.revision} of {deployment.environment} already exists")
            rows[str(deployment.revision)] = deployment.to_dict()

    def update(self, project: str, environment: str, revision: int, **changes: Any) -> Deployment:
        if "status" in changes and changes["status"] not in _ALLOWED_STATUS:
            raise ValueError(f"unknown status {changes['status']!r}")
        with self._transaction(write=True) as data:
            rows = data["deployments"].get(self._key(project, environment), {})
            if str(revision) not in rows:
                raise KeyError(f"no revision {revision} of {project}/{environment}")
            new = replace(Deployment.from_dict(rows[str(revision)]), **changes)
            rows[str(revision)] = new.to_dict()
            return new

    def _all(self, project: str, environment: str) -> list[Deployment]:
        with self._transaction(write=False) as data:
            rows = data["deployments"].get(self._key(project, environment), {})
            return [Deployment.from_dict(v) for v in rows.values()]

    def get(self, project: str, environment: str, revision: int) -> Deployment | None:
        with self._transaction(write=False) as data:
            row = data["deployments"].get(self._key(project, environment), {}).get(str(revision))
            return Deployment.from_dict(row) if row else None

    def current(self, project: str, environment: str) -> Deployment | None:
        return _pick_current(self._all(project, environment))

    def last_healthy(self, project: str, environment: str, before: int | None = None) -> Deployment | None:
        return _pick_last_healthy(self._all(project, environment), before)

    def list(self, project: str, environment: str, limit: int | None = None) -> list[Deployment]:
        rows = sorted(self._all(project, environment), key=lambda d: d.revision, reverse=True)
        return rows[:limit] if limit else rows

    def try_lock(self, project: str, environment: str, owner: str, ttl: float) -> bool:
        with self._transaction(write=True) as data:
            key = self._key(project, environment)
            held = data["locks"].get(key)
            now = time.time()  # wall clock: shared between processes
            if held and held["owner"] != owner and held["expires"] > now:
                return False
            data["locks"][key] = {"owner": owner, "expires": now + ttl}
            return True

    def unlock(self, project: str, environment: str, owner: str) -> None:
        with self._transaction(write=True) as data:
            key = self._key(project, environment)
            held = data["locks"].get(key)
            if held and held["owner"] == owner:
                del data["locks"][key]
