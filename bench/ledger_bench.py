"""Ledger benchmark: a generated delivery history of ~1,000,000 events, then every dashboard
query, trace, export and scrape timed on it, and ingest through ``ledger.record``.

    .venv/bin/python bench/ledger_bench.py --db sqlite:////tmp/ledger-bench.db
    .venv/bin/python bench/ledger_bench.py --db postgresql+psycopg://postgres@127.0.0.1:55432/ledger_bench

The database is dropped and rebuilt unless ``--reuse`` is given (then generation is skipped
if it already holds events). The history: ``--projects`` projects of Zipf-like sizes over the
last ``--days`` days; changes with 1-4 patchsets, each tested by a 4-stage pipeline (15 % fail,
half of those are rechecked or rerun), 85 % merged and published by a 5-stage pipeline that
pushes an image; plain pushes; merged commits deployed in batches to staging then production
(5 % of production deploys roll back automatically, 2 % fail their health gate, 1 % re-deploy
an older image). Matching rows go into projects, changes, runs, stage_results and jobs, so the
Prometheus gauges and stage durations read real rows.

Targets: every dashboard query and trace <= 1 s; ingest >= 5,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from chute.store import Database, Event, Job, derived, ledger, utcnow  # noqa: E402

TEST_STAGES = ("build", "lint", "unit", "integration")
PUBLISH_STAGES = ("build", "test", "publish", "scan", "promote")
MIN = timedelta(minutes=1)


# ------------------------------------------------------------------ generation
class Gen:
    """Builds rows for every table in memory, then inserts them in id order."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rnd = random.Random(seed)
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.projects: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.stages: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []

    def sha(self) -> str:
        return f"{self.rnd.getrandbits(160):040x}"

    def ev(self, at: datetime, kind: str, project: str, **kw: Any) -> None:
        if at > self.now:
            return  # the future has not happened yet
        row = {"at": at, "kind": kind, "project": project, "actor": kw.pop("actor", "bench"), "change": "",
               "patchset": 0, "commit": "", "run_id": None, "stage": "", "image_digest": "", "environment": "",
               "revision": None, "command": "", "outcome": "", "data": {}}
        row.update(kw)
        self.events.append(row)

    def change_row(self, pid: int, kind: str, number: str, patchset: int, commit: str, at: datetime) -> int:
        cid = len(self.changes) + 1
        self.changes.append({"id": cid, "project_id": pid, "kind": kind, "number": number, "patchset": patchset,
                             "commit": commit, "ref": "", "branch": "main", "author": "dev", "title": "",
                             "url": "", "created_at": at})
        return cid

    def run(self, pid: int, project: str, cid: int, commit: str, change: str, patchset: int, pipeline: str,
            at: datetime, *, trigger: str, fail_rate: float, rerun_of: int | None = None) -> tuple[int, str, datetime]:
        rid = len(self.runs) + 1
        stages = TEST_STAGES if pipeline == "test" else PUBLISH_STAGES
        common = {"change": change, "patchset": patchset, "commit": commit, "run_id": rid}
        self.ev(at, "run.queued", project, data={"pipeline": pipeline, "trigger": trigger}, **common)
        t = at + timedelta(seconds=self.rnd.uniform(1, 90))
        started = t
        self.ev(t, "run.started", project, data={"attempt": 1, "agent": "a1"}, actor="agent:a1", **common)
        outcome = "failure" if self.rnd.random() < fail_rate else "success"
        failing = self.rnd.randrange(len(stages)) if outcome == "failure" else -1
        for i, name in enumerate(stages):
            dur = timedelta(seconds=self.rnd.lognormvariate(3.5, 0.8))
            status = "failure" if i == failing else ("skipped" if failing >= 0 and i > failing else "success")
            if status == "skipped":
                dur = timedelta(0)
            self.stages.append({"run_id": rid, "name": name, "status": status, "error": "", "exports": {},
                                "started_at": t, "finished_at": t + dur, "reused_from": None})
            t += dur
            self.ev(t, "stage.finished", project, stage=name, outcome=status, actor="agent",
                    data={"error": "exit status 1"} if status == "failure" else {}, **common)
            if name == "publish" and status == "success":
                digest = "sha256:" + f"{self.rnd.getrandbits(256):064x}"
                self.ev(t, "image.published", project, stage=name, image_digest=digest, outcome="pushed",
                        data={"name": f"registry.local/{project}", "tags": [commit[:12]]}, **common)
        self.ev(t, "run.finished", project, outcome=outcome, actor="agent:a1",
                data={"pipeline": pipeline, "trigger": trigger, "rerun_of": rerun_of,
                      "duration": (t - started).total_seconds()}, **common)
        done = t <= self.now
        self.runs.append({"id": rid, "project_id": pid, "change_id": cid, "pipeline": pipeline,
                          "status": outcome if done else "running", "reason": "", "trigger": trigger,
                          "actor": "bench", "trusted": pipeline != "test", "rerun_of": rerun_of, "reuse_from": None,
                          "params": {}, "result": {}, "graph": {}, "created_at": at, "started_at": started,
                          "finished_at": t if done else None})
        self.jobs.append({"run_id": rid, "status": "done" if done else "claimed", "attempts": 1, "max_attempts": 3,
                          "agent": "a1", "lease_until": None, "cancel_requested": False, "not_before": None,
                          "last_error": "", "payload": {}, "created_at": at})
        return rid, outcome, t

    def project(self, pid: int, name: str, n_changes: int, start: datetime, days: int) -> None:
        rnd = self.rnd
        self.projects.append({"id": pid, "name": name, "repo_url": f"https://git.example.org/{name}",
                              "review_kind": "gerrit", "review_project": name, "default_branch": "main",
                              "webhook_secret": "x", "settings": {}, "has_pipeline": True, "config_error": None,
                              "polled_refs": {}, "created_at": start})
        self.ev(start, "project.added", name, data={"repo": f"https://git.example.org/{name}"})
        times = sorted(start + timedelta(seconds=rnd.uniform(0, days * 86400)) for _ in range(n_changes))
        pending: list[str] = []
        batch = rnd.randint(1, 5)
        env_rev = {"staging": 0, "production": 0}
        number = 1000
        for t in times:
            if rnd.random() < 0.10:  # a plain push
                commit = self.sha()
                cid = self.change_row(pid, "push", "", 0, commit, t)
                self.ev(t, "change.pushed", name, commit=commit, data={"ref": "refs/heads/main", "branch": "main"})
                _, outcome, end = self.run(pid, name, cid, commit, "", 0, "publish", t + MIN, trigger="webhook",
                                           fail_rate=0.05)
                merged_at, merged = end, commit
            else:
                number += 1
                change = str(number)
                title = f"Change {number}" if rnd.random() > 0.02 else f'Revert "Change {number - 7}"'
                tu = t
                ok = False
                for ps in range(1, rnd.choices((1, 2, 3, 4), (40, 30, 20, 10))[0] + 1):
                    commit = self.sha()
                    cid = self.change_row(pid, "patchset", change, ps, commit, tu)
                    self.ev(tu, "change.uploaded", name, change=change, patchset=ps, commit=commit,
                            data={"ref": f"refs/changes/{number % 100:02d}/{number}/{ps}", "branch": "main",
                                  "title": title, "url": ""})
                    rid, outcome, end = self.run(pid, name, cid, commit, change, ps, "test",
                                                 tu + timedelta(seconds=rnd.uniform(5, 120)),
                                                 trigger="webhook", fail_rate=0.15)
                    if outcome == "failure" and rnd.random() < 0.5:
                        trig = rnd.choice(("recheck", "rerun"))
                        at = end + timedelta(minutes=rnd.uniform(2, 60))
                        self.ev(at, "run.recheck" if trig == "recheck" else "run.rerun", name, change=change,
                                patchset=ps, commit=commit, data={"comment": "recheck"} if trig == "recheck"
                                else {"of": rid, "failed_only": False, "reused": []})
                        _, outcome, end = self.run(pid, name, cid, commit, change, ps, "test", at, trigger=trig,
                                                   fail_rate=0.3, rerun_of=rid)
                    ok = outcome == "success"
                    tu = end + timedelta(hours=rnd.uniform(0.5, 20))
                if not ok or rnd.random() > 0.85:
                    continue  # abandoned or still in review
                merged_at = tu
                merged = self.sha()
                cid = self.change_row(pid, "push", change, 0, merged, merged_at)
                self.ev(merged_at, "change.merged", name, change=change, commit=merged,
                        data={"ref": "refs/heads/main", "branch": "main", "title": title, "url": ""})
                _, outcome, end = self.run(pid, name, cid, merged, change, 0, "publish", merged_at + MIN,
                                           trigger="webhook", fail_rate=0.05)
            pending.insert(0, merged)  # newest first, as deploy.finished lists them
            if len(pending) >= batch:
                self.deploy_batch(name, pending, end + timedelta(minutes=rnd.uniform(5, 90)), env_rev)
                pending = []
                batch = rnd.randint(1, 5)

    def deploy_batch(self, name: str, commits: list[str], at: datetime, env_rev: dict[str, int]) -> None:
        rnd = self.rnd
        digest = "sha256:" + f"{rnd.getrandbits(256):064x}"
        self.deploy(name, "staging", commits, at, digest, env_rev, "healthy")
        at += timedelta(minutes=rnd.uniform(20, 240))
        r = rnd.random()
        if r < 0.01:  # someone re-deploys an older image first: no new commits
            self.deploy(name, "production", [], at, "sha256:" + "0" * 64, env_rev, "healthy")
            at += timedelta(minutes=30)
        if r < 0.05:
            self.deploy(name, "production", commits, at, digest, env_rev, "rolled-back")
            at += timedelta(hours=rnd.uniform(1, 24))
        elif r < 0.07:
            self.deploy(name, "production", commits, at, digest, env_rev, "failed")
            at += timedelta(hours=rnd.uniform(1, 24))
        self.deploy(name, "production", commits, at, digest, env_rev, "healthy")

    def deploy(self, name: str, env: str, commits: list[str], at: datetime, digest: str,
               env_rev: dict[str, int], outcome: str) -> None:
        env_rev[env] += 1
        rev = env_rev[env]
        base = {"image": f"registry.local/{name}@{digest}", "kind": "deploy", "previous_revision": rev - 1 or None}
        common = {"environment": env, "image_digest": digest, "command": f"chute deploy {env}"}
        self.ev(at, "deploy.queued", name, data={**base, "reason": "promotion"}, **common)
        self.ev(at + MIN, "deploy.started", name, revision=rev, data=base, **common)
        healthy = outcome == "healthy"
        self.ev(at + 4 * MIN, "health.verdict", name, revision=rev, outcome="healthy" if healthy else "unhealthy",
                data={"checks": {"http": "ok" if healthy else "503"}, "reason": ""}, **common)
        self.ev(at + 5 * MIN, "deploy.finished", name, revision=rev, outcome=outcome,
                data={**base, "commits": list(commits), "reason": ""}, **common)
        if outcome == "rolled-back":
            env_rev[env] += 1
            back = {"from_revision": rev, "to_revision": rev - 1, "automatic": True, "reason": "health gate"}
            self.ev(at + 5 * MIN, "rollback.started", name, data=back, **common)
            rb = {**base, "kind": "auto-rollback", "previous_revision": rev}
            self.ev(at + 6 * MIN, "deploy.started", name, revision=rev + 1, data=rb, **common)
            self.ev(at + 8 * MIN, "deploy.finished", name, revision=rev + 1, outcome="healthy",
                    data={**rb, "commits": [], "reason": "automatic rollback"}, **common)
            self.ev(at + 8 * MIN, "rollback.finished", name, outcome="restored",
                    data={**back, "time_to_restore": 7 * 60.0}, **common)


