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

from chute.repo import RepoError, mirror_for

from .client import AgentClient, LostJob

log = logging.getLogger("chute.agent")


class LogShipper:
    """Batches log lines and sends them every ``interval`` seconds, in order, with sequence numbers.

    Sequence numbers are unique per run across attempts (attempt * 1e9 + n), so
    the server can ignore re-sent chunks without losing a retried attempt's logs.
    """

    def __init__(self, client: AgentClient, job_id: int, attempt: int, interval: float = 0.5) -> None:
        from chute.secrets import Masker

        self.client, self.job_id = client, job_id
        self.masker = Masker()  # set once the job's secrets are known: nothing leaves unmasked
        self.seq = attempt * 1_000_000_000
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


class Worker:
    def __init__(self, client: AgentClient, home: Path, *, heartbeat_every: float | None = None) -> None:
        self.client = client
        self.home = home
        self.heartbeat_every = heartbeat_every
        self.stop = threading.Event()
        self.current_cancel: threading.Event | None = None

    def serve_forever(self, wait: float = 20.0) -> None:
        while not self.stop.is_set():
            try:
                job = self.client.claim(wait=wait)
            except ConnectionError as err:
                log.warning("%s", err)
                self.stop.wait(2.0)
                continue
            if job is not None:
                self.run_job(job)

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
        work = self.home / "work" / f"run-{job['run_id']}-{job_id}"
        try:
            result = self._execute(job_id, payload, work, shipper, cancel)
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

    def _execute(self, job_id: int, payload: dict[str, Any], work: Path, shipper: LogShipper,
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
            run_id=job_id,
            timestamp=datetime.now(UTC),
        )
        return run_pipeline(request, observer=Remote(), cancel=cancel, workdir=work)


def agent_name() -> str:
    return os.environ.get("CHUTE_AGENT_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def start_embedded_agent(state: Any) -> threading.Thread:
    """Run a Worker inside ``chute serve``, talking HTTP to the same server."""
    settings = state.settings

    def run() -> None:
        # Wait for the admin token and for the server to listen.
        while not state.admin_token and not state.stop.is_set():
            time.sleep(0.1)
        url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
        client = AgentClient(url, state.admin_token, f"embedded-{agent_name()}")
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
