"""Webhook received -> job started on the embedded agent, through a real ``chute serve``.

Goal (issue "chute serve"): p50 <= 100 ms, p99 <= 500 ms over 200 events (for comparison,
GitLab runners poll for jobs every 3 s by default).

A ``chute serve`` process with its embedded agent (uvicorn, the real lifespan and background
threads; the poller is set to once an hour so only the webhooks queue runs) serves a fresh
database. One local git project is registered through the API; its pipeline is one stage whose
only step is ``exports`` (no container), so the agent's part after the claim is a fetch, a
checkout and a few API calls.

Then, ``--events`` times, one at a time: a new commit is made on ``main`` (before the clock
starts), and a ``/webhooks/git`` push event for it is sent, signed with the project's secret
(``X-Chute-Signature-256``, HMAC-SHA256 of the body, as a post-receive hook sends it). The
server checks the signature, fetches the repository into its mirror, records the change,
queues the run and wakes the agents, which are long-polling ``/api/v1/agents/claim``. The bench
waits until that run has finished before it sends the next event, so the agent is idle each
time (the case the goal is about: latency, not queueing behind other runs).

What is measured, per event (all from the same machine clock):

* **started** (the figure the goal is about): from just before the webhook request is sent to
  the run's ``started_at``, which the server sets in the transaction in which the agent's claim
  takes the job (the ``run.started`` ledger event has the same time). The agent receives the
  job a few milliseconds later, in the claim's answer.
* webhook answered: until the ``202`` answer (signature check, ``git fetch``, the insert).
* first stage started: until the first stage's ``started_at``, which the agent reports after
  it fetched and checked out the commit and the runner began the pipeline.

    .venv/bin/python bench/server_latency.py                  # SQLite, 200 events
    .venv/bin/python bench/server_latency.py --db postgres    # needs CHUTE_TEST_POSTGRES_URL
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_common import ChuteServer, cpu_seconds, database, git, machine, make_repo, percentile

CONFIG = """pipelines:
  noop:
    stages:
      - name: noop
        exports:
          done: "yes"
"""
DONE = ("success", "failure", "error", "cancelled")


def ts(value: str | None) -> float:
    assert value, "no timestamp"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_run(srv: ChuteServer, run_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = srv.http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in DONE:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not finish within {timeout} s: {run}")
        time.sleep(0.02)


def wait_idle(srv: ChuteServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while any(srv.http.get("/api/v1/runs", params={"status": s}).json() for s in ("queued", "running")):
        if time.monotonic() > deadline:
            raise AssertionError("runs still queued or running")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--events", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="chute-latency-") as tmp, database(args.db, Path(tmp)) as url:
        repo = make_repo(Path(tmp) / "svc", {".pipeline/config.yaml": CONFIG, "README": "bench\n"})
        with ChuteServer(Path(tmp) / "home", url, agent=True) as srv:
            created = srv.http.post("/api/v1/projects", json={"repo": str(repo)})
            assert created.status_code in (200, 201), created.text
            project, secret = created.json()["name"], created.json()["webhook_secret"]
            wait_idle(srv)
            started, answered, first_stage, statuses = [], [], [], []
            cpu0, t_all = cpu_seconds(srv.pid), time.perf_counter()
            for i in range(args.events):
                before = git(repo, "rev-parse", "HEAD")
                git(repo, "commit", "-q", "--allow-empty", "-m", f"change {i}")
                after = git(repo, "rev-parse", "HEAD")
                body = json.dumps({"project": project, "ref": "refs/heads/main", "before": before,
                                   "after": after, "pusher": "bench"}).encode()
                sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                headers = {"Content-Type": "application/json", "X-Chute-Signature-256": sig}
                t0 = time.time()
                r = srv.http.post("/webhooks/git", params={"project": project}, content=body, headers=headers)
                t1 = time.time()
                assert r.status_code == 202, (r.status_code, r.text)
                (run_id,) = r.json()["runs"]
                run = wait_run(srv, run_id)
                statuses.append(run["status"])
                started.append(ts(run["started_at"]) - t0)
                answered.append(t1 - t0)
                stage_starts = [ts(s["started_at"]) for s in run["stages"] if s.get("started_at")]
                if stage_starts:
                    first_stage.append(min(stage_starts) - t0)
            elapsed, server_cpu = time.perf_counter() - t_all, cpu_seconds(srv.pid) - cpu0
    ok = statuses.count("success")
    print(f"# {args.db}, {args.events} git push webhooks one at a time, embedded agent; {machine()}")
    print(f"runs: {ok} success of {len(statuses)} ({', '.join(sorted(set(statuses)))}); "
          f"{elapsed:.1f} s in all; server CPU {server_cpu / args.events * 1000:.0f} ms per event "
          "(webhook + run + polling of this bench)")
    print(f"{'from sending the webhook to':<40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    for label, xs in (("the 202 answer", answered), ("job started (run.started_at, claim)", started),
                      ("first stage started (on the agent)", first_stage)):
        if xs:
            ms = [x * 1000 for x in xs]
            print(f"{label:<40} {percentile(ms, 50):>8.0f} {percentile(ms, 90):>8.0f} {percentile(ms, 99):>8.0f} "
                  f"{max(ms):>8.0f} {statistics.mean(ms):>8.0f}")
    p50, p99 = percentile(started, 50) * 1000, percentile(started, 99) * 1000
    print(f"goal p50 <= 100 ms: {p50:.0f} ms ({p50 / 100:.2f}x of the goal, {'met' if p50 <= 100 else 'MISSED'}); "
          f"p99 <= 500 ms: {p99:.0f} ms ({p99 / 500:.2f}x, {'met' if p99 <= 500 else 'MISSED'})")


if __name__ == "__main__":
    main()