def generate(target_events: int, n_projects: int, days: int, seed: int) -> Gen:
    now = utcnow()
    gen = Gen(seed, now)
    start = now - timedelta(days=days)
    weights = [1 / (i + 1) ** 0.8 for i in range(n_projects)]
    total_changes = int(target_events / 25)  # measured: about 25 events per change in this mix
    for i, w in enumerate(weights):
        gen.project(i + 1, f"service-{i + 1:02d}", max(5, int(total_changes * w / sum(weights))), start, days)
    gen.events.sort(key=lambda e: e["at"])
    for i, e in enumerate(gen.events, 1):
        e["id"] = i
    # a few runs still waiting for an agent, for the queue gauges
    return gen


def insert(db: Database, gen: Gen) -> None:
    from chute.store.models import Change, Project, Run, StageResult

    with db.engine.begin() as conn:
        for table, rows in ((Project.__table__, gen.projects), (Change.__table__, gen.changes),
                            (Run.__table__, gen.runs), (StageResult.__table__, gen.stages),
                            (Job.__table__, gen.jobs), (Event.__table__, gen.events)):
            for i in range(0, len(rows), 20000):
                conn.execute(table.insert(), rows[i:i + 20000])
        if db.engine.dialect.name == "postgresql":
            for t in ("projects", "changes", "runs", "stage_results", "jobs", "events"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                                     f"(SELECT COALESCE(MAX(id), 1) FROM {t}))"))


