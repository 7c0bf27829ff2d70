"""Server time of the pages and API calls that list runs, with 100,000 runs in the database.

Goal (issue "chute serve"): the runs page with 100,000 runs in the database answers in <= 200 ms
of server time.

The database is filled with the store's own tables through bulk inserts: 10 projects (one
"big" one with half of the runs), 4 pipelines each, a change per two runs, 3 stage results per
run, a done job per run, an image for every 20th run, and a few runs still queued or running.
The app runs in this process (``create_app``, no background threads) and each call is made
through Starlette's test client, so the time measured is the app's (routing, queries,
rendering), without a network. Each call is made ``--rounds`` times after one warm-up call;
the median and the slowest wall-clock times are printed, and the median CPU time of this
process (the app's own work, SQLite's included, PostgreSQL's not), which other load on a
shared machine inflates much less than the wall clock.

    .venv/bin/python bench/server_runs_page.py                 # SQLite
    .venv/bin/python bench/server_runs_page.py --db postgres   # needs CHUTE_TEST_POSTGRES_URL
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import warnings

from server_common import database, machine

warnings.filterwarnings("ignore", message=".*httpx.*")
from sqlalchemy import insert  # noqa: E402

from chute.store import Change, Database, Image, Job, Project, Run, StageResult  # noqa: E402

PIPELINES = ["test", "publish", "lint", "quotes-test"]
STAGES = ["build", "test", "production"]
STATUSES = ["success"] * 14 + ["failure"] * 4 + ["error", "cancelled"]


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def fill(db: Database, runs: int, projects: int = 10, batch: int = 10_000) -> dict[str, Any]:
    """Bulk-insert ``runs`` runs with their changes, stages, jobs and images; returns what was made."""
    rng = random.Random(42)
    now = datetime.now(UTC)
    start = now - timedelta(days=365)
    step = (now - start) / runs
    with db.engine.begin() as c:
        c.execute(insert(Project), [
            {"id": i + 1, "name": "big" if i == 0 else f"service-{i}", "repo_url": f"/srv/git/p{i}.git",
             "review_kind": "git", "review_project": f"p{i}", "default_branch": "main", "webhook_secret": "s",
             "settings": {}, "has_pipeline": True, "polled_refs": {}, "created_at": start}
            for i in range(projects)])
    run_id = change_id = stage_id = image_id = 0
    big_commit = ""  # a commit of the big project, about halfway back
    t0 = time.perf_counter()
    while run_id < runs:
        n = min(batch, runs - run_id)
        changes, rows, stages, jobs, images = [], [], [], [], []
        for _ in range(n):
            run_id += 1
            # Half of all runs belong to the big project; the rest are spread over the others.
            project = 1 if rng.random() < 0.5 else rng.randint(2, projects)
            at = start + step * run_id
            if run_id % 2 == 1:
                change_id += 1
                if project == 1 and run_id <= runs // 2:
                    big_commit = sha(change_id)
                branch = "main" if rng.random() < 0.7 else f"feature-{rng.randint(1, 50)}"
                changes.append({"id": change_id, "project_id": project, "kind": "push" if branch == "main" else
                                "patchset", "number": "" if branch == "main" else str(1000 + change_id),
                                "patchset": 0 if branch == "main" else 1, "commit": sha(change_id),
                                "ref": f"refs/heads/{branch}", "branch": branch, "author": "Ada <ada@example.org>",
                                "title": f"Change {change_id}", "url": "", "created_at": at})
            live = run_id > runs - 6  # the newest few are still queued or running
            status = ("queued" if run_id > runs - 3 else "running") if live else rng.choice(STATUSES)
            rows.append({"id": run_id, "project_id": project, "change_id": change_id,
                         "pipeline": PIPELINES[run_id % len(PIPELINES)], "status": status,
                         "reason": "stage test failed: exit 1" if status == "failure" else "",
                         "trigger": "webhook", "actor": "ada", "trusted": True, "params": {}, "graph": {
                             "stages": STAGES, "edges": [["build", "test"], ["test", "production"]]},
                         "result": {} if live else {"status": status, "duration": 61.5},
                         "created_at": at, "started_at": None if status == "queued" else at + timedelta(seconds=2),
                         "finished_at": None if live else at + timedelta(seconds=64)})
            for k, name in enumerate(STAGES):
                stage_id += 1
                stages.append({"id": stage_id, "run_id": run_id, "name": name, "status":
                               "pending" if live else ("failure" if status == "failure" and k == 1 else "success"),
                               "error": "", "exports": {}, "started_at": at, "finished_at": at + timedelta(seconds=20)})
            jobs.append({"run_id": run_id, "status": "queued" if status == "queued" else
                         ("claimed" if status == "running" else "done"), "attempts": 1, "max_attempts": 3,
                         "cancel_requested": False, "last_error": "", "payload": {"pipeline": "test"},
                         "created_at": at})
            if run_id % 20 == 0 and status == "success":
                image_id += 1
                images.append({"id": image_id, "run_id": run_id, "stage": "production",
                               "name": "registry.example.org/app", "tags": [f"t{run_id}", "latest"],
                               "digest": f"sha256:{run_id:064x}", "created_at": at})
        with db.engine.begin() as c:
            if changes:
                c.execute(insert(Change), changes)
            c.execute(insert(Run), rows)
            c.execute(insert(StageResult), stages)
            c.execute(insert(Job), jobs)
            if images:
                c.execute(insert(Image), images)
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as c:  # the ids were given explicitly: move the sequences past them
            for table in ("projects", "changes", "runs", "stage_results", "jobs", "images"):
                c.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))")
    if db.engine.dialect.name == "postgresql":  # as autovacuum would have (index-only scans need it)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    else:
        with db.engine.begin() as c:
            c.exec_driver_sql("ANALYZE")
    return {"runs": run_id, "changes": change_id, "big_commit": big_commit, "stages": stage_id, "images": image_id,
            "seconds": time.perf_counter() - t0}


def calls(runs: int, commit: str) -> list[tuple[str, str]]:
    mid = runs // 2
    return [
        ("dashboard", "/"),
        ("project page (big project, newest 50)", "/projects/big"),
        ("project page, page 1,000 runs back", f"/projects/big?before={runs - 2000}"),
        ("project page filtered: pipeline + status", "/projects/big?pipeline=publish&status=failure"),
        ("project page filtered: branch", "/projects/big?branch=feature-7"),
        ("project page of a small project", "/projects/service-3"),
        ("project page filtered: status running (3 of them)", "/projects/big?status=running"),
        ("run page", f"/runs/{mid}"),
        ("change page", f"/projects/big/changes/{commit}"),
        ("GET /api/v1/runs", "/api/v1/runs"),
        ("GET /api/v1/runs?project=big&status=failure", "/api/v1/runs?project=big&status=failure"),
        ("GET /api/v1/runs?status=queued (3 of them)", "/api/v1/runs?status=queued"),
        ("GET /api/v1/runs?before=mid&limit=500", f"/api/v1/runs?before={mid}&limit=500"),
        ("GET /api/v1/projects (last status per pipeline)", "/api/v1/projects"),
        ("GET /api/v1/projects/big", "/api/v1/projects/big"),
        ("GET /api/v1/projects/big/runs", "/api/v1/projects/big/runs"),
    ]


def measure(db_url: str, home: Path, runs: int, commit: str,
            rounds: int) -> list[tuple[str, float, float, float, int]]:
    from fastapi.testclient import TestClient

    from chute.server.app import create_app
    from chute.server.settings import Settings

    app = create_app(Settings(home=home, database_url=db_url, embedded_agent=False), start_background=False)
    out = []
    with TestClient(app) as client:
        for label, path in calls(runs, commit):
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            times, cpu = [], []
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                r = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                assert r.status_code == 200
            out.append((label, statistics.median(times), max(times), statistics.median(cpu), len(r.content)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--keep", type=Path, help="SQLite only: fill DIR/chute.db once and reuse it on later runs")
    args = ap.parse_args()
    if args.keep and args.db == "sqlite":
        args.keep.mkdir(parents=True, exist_ok=True)
        home = args.keep / "home"
        home.mkdir(exist_ok=True)
        url = f"sqlite:///{args.keep / 'chute.db'}"
        db = Database(url)
        db.migrate()  # adds new indexes to a kept database
        with db.session() as s:
            filled = s.get(Project, 1) is not None
        if not filled:
            made = fill(db, args.runs)
            (args.keep / "commit").write_text(made["big_commit"])
        db.dispose()
        report(args.db, url, home, args.runs, (args.keep / "commit").read_text(), args.rounds, None)
        return
    with tempfile.TemporaryDirectory(prefix="chute-bench-") as tmp, database(args.db, Path(tmp)) as url:
        home = Path(tmp) / "home"
        home.mkdir()
        db = Database(url)
        db.migrate()
        made = fill(db, args.runs)
        db.dispose()
        report(args.db, url, home, args.runs, made["big_commit"], args.rounds, made)


def report(kind: str, url: str, home: Path, runs: int, commit: str, rounds: int, made: dict[str, Any] | None) -> None:
    if made:
        print(f"# {kind}: {made['runs']:,} runs, {made['changes']:,} changes, {made['stages']:,} stage results, "
              f"{made['images']:,} images inserted in {made['seconds']:.1f} s; {machine()}")
    else:
        print(f"# {kind}: the kept database ({runs:,} runs); {machine()}")
    print(f"{'call':<52} {'median ms':>10} {'max ms':>8} {'CPU ms':>7} {'bytes':>9}")
    for label, med, worst, cpu, size in measure(url, home, runs, commit, rounds):
        flag = "" if med <= 200 else "  > 200 ms"
        print(f"{label:<52} {med:>10.1f} {worst:>8.1f} {cpu:>7.1f} {size:>9,}{flag}")


if __name__ == "__main__":
    main()
