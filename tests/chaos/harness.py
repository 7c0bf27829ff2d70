"""Real chute processes to kill: ``chute serve --no-agent`` and ``chute agent`` subprocesses.

Each process runs in its own session (process group), so a kill can take the process alone
(``kill -9 PID``: the OOM killer) or its whole group (``kill -9 -PGID``: a machine, a container or
a systemd unit going down, children included). Output goes to one log file per process, appended
across restarts, so a failure can be read afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CONTAINERS_CONF = "/etc/chute/containers.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    if os.path.exists(CONTAINERS_CONF):
        env.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)
    env.pop("DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """One restartable process: how to start it, and the running one (if any)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    def start(self) -> None:
        assert not self.alive(), f"{self.name} is already running"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts + 1} of {self.name} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, *, group: bool) -> None:
        """SIGKILL the process (``group``: with every process it started in its group)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                if group:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                else:
                    os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.kills += 1
        self.popen.wait(30)
        with self.log.open("ab") as out:
            out.write(f"===== SIGKILL{' (group)' if group else ''} at {time.strftime('%H:%M:%S')}\n".encode())

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()


@dataclass
class Cluster:
    """A chute server and its agents, each a real process that the test kills and restarts."""

    root: Path
    database_url: str | None = None
    agents: int = 3
    agent_prefix: str = "chaos"
    server_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    server: Proc = field(init=False)
    workers: list[Proc] = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / "server"
        self.home.mkdir(parents=True, exist_ok=True)
        env = base_env() | {"CHUTE_HOME": str(self.home), "CHUTE_POLL_INTERVAL": "3600"} | self.server_env
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        self.server = Proc("server", [sys.executable, "-m", "chute", "serve", "--no-agent", "--port",
                                      str(self.port)], env, self.root / "logs" / "server.log")
        self.workers = []
        for i in range(1, self.agents + 1):
            name = f"{self.agent_prefix}-a{i}"
            home = self.root / name
            home.mkdir(parents=True, exist_ok=True)
            self.workers.append(Proc(name, [sys.executable, "-m", "chute", "agent", "--server", self.url,
                                            "--name", name],
                                     base_env() | {"CHUTE_HOME": str(home)}, self.root / "logs" / f"{name}.log"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.home / "admin-token").read_text().strip()

    def http(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)

    def start_server(self, wait: bool = True) -> None:
        self.server.start()
        if wait:
            self.wait_ready()

    def ready(self) -> bool:
        if not self.server.alive() or not (self.home / "admin-token").exists():
            return False
        try:
            r = httpx.get(f"{self.url}/api/v1/projects", headers={"Authorization": f"Bearer {self.token}"},
                          timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.server.exit_code() is not None:
                raise AssertionError(f"the server exited with {self.server.exit_code()}; see {self.server.log}:\n"
                                     + tail(self.server.log))
            time.sleep(0.1)
        raise AssertionError(f"the server did not answer within {timeout:g}s; see {self.server.log}:\n"
                             + tail(self.server.log))

    def start_agent(self, agent: Proc) -> None:
        # `chute agent --server URL --token T`, the token through CHUTE_TOKEN (not in the process list).
        agent.env["CHUTE_TOKEN"] = self.token
        agent.start()

    def start_all(self) -> None:
        self.start_server()
        for a in self.workers:
            self.start_agent(a)

    def procs(self) -> list[Proc]:
        return [self.server, *self.workers]

    def kill_all(self) -> None:
        for p in self.procs():
            p.kill(group=True)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.log.name}\n{tail(p.log, lines)}" for p in self.procs())


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def podman(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=base_env())


def containers(*labels: str, running_only: bool = False) -> list[dict[str, Any]]:
    """Containers (all states) carrying every ``key=value`` label given: name, state and labels."""
    import json

    argv = ["ps", "--format", "json"] + ([] if running_only else ["-a"])
    for label in labels:
        argv += ["--filter", f"label={label}"]
    out = podman(*argv).stdout.strip()
    rows = json.loads(out) if out else []
    return [{"name": (r.get("Names") or [""])[0], "state": r.get("State", ""), "labels": r.get("Labels") or {}}
            for r in rows]
