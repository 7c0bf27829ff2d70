"""How fast 4 agents drain 1,000 queued no-op runs through a real ``chute serve``.

Goal (issue "chute serve"): report runs per minute on SQLite and on PostgreSQL.

A ``chute serve --no-agent`` process (uvicorn, the real lifespan and background threads) serves
a database in which 1,000 runs of one project were queued beforehand (``services.queue_run``,
as a webhook would). Then 4 agent processes, each an ``AgentClient`` over HTTP, loop: claim
(long poll) -> complete with a trivial successful result. With ``--protocol full`` each job
also does what a one-stage run reports: the stage graph, the stage running, one log chunk,
the stage finished, then complete (6 calls instead of 2).

The clock starts when the agents are released together and stops at the last completion.
Afterwards every run must be ``success`` and every job claimed exactly once.

    .venv/bin/python bench/server_drain.py                        # SQLite
    .venv/bin/python bench/server_drain.py --db postgres          # needs CHUTE_TEST_POSTGRES_URL
    .venv/bin/python bench/server_drain.py --protocol full
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_common import ChuteServer, cpu_seconds, database, machine, percentile

RESULT = {"status": "success", "duration": 0.01, "stages": [{"name": "noop", "status": "success"}], "images": []}


def queue_runs(url: str, home: Path, n: int) -> None:
    from chute.server import services
    from chute.server.settings import Settings
    from chute.store import Change, Database, Project

    db = Database(url)
    db.migrate()
    settings = Settings(home=home, database_url=url, embedded_agent=False)
    with db.session() as s:
        p = Project(name="drain", repo_url="/nowhere", webhook_secret="s")
        s.add(p)
        s.flush()
        for i in range(n):
            ch = Change(project=p, kind="push", commit=f"{i:040x}", branch="main", ref="refs/heads/main")
            s.add(ch)
            services.queue_run(s, settings, p, ch, "noop", trigger="webhook", actor="bench", trusted=False)
    db.dispose()


def agent(server: str, token: str, name: str, protocol: str, go: Any, done: Any, out: Any) -> None:
    from chute.agent import AgentClient

    client = AgentClient(server, token, name)
    latencies: list[float] = []
    go.wait()
    empty = 0
    while empty < 2:
        t0 = time.perf_counter()
        job = client.claim(wait=1.0)
        if job is None:
            empty += 1
            continue
        empty = 0
        jid = job["job_id"]
        if protocol == "full":
            client.graph(jid, {"stages": ["noop"], "edges": []})
            client.stage(jid, "noop", "running")
            client.logs(jid, [{"seq": job["attempt"] * 10**9 + 1, "stage": "noop", "text": "nothing to do\n"}])
            client.stage(jid, "noop", "success")
        client.complete(jid, RESULT)
        latencies.append(time.perf_counter() - t0)
        with done.get_lock():
            done.value += 1
    client.close()
    out.put((name, latencies))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--protocol", choices=["minimal", "full"], default="minimal")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="chute-drain-") as tmp, database(args.db, Path(tmp)) as url:
        home = Path(tmp) / "home"
        queue_runs(url, home, args.runs)
        with ChuteServer(home, url, agent=False) as srv:
            go, done, out = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
            procs = [ctx.Process(target=agent, args=(srv.url, srv.token, f"bench-{i}", args.protocol, go, done, out))
                     for i in range(args.agents)]
            for p in procs:
                p.start()
            time.sleep(2.0)  # let the interpreters start
            t0, cpu0 = time.perf_counter(), cpu_seconds(srv.pid)
            go.set()
            while done.value < args.runs and any(p.is_alive() for p in procs):
                time.sleep(0.01)
            elapsed, server_cpu = time.perf_counter() - t0, cpu_seconds(srv.pid) - cpu0
            per_agent = dict(out.get(timeout=60) for _ in procs)
            for p in procs:
                p.join(timeout=30)
            jobs = srv.http.get("/api/v1/runs", params={"status": "success", "limit": 1}).status_code
            assert jobs == 200
        check(url, args.runs)
    lat = [x for v in per_agent.values() for x in v]
    print(f"# {args.db}, {args.agents} agents, protocol {args.protocol}; {machine()}")
    print(f"{args.runs} runs in {elapsed:.1f} s: {args.runs / elapsed * 60:,.0f} runs/minute "
          f"({args.runs / elapsed:.1f}/s); per job (claim..complete): p50 {percentile(lat, 50) * 1000:.0f} ms, "
          f"p99 {percentile(lat, 99) * 1000:.0f} ms; jobs per agent: "
          f"{', '.join(str(len(v)) for v in per_agent.values())}; server CPU {server_cpu * 1000 / args.runs:.1f} ms "
          f"per run ({server_cpu / elapsed * 100:.0f}% of one core)")


def check(url: str, n: int) -> None:
    """Every run succeeded and no job was claimed twice."""
    from sqlalchemy import func, select

    from chute.store import Database, Job, Run

    db = Database(url)
    with db.session() as s:
        statuses = dict(s.execute(select(Run.status, func.count(Run.id)).group_by(Run.status)).all())
        attempts = dict(s.execute(select(Job.attempts, func.count(Job.id)).group_by(Job.attempts)).all())
    db.dispose()
    assert statuses == {"success": n}, statuses
    assert attempts == {1: n}, f"jobs claimed more than once: {attempts}"


if __name__ == "__main__":
    main()
