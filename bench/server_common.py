"""Shared pieces of the server benchmarks: a real ``chute serve`` process, scratch databases, git repos.

Not a benchmark itself. The PostgreSQL benches need ``CHUTE_TEST_POSTGRES_URL`` (what .ci/run
sets, e.g. ``postgresql+psycopg://postgres@127.0.0.1:55432/ci``); each makes a scratch database
next to it and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHUTE = str(Path(sys.executable).with_name("chute"))
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.org"}


def machine() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def make_repo(dest: Path, files: dict[str, str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "initial commit")
    return dest


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh empty database URL: a SQLite file in ``workdir``, or a scratch PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'chute.db'}"
        return
    admin = os.environ.get("CHUTE_TEST_POSTGRES_URL")
    if not admin:
        raise SystemExit("PostgreSQL: set CHUTE_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:55432/ci)")
    import sqlalchemy as sa

    name = f"chute_bench_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with eng.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()


class ChuteServer:
    """``chute serve`` in a child process (the real thing: uvicorn, lifespan, background threads)."""

    def __init__(self, home: Path, database_url: str, *, agent: bool, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        argv = [CHUTE, "serve", "--port", str(self.port)] + ([] if agent else ["--no-agent"])
        self.log = log or home / "server.log"
        full_env = {**os.environ, "CHUTE_HOME": str(home), "DATABASE_URL": database_url,
                    "CHUTE_POLL_INTERVAL": "3600", **(env or {})}
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chute serve exited ({self.proc.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.url}/api/v1/projects", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chute serve did not answer within 60 s; see {self.log}")
            time.sleep(0.1)
        self.token = (home / "admin-token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60,
                                 headers={"Authorization": f"Bearer {self.token}"})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> ChuteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of one process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
