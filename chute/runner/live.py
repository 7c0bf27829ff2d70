"""``chute run``'s terminal display: a line per stage with status and elapsed time, and the
running stages' last log lines; plain lines when the output is not a terminal."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .request import Observer, RunRequest

_ICONS = {"pending": "·", "running": "▶", "success": "✔", "failure": "✘", "skipped": "-", "cancelled": "■",
          "reused": "↺"}
_STYLES = {"running": "cyan", "success": "green", "failure": "red", "cancelled": "yellow", "skipped": "dim",
           "reused": "green", "pending": "dim"}


class LiveObserver(Observer):
    def __init__(self, tail_lines: int = 4, plain: bool | None = None, verbose: bool = False) -> None:
        self.lock = threading.Lock()
        self.pipeline = ""
        self.stages: dict[str, dict[str, Any]] = {}
        self.tails: dict[str, collections.deque[str]] = {}
        self.tail_lines = tail_lines
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self.verbose = verbose
        self.live: Any = None

    # Observer interface -------------------------------------------------------------
    def graph(self, graph: dict[str, Any]) -> None:
        with self.lock:
            self.pipeline = str(graph.get("pipeline", ""))
            self.stages = {s: {"status": "pending", "start": None, "end": None, "error": ""} for s in graph["stages"]}
            self.tails = {s: collections.deque(maxlen=self.tail_lines) for s in graph["stages"]}
        if self.plain:
            self._print(f"pipeline {self.pipeline}: stages {', '.join(graph['stages'])}")

    def stage(self, name: str, status: str, error: str = "", exports: dict[str, Any] | None = None) -> None:
        with self.lock:
            st = self.stages.setdefault(name, {"status": "pending", "start": None, "end": None, "error": ""})
            st["status"] = status
            if status == "running" and st["start"] is None:
                st["start"] = time.monotonic()
            if status not in ("pending", "running"):
                st["end"] = time.monotonic()
                st["error"] = error
        if self.plain:
            self._print(f"[{status:>9}] {name}{self._elapsed(name)}" + (f": {error.splitlines()[0]}" if error else ""))

    def log(self, stage: str, text: str) -> None:
        with self.lock:
            tail = self.tails.setdefault(stage, collections.deque(maxlen=self.tail_lines))
            for line in text.splitlines():
                tail.append(line)
        if self.plain and self.verbose:
            for line in text.splitlines():
                self._print(f"  {stage}| {line}")

    # Rendering ----------------------------------------------------------------------
    def _elapsed(self, name: str) -> str:
        st = self.stages.get(name) or {}
        if st.get("start") is None:
            return ""
        end = st.get("end") or time.monotonic()
        return f" ({end - st['start']:.1f}s)"

    def _print(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(min_width=20)
        table.add_column(min_width=10)
        table.add_column(justify="right", min_width=7)
        with self.lock:
            items = list(self.stages.items())
            tails = {k: list(v) for k, v in self.tails.items()}
        table.add_row("", Text(f"pipeline {self.pipeline}", style="bold"), "", "")
        for name, st in items:
            status = st["status"]
            style = _STYLES.get(status, "")
            table.add_row(Text(_ICONS.get(status, "?"), style=style), name, Text(status, style=style),
                          self._elapsed(name).strip(" ()"))
            if status == "running":
                for line in tails.get(name, []):
                    table.add_row("", Text("  " + line[:150], style="dim"), "", "")
            elif status == "failure" and st["error"]:
                for line in st["error"].splitlines()[:6]:
                    table.add_row("", Text("  " + line[:150], style="red"), "", "")
        return table

    def run_live(self, fn: Any) -> Any:
        if self.plain:
            return fn()
        from rich.console import Console
        from rich.live import Live

        with Live(self.render(), console=Console(stderr=True), refresh_per_second=8, transient=False) as live:
            done = threading.Event()

            def refresh() -> None:
                while not done.wait(0.2):
                    live.update(self.render())

            t = threading.Thread(target=refresh, daemon=True)
            t.start()
            try:
                return fn()
            finally:
                done.set()
                t.join()
                live.update(self.render())


def git_facts(repo: Path) -> dict[str, str | None]:
    """Commit, branch, tag and remote of a checkout ("" when it is not a git repository)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    tag = git("describe", "--tags", "--exact-match", "HEAD") or None
    remote = git("config", "--get", "remote.origin.url") or None
    return {"commit": commit, "branch": "" if branch == "HEAD" else branch, "tag": tag, "remote": remote}


def project_name(repo: Path, remote: str | None) -> str:
    if remote:
        path = remote.rstrip("/").removesuffix(".git")
        for sep in ("://", ":"):
            if sep in path:
                path = path.split(sep, 1)[1]
        path = path.split("/", 1)[1] if "/" in path and "://" in remote else path
        path = path.removeprefix("r/")
        if path:
            return path
    return repo.resolve().name


def request_for(repo: Path, pipelines: list[str] | None, stage: str | None, registry: str | None) -> RunRequest:
    facts = git_facts(repo)
    return RunRequest(repo_dir=repo.resolve(), pipelines=pipelines or None, stage=stage,
                      project=project_name(repo, facts["remote"]), commit=facts["commit"] or "",
                      branch=facts["branch"] or "", tag=facts["tag"], remote=facts["remote"], registry=registry,
                      run_id=os.environ.get("CHUTE_RUN_ID") or f"local-{int(time.time())}")
