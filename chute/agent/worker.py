"""Claim a job, check out its commit, run its pipeline, stream logs, report the result."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from chute.repo import RepoError, mirror_for

from .client import AgentClient, LostJob

log = logging.getLogger("chute.agent")


SEQ_PER_ATTEMPT = 10_000_000  # log chunks one attempt may send


class LogShipper:
    """Batches log lines and sends them every ``interval`` seconds, in order, with sequence numbers.

    Sequence numbers are unique per run across attempts (attempt * 10^7 + n), so
    the server can ignore re-sent chunks without losing a retried attempt's logs.
    They fit the database's 32-bit integer for 214 attempts (attempt * 10^9 did not
    from the third attempt on: PostgreSQL refused those chunks).
    """

    def __init__(self, client: AgentClient, job_id: int, attempt: int, interval: float = 0.5) -> None:
        from chute.secrets import Masker

        self.client, self.job_id = client, job_id
        self.masker = Masker()  # set once the job's secrets are known: nothing leaves unmasked
        self.seq = attempt * SEQ_PER_ATTEMPT
        self.interval = interval
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.lost = False
        self.pending_bytes = 0
        self.send_lock = threading.Lock()  # chunks go out in order, one batch at a time
        self.thread = threading.Thread(target=self._loop, name=f"logs-{job_id}", daemon=True)
        self.thread.start()

    MAX_PENDING = 4 << 20  # bytes held before the producer waits for the server (back-pressure)

    def add(self, stage: str, text: str) -> None:
        text = self.masker.mask(text)
        with self.lock:
            self.pending_bytes += len(text)
            full = self.pending_bytes > self.MAX_PENDING
            if self.pending and self.pending[-1]["stage"] == stage and len(self.pending[-1]["text"]) < 16_000:
                self.pending[-1]["text"] += text
            else:
                self.seq += 1
                self.pending.append({"seq": self.seq, "stage": stage, "text": text})
        if full:
            # A stage printing faster than the server stores it waits here; its container
            # then blocks on a full pipe. Memory stays bounded whatever the log size.
            self.flush()

    def flush(self) -> None:
        with self.send_lock:
            self._flush()

    def _flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            self.pending_bytes = 0
        if batch and not self.lost:
            try:
                self.client.logs(self.job_id, batch)
            except LostJob:
                self.lost = True
            except ConnectionError as err:
                log.warning("could not ship logs: %s", err)
                with self.lock:  # keep them for the next try
                    self.pending[:0] = batch
                    self.pending_bytes += sum(len(c["text"]) for c in batch)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.flush()


AGENT_LABEL = "chute.agent"  # on every container a job starts: which agent's janitor removes it


class Worker:
    def __init__(self, client: AgentClient, home: Path, *, heartbeat_every: float | None = None) -> None:
        self.client = client
        self.home = home
        self.heartbeat_every = heartbeat_every
        self.stop = threading.Event()
        self.current_cancel: threading.Event | None = None

    @property
    def workdir(self) -> Path:
        """Checkouts and logs of this agent's jobs (one directory per agent name: agents may share a home)."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.client.name)
        return self.home / "work" / safe

    def clean_up_after_crash(self) -> list[str]:
        """Remove what a killed earlier process of this agent left: its containers and checkouts.

        A job's containers are removed when the job ends; an agent killed mid-job never gets
        there, and its container runs on (conmon keeps it) or stays behind exited. The job
        itself goes back to the queue when its lease runs out, so nothing here is still wanted.
        Called before the first claim, when no job of this agent can be running.
        """
        shutil.rmtree(self.workdir, ignore_errors=True)
        from chute.engine import EngineError, detect_engine

        try:
            engine = detect_engine()
            names = engine.containers_labelled({AGENT_LABEL: self.client.name})
            if names:
                engine.remove_containers(names)
                log.warning("removed %d container(s) an earlier run of agent %s left behind: %s",
                            len(names), self.client.name, ", ".join(names))
            return names
        except EngineError as err:  # no engine here: nothing of ours can be left either
            log.warning("could not look for containers left by agent %s: %s", self.client.name, err)
            return []

    def serve_forever(self, wait: float = 20.0) -> None:
        self.clean_up_after_crash()
        while not self.stop.is_set():
            try:
                job = self.client.claim(wait=wait)
            except ConnectionError as err:
                log.warning("%s", err)
                self.stop.wait(2.0)
                continue
            if job is None:
                continue
            try:
                self.run_job(job)
            except (ConnectionError, httpx.HTTPError) as err:
                # The server stayed away longer than the client's patience, or refused a call: this
                # job is gone (its lease runs out and the server requeues it); the agent carries on.
                log.warning("dropped job %s: %s", job.get("job_id"), err)

    def run_job(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Run one claimed job; returns the result sent, or None when the job was lost."""
        job_id, payload = int(job["job_id"]), job["payload"]
        cancel = threading.Event()
        self.current_cancel = cancel
        lost = threading.Event()
        lease = float(job.get("lease_seconds", 60))
        every = self.heartbeat_every or max(1.0, lease / 4)

        def beat() -> None:
            while not cancel.is_set() and not lost.is_set() and not beat_stop.wait(every):
                try:
                    status = self.client.heartbeat(job_id)
                except ConnectionError:
                    continue
                if status == "cancel":
                    cancel.set()
                elif status == "lost":
                    lost.set()
                    cancel.set()

        beat_stop = threading.Event()
        beater = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
        beater.start()
        shipper = LogShipper(self.client, job_id, int(job.get("attempt", 1)))
        work = self.workdir / f"run-{job['run_id']}-{job_id}"
        try:
            result = self._execute(job_id, int(job["run_id"]), payload, work, shipper, cancel)
        except LostJob:
            lost.set()
            result = None
        finally:
            beat_stop.set()
            beater.join(timeout=5)
            shipper.close()
            shutil.rmtree(work, ignore_errors=True)
            self.current_cancel = None
        if lost.is_set() or shipper.lost or result is None:
            log.warning("job %s was lost (lease expired); its result is dropped", job_id)
            return None
        result = shipper.masker.mask_doc(result)
        try:
            self.client.complete(job_id, result)
        except LostJob:
            return None
        return result

    def _execute(self, job_id: int, run_id: int, payload: dict[str, Any], work: Path, shipper: LogShipper,
                 cancel: threading.Event) -> dict[str, Any]:
        from chute.runner import Isolation, Observer, RunRequest, run_pipeline
        from chute.secrets import Masker

        started = time.time()
        mirror = mirror_for(self.home, payload["project"], payload["repo_url"])
        try:
            mirror.sync()
            if payload.get("ref") and not mirror.has_commit(payload["commit"]):
                mirror.fetch_ref(payload["ref"])
            src = mirror.checkout(payload["commit"], work / "src")
        except RepoError as err:
            shipper.add("", f"cannot check out {payload['commit'][:12]}: {err}\n")
            return {"status": "error", "error": f"checkout failed: {err}", "stages": [], "images": [],
                    "duration": round(time.time() - started, 3)}

        client = self.client
        secrets: dict[str, str] = {}
        if payload.get("trusted") and payload.get("credentials"):
            # Only trusted jobs ask, only for what their reviewed config names; fetched late, never stored.
            try:
                secrets, missing = client.secrets(job_id)
            except PermissionError as err:
                shipper.add("", f"chute: secrets refused: {err}\n")
                return {"status": "error", "error": f"secrets refused: {err}", "stages": [], "images": [],
                        "duration": round(time.time() - started, 3)}
            shipper.masker = Masker(secrets.values())
            if missing:
                shipper.add("", f"chute: credentials not defined for {payload['project']}: {', '.join(missing)} "
                                "(a step that asks for one fails; define it with `chute secret set`)\n")
        masker = shipper.masker

        class Remote(Observer):
            def graph(self, graph: dict[str, Any]) -> None:
                client.graph(job_id, graph)

            def stage(self, name: str, status: str, error: str = "",
                      exports: dict[str, Any] | None = None) -> None:
                shipper.flush()  # logs before the status change that ends them
                client.stage(job_id, name, status, masker.mask(error), masker.mask_doc(exports))

            def log(self, stage: str, text: str) -> None:
                shipper.add(stage, text)

        change = payload.get("change") or {}
        ref = payload.get("ref") or ""
        request = RunRequest(
            repo_dir=src,
            pipelines=[payload["pipeline"]],
            project=payload["project"],
            commit=payload["commit"],
            branch=payload.get("branch") or "",
            tag=ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None,
            change=change.get("number") or None,
            patchset=str(change.get("patchset")) if change.get("patchset") else None,
            remote=payload.get("repo_url"),
            params=dict(payload.get("params") or {}),
            registry=payload.get("registry"),
            trusted=bool(payload.get("trusted")),
            secrets=secrets,
            default_branch=payload.get("default_branch") or "",
            isolation=Isolation.for_agent(),
            reuse=payload.get("reuse") or {},
            run_id=run_id,  # containers are labelled chute.run=<run id>
            labels={AGENT_LABEL: self.client.name},
            timestamp=datetime.now(UTC),
        )
        return run_pipeline(request, observer=Remote(), cancel=cancel, workdir=work)


def agent_name() -> str:
    return os.environ.get("CHUTE_AGENT_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def embedded_agent_name(home: Path) -> str:
    """Stable across restarts of one installation (so its janitor finds what a killed one left),
    different between installations that share a machine."""
    import hashlib

    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:8]
    return f"embedded-{socket.gethostname()}-{digest}"


def start_embedded_agent(state: Any) -> threading.Thread:
    """Run a Worker inside ``chute serve``, talking HTTP to the same server."""
    settings = state.settings

    def run() -> None:
        # Wait for the admin token and for the server to listen.
        while not state.admin_token and not state.stop.is_set():
            time.sleep(0.1)
        url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
        client = AgentClient(url, state.admin_token, embedded_agent_name(settings.home))
        worker = Worker(client, settings.home / "agent")
        threading.Thread(target=lambda: (state.stop.wait(), worker.stop.set(),
                                         worker.current_cancel and worker.current_cancel.set()),
                         daemon=True).start()
        try:
            worker.serve_forever(wait=5.0)
        finally:
            client.close()

    t = threading.Thread(target=run, name="chute-embedded-agent", daemon=True)
    t.start()
    return t