def fresh_database(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    base, _, name = url.rpartition("/")
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


# ------------------------------------------------------------------ timing
CLK_TCK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by this process plus, on PostgreSQL, the server backends serving this
    benchmark's database: on a machine shared with other work, wall time measures the queue for
    the CPU as much as the query, while CPU time is what the query costs on a free core."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pg = db.engine.dialect.name == "postgresql"

    def _backends(self) -> list[int]:
        with self.db.engine.connect() as c:
            return list(c.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
                        .scalars())

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def sample(self) -> tuple[float, dict[int, float]]:
        backends = {pid: self._cpu(pid) for pid in self._backends()} if self.pg else {}
        return time.process_time(), backends

    def since(self, start: tuple[float, dict[int, float]]) -> float:
        proc, backends = start
        used = time.process_time() - proc
        if self.pg:
            for pid in set(backends) | set(self._backends()):
                used += self._cpu(pid) - backends.get(pid, self._cpu(pid) if pid not in backends else 0.0)
        return used


def timed(fn: Callable[[], Any], meter: CpuMeter, repeat: int = 3) -> tuple[float, float, float, Any]:
    """(first run, best of ``repeat``) wall seconds, best CPU seconds, and the last result."""
    times, cpus, result = [], [], None
    for _ in range(repeat):
        start = meter.sample()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
        cpus.append(meter.since(start))
    return times[0], min(times), min(cpus), result


def ingest(db: Database, per_tx: int, total: int, *, many: bool = False) -> float:
    """Events per second through ledger.record (or ledger.record_many), ``per_tx`` events per
    transaction."""
    kinds = ("stage.finished", "stage.finished", "stage.finished", "image.published", "run.finished",
             "run.queued", "run.started", "change.uploaded", "deploy.started", "deploy.finished")
    started = time.perf_counter()
    n = 0
    while n < total:
        with db.session() as s:
            batch = []
            for i in range(per_tx):
                kind = kinds[(n + i) % len(kinds)]
                batch.append(dict(kind=kind, project="ingest-bench", actor="agent:bench", stage="unit",
                                  commit=f"{n + i:040x}", outcome="success",
                                  environment="production" if kind.startswith("deploy") else "",
                                  revision=n + i if kind.startswith("deploy") else None,
                                  data={"pipeline": "test", "trigger": "webhook", "commits": []}))
            if many:
                ledger.record_many(s, batch)
            else:
                for fields in batch:
                    ledger.record(s, **fields)
        n += per_tx
    return n / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="database URL (the database is dropped and rebuilt)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--projects", type=int, default=40)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reuse", action="store_true", help="keep an existing generated database")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    from chute.metrics import (
        compute_metrics,
        environment_history,
        make_registry,
        trace_change,
        trace_commit,
        trace_deployment,
    )

    results: dict[str, Any] = {"load_average_at_start": os.getloadavg(),
                               "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                               "python": platform.python_version(), "db": args.db.split("://")[0],
                               "date": datetime.now(UTC).strftime("%Y-%m-%d")}
    db = Database(args.db)
    with db.session() as s:
        have = 0
        try:
            have = s.scalar(sa.select(sa.func.count()).select_from(Event)) or 0
        except sa.exc.DatabaseError:
            s.rollback()
    if not (args.reuse and have):
        db.dispose()
        fresh_database(args.db)
        db = Database(args.db)
        db.migrate()
        t = time.perf_counter()
        gen = generate(args.events, args.projects, args.days, args.seed)
        t_gen = time.perf_counter() - t
        t = time.perf_counter()
        insert(db, gen)
        results["generate_seconds"] = round(t_gen, 1)
        results["insert_seconds"] = round(time.perf_counter() - t, 1)
        del gen
        # The generated rows bypassed ledger.record, so build the read model from them, which is
        # also the figure for derived.rebuild on a million events.
        t = time.perf_counter()
        counts = derived.rebuild(db)
        results["rebuild_read_model_seconds"] = round(time.perf_counter() - t, 1)
        results["read_model_rows"] = counts
        if db.engine.dialect.name == "postgresql":  # what autovacuum does on a live server
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        else:
            with db.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))
        print(f"generated in {t_gen:.0f} s, inserted in {results['insert_seconds']:.0f} s, read model rebuilt in "
              f"{results['rebuild_read_model_seconds']:.0f} s {counts}", flush=True)
    with db.read_session() as s:
        results["events"] = s.scalar(sa.select(sa.func.count()).select_from(Event))
        by_kind = dict(s.execute(sa.select(Event.kind, sa.func.count()).group_by(Event.kind)).all())
        per_project = s.execute(sa.select(Event.project, sa.func.count()).where(Event.project.like("service-%"))
                                .group_by(Event.project).order_by(sa.func.count().desc())).all()
    results["kinds"] = by_kind
    big, typical = per_project[0][0], per_project[len(per_project) // 2][0]
    results["biggest_project"] = f"{big} ({per_project[0][1]} events)"
    results["typical_project"] = f"{typical} ({per_project[len(per_project) // 2][1]} events)"
    print(f"ledger: {results['events']} events, {len(per_project)} projects; biggest {results['biggest_project']}, "
          f"median {results['typical_project']}", flush=True)

    q: dict[str, dict[str, float]] = {}

    meter = CpuMeter(db)

    def record(name: str, fn: Callable[[], Any], repeat: int = 3) -> Any:
        first, best, cpu, out = timed(fn, meter, repeat)
        q[name] = {"first_s": round(first, 3), "best_s": round(best, 3), "cpu_s": round(cpu, 3)}
        print(f"  {name:<58} first {first:7.3f} s   best {best:7.3f} s   cpu {cpu:7.3f} s", flush=True)
        return out

    now = utcnow()
    print("dashboard queries (compute_metrics):")
    m = record("metrics: all projects, all time", lambda: compute_metrics(db))
    results["metrics_all_time"] = {k: m[k] for k in ("deployment_count", "patches_delivered", "patches_in_flight",
                                                     "change_failure_rate", "deployment_frequency_bucket",
                                                     "lead_time_from_upload_median_seconds")}
    record("metrics: all projects, last 90 days", lambda: compute_metrics(db, since=now - timedelta(days=90)))
    record("metrics: biggest project, all time", lambda: compute_metrics(db, project=big))
    record("metrics: biggest project, last 90 days",
           lambda: compute_metrics(db, project=big, since=now - timedelta(days=90)))
    record("metrics: median project, last 90 days",
           lambda: compute_metrics(db, project=typical, since=now - timedelta(days=90)))
    record("metrics: biggest project, staging, 30 days",
           lambda: compute_metrics(db, project=big, since=now - timedelta(days=30), environment="staging"))

    print("pages (HTTP through the ASGI app):")
    from fastapi.testclient import TestClient

    from chute.server.app import create_app
    from chute.server.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    app = create_app(Settings(home=home, database_url=args.db), start_background=False)
    with TestClient(app) as client:
        def page(url: str) -> Any:
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
            return r

        record("GET /metrics/dashboard (all projects, 12 weeks)", lambda: page("/metrics/dashboard"))
        record("GET /metrics/dashboard (all projects, all time)", lambda: page("/metrics/dashboard?weeks=all"))
        record("GET /metrics/dashboard (biggest project, 12 weeks)", lambda: page(f"/metrics/dashboard?project={big}"))
        record("GET /api/v1/metrics (all projects, all time)", lambda: page("/api/v1/metrics"))

        print("traces:")
        rnd = random.Random(1)
        with db.read_session() as s:
            merged = s.execute(sa.select(Event.project, Event.change, Event.commit).where(
                Event.kind == "change.merged").order_by(Event.id)).all()
            deploys = s.execute(sa.select(Event.project, Event.environment, Event.revision).where(
                Event.kind == "deploy.finished", Event.environment == "production").order_by(Event.id)).all()
        generated = {f"service-{i + 1:02d}" for i in range(args.projects)}
        merged = [r for r in merged if r[0] in generated]
        deploys = [d for d in deploys if d[0] in generated]
        big_merged = [r for r in merged if r[0] == big]
        picks = rnd.sample(big_merged, 10) + rnd.sample(merged, 10)
        dpicks = rnd.sample([d for d in deploys if d[0] == big], 10) + rnd.sample(deploys, 10)

        def many(label: str, calls: list[Callable[[], Any]]) -> None:
            times, cpus = [], []
            for call in calls:
                start = meter.sample()
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
                cpus.append(meter.since(start))
            q[label] = {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4),
                        "max_cpu_s": round(max(cpus), 4), "n": len(times)}
            print(f"  {label:<58} median {statistics.median(times):6.3f} s   max {max(times):6.3f} s   "
                  f"max cpu {max(cpus):6.3f} s ({len(times)} calls)", flush=True)

        many("trace_change", [lambda p=p: trace_change(db, p[0], p[1]) for p in picks])
        many("trace_commit (12-char prefix of the merged commit)",
             [lambda p=p: trace_commit(db, p[0], p[2][:12]) for p in picks])
        many("trace_deployment (production)", [lambda d=d: trace_deployment(db, d[0], d[1], d[2]) for d in dpicks])
        many("environment_history (100 newest)", [lambda d=d: environment_history(db, d[0], d[1], 100)
                                                  for d in dpicks[:10]])
        many("GET change trace page", [lambda p=p: page(f"/projects/{p[0]}/trace/change/{p[1]}") for p in picks])
        many("GET deployment trace page",
             [lambda d=d: page(f"/projects/{d[0]}/trace/deploy/{d[1]}/{d[2]}") for d in dpicks])

    print("prometheus (/metrics collector):")
    registry, _collector = make_registry(db)
    from prometheus_client import generate_latest

    start = meter.sample()
    t = time.perf_counter()
    text = generate_latest(registry)
    wall, cpu = time.perf_counter() - t, meter.since(start)
    q["prometheus: first scrape (aggregates the whole ledger)"] = {"first_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    print(f"  {'prometheus: first scrape (aggregates the whole ledger)':<58} {wall:7.3f} s   cpu {cpu:7.3f} s "
          f"({len(text)} bytes)", flush=True)

    print("ingest through ledger.record (into the full ledger):")
    for per_tx, total, many in ((1, 3000, False), (10, 20000, False), (100, 50000, False),
                                (10, 20000, True), (100, 50000, True)):
        start = meter.sample()
        rate = ingest(db, per_tx, total, many=many)
        cpu_rate = total / max(meter.since(start), 1e-9)
        how = "record_many" if many else "record"
        results[f"ingest_{how}_{per_tx}_per_tx_events_per_s"] = round(rate)
        results[f"ingest_{how}_{per_tx}_per_tx_events_per_cpu_s"] = round(cpu_rate)
        print(f"  {how:<11} {per_tx:>3} event(s) per transaction: {rate:7.0f} events/s wall, {cpu_rate:7.0f} "
              f"events per CPU second ({total} events)", flush=True)
    record("prometheus: scrape after the ingest above (143,000 new events)", lambda: generate_latest(registry),
           repeat=1)
    with db.session() as s:
        for i in range(100):
            ledger.record(s, "deploy.finished", project=big, environment="production", outcome="healthy",
                          revision=10**6 + i, data={"kind": "deploy", "commits": []})
    record("prometheus: scrape after 100 new events", lambda: generate_latest(registry), repeat=1)
    record("prometheus: scrape with nothing new", lambda: generate_latest(registry))

    print("export:")
    # Peak RSS is VmHWM of the child's own image: ru_maxrss would carry the parent's peak over exec.
    code = (f"import sys, time, re; sys.path.insert(0, {str(ROOT)!r})\n"
            "from chute.store import Database\nfrom chute.metrics import export_events\n"
            f"db = Database({args.db!r}); t = time.perf_counter()\n"
            "n = export_events(db, out=open('/dev/null', 'w'))\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print(n, time.perf_counter() - t, hwm)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    n, secs, rss_kb = int(out[0]), float(out[1]), int(out[2])
    results["export_events_per_s"] = round(n / secs)
    results["export_peak_rss_mb"] = round(rss_kb / 1024)
    print(f"  export_events (JSON lines): {n} events in {secs:.1f} s = {n / secs:,.0f} events/s, "
          f"peak RSS {rss_kb / 1024:.0f} MB", flush=True)
    results["queries"] = q
    results["load_average_at_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): start {results['load_average_at_start']}, "
          f"end {results['load_average_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    slow = {k: v for k, v in q.items() if not k.startswith("prometheus: first")
            and max(v.get("best_s", 0), v.get("max_s", 0)) > 1.0}
    print("over 1 s:", ", ".join(slow) if slow else "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
