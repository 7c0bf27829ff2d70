"""What must hold in the database after any number of crashes (docs/crash-safety.md, "What is checked").

Each check returns the problems it found as sentences, so a failing test prints all of them at
once. They read the database directly (SQLite or PostgreSQL), after every chute process is gone.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

FINAL = ("success", "failure", "error", "cancelled")
RUN_EVENTS = ("run.queued", "run.started", "run.requeued", "run.finished", "run.cancelled")


@dataclass
class Summary:
    runs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)  # attempts per run -> how many runs
    requeues: int = 0
    given_up: int = 0  # failed by the server after max_attempts lost leases
    waits: list[tuple[float, int]] = field(default_factory=list)  # (seconds queued before the first start, run)


def _rows(conn: sa.Connection, sql: str, **params: Any) -> list[Any]:
    return list(conn.execute(sa.text(sql), params))


def runs_problems(url: str, acknowledged: set[int]) -> tuple[list[str], Summary]:
    """Runs, jobs, stages, logs and the ledger agree, and nothing acknowledged is missing."""
    problems: list[str] = []
    summary = Summary()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            runs = {r.id: r for r in _rows(c, "SELECT id, status, reason, pipeline, created_at, started_at FROM runs")}
            jobs = _rows(c, "SELECT id, run_id, status, attempts, max_attempts, agent, lease_until FROM jobs")
            events = _events(c)
            stages = _rows(c, "SELECT run_id, name, status FROM stage_results")
            chunks = _rows(c, "SELECT run_id, seq, COUNT(*) AS n FROM log_chunks GROUP BY run_id, seq")
            images = _rows(c, "SELECT id, run_id FROM images")
            all_events_runs = _rows(c, "SELECT DISTINCT run_id FROM events WHERE run_id IS NOT NULL")
    finally:
        engine.dispose()
    summary.runs = len(runs)

    lost = sorted(acknowledged - set(runs))
    if lost:
        problems.append(f"runs acknowledged to the client but missing from the database: {lost}")

    # ---- orphans: rows pointing at runs that do not exist
    for what, ids in (("stage_results", {s.run_id for s in stages}), ("log_chunks", {c.run_id for c in chunks}),
                      ("images", {i.run_id for i in images}), ("jobs", {j.run_id for j in jobs}),
                      ("events", {e.run_id for e in all_events_runs})):
        orphans = sorted(ids - set(runs))
        if orphans:
            problems.append(f"{what} rows point at runs that do not exist: {orphans[:20]}")
    dup_chunks = [(c.run_id, c.seq) for c in chunks if c.n > 1]
    if dup_chunks:
        problems.append(f"log chunks stored twice (run, seq): {dup_chunks[:20]}")

    # ---- one job per run; its status follows the run's
    jobs_of: dict[int, list[Any]] = defaultdict(list)
    for j in jobs:
        jobs_of[j.run_id].append(j)
    events_of: dict[int, list[Any]] = defaultdict(list)
    for e in events:
        events_of[e.run_id].append(e)
    stages_of: dict[int, list[Any]] = defaultdict(list)
    for st in stages:
        stages_of[st.run_id].append(st)

    for run_id, run in sorted(runs.items()):
        if run.started_at is not None:
            summary.waits.append((round((_when(run.started_at) - _when(run.created_at)).total_seconds(), 1), run_id))
        final = run.status in FINAL
        summary.outcomes[run.status] += 1
        if not final:
            problems.append(f"run {run_id} is still {run.status} ({run.reason or 'no reason'})")
        if final and run.status != "success" and not (run.reason or "").strip():
            problems.append(f"run {run_id} ended {run.status} without a reason")
        js = jobs_of.get(run_id, [])
        if run.pipeline != "config" and len(js) != 1:
            problems.append(f"run {run_id} has {len(js)} jobs (one expected)")
        for j in js:
            if (j.status == "done") != final:
                problems.append(f"run {run_id} is {run.status} but its job {j.id} is {j.status}")
            if j.status == "claimed":
                problems.append(f"job {j.id} of run {run_id} is still claimed by {j.agent} "
                                f"(lease until {j.lease_until})")
            if j.attempts > j.max_attempts:
                problems.append(f"job {j.id} of run {run_id} ran {j.attempts} times (max {j.max_attempts})")
            summary.attempts[j.attempts] += 1
        if final:
            unfinished = [st.name for st in stages_of.get(run_id, []) if st.status in ("running", "pending")]
            if unfinished:
                problems.append(f"run {run_id} is {run.status} but its stages {unfinished} are still "
                                "running/pending (a half-written record)")
        if run.status == "success":
            bad = [(st.name, st.status) for st in stages_of.get(run_id, []) if st.status not in ("success", "reused")]
            if bad:
                problems.append(f"run {run_id} succeeded but its stages say {bad}")
        problems.extend(_ledger_problems(run_id, run, events_of.get(run_id, []), js, summary))
    return problems, summary


def _when(value: Any) -> Any:
    from datetime import UTC, datetime

    if isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _events(c: sa.Connection) -> list[Any]:
    q = sa.text("SELECT id, kind, run_id, actor, outcome, data FROM events WHERE kind IN "
                f"({', '.join(repr(k) for k in RUN_EVENTS)}) AND run_id IS NOT NULL ORDER BY id")
    return list(c.execute(q))


def _data(e: Any) -> dict[str, Any]:
    import json

    d = e.data
    if isinstance(d, str):
        d = json.loads(d or "{}")
    return d or {}


def _ledger_problems(run_id: int, run: Any, events: list[Any], jobs: list[Any], summary: Summary) -> list[str]:
    """The run's events replayed as a state machine: queued -> started -> (requeued -> started)* -> finished.

    Two ``run.started`` without a ``run.requeued`` between them would be two agents running it at
    once; two ``run.finished`` would be a run completed twice; a ``run.finished`` written by an agent
    other than the one that last started it would be a stale agent's result overwriting another's.
    """
    problems: list[str] = []
    state, holder, starts, terminal = "none", "", 0, []
    for e in events:
        k = e.kind
        if k == "run.queued":
            if state != "none":
                problems.append(f"run {run_id}: run.queued (event {e.id}) after {state}")
            state = "queued"
        elif k == "run.started":
            starts += 1
            if state != "queued":
                problems.append(f"run {run_id}: run.started (event {e.id}) while {state}: two attempts at once")
            state, holder = "running", str(_data(e).get("agent", ""))
        elif k == "run.requeued":
            summary.requeues += 1
            if state != "running":
                problems.append(f"run {run_id}: run.requeued (event {e.id}) while {state}")
            state = "queued"
        elif k in ("run.finished", "run.cancelled"):
            terminal.append(e)
            if state not in ("running", "queued"):
                problems.append(f"run {run_id}: {k} (event {e.id}) while {state}")
            if k == "run.finished" and e.actor.startswith("agent:") and e.actor != f"agent:{holder}":
                problems.append(f"run {run_id}: finished by {e.actor} but last started by agent:{holder}")
            if k == "run.finished" and e.actor == "server":
                summary.given_up += 1
            state = "final"
    if run.status in FINAL:
        if len(terminal) != 1:
            problems.append(f"run {run_id} is {run.status} with {len(terminal)} run.finished/cancelled events")
        elif (terminal[0].outcome or "") != run.status:
            problems.append(f"run {run_id} is {run.status} but its ledger says {terminal[0].outcome}")
    elif terminal:
        problems.append(f"run {run_id} is {run.status} but the ledger finished it (event {terminal[0].id})")
    for j in jobs:
        if j.attempts != starts:
            problems.append(f"run {run_id}: its job counts {j.attempts} attempts, the ledger {starts} starts")
    return problems


def deployment_problems(url: str) -> list[str]:
    """Deployments ended, one healthy revision per environment, one deploy.finished per ended revision."""
    problems: list[str] = []
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            deps = _rows(c, "SELECT d.environment_id, e.name AS env, d.revision, d.status FROM deployments d "
                            "JOIN environments e ON e.id = d.environment_id ORDER BY d.environment_id, d.revision")
            finished = Counter((r.environment, r.revision) for r in _rows(
                c, "SELECT environment, revision FROM events WHERE kind = 'deploy.finished'"))
            requests = _rows(c, "SELECT id, status FROM deploy_requests WHERE status IN ('queued', 'running')")
    finally:
        engine.dispose()
    healthy = Counter(d.env for d in deps if d.status == "healthy")
    for env, n in healthy.items():
        if n > 1:
            problems.append(f"environment {env} has {n} healthy revisions")
    for d in deps:
        if d.status in ("pending", "deploying"):
            problems.append(f"{d.env} revision {d.revision} is still {d.status}")
        elif finished[(d.env, d.revision)] != 1:
            problems.append(f"{d.env} revision {d.revision} ({d.status}) has {finished[(d.env, d.revision)]} "
                            "deploy.finished events (one expected)")
    if requests:
        problems.append(f"deploy requests still waiting or running: {[(r.id, r.status) for r in requests]}")
    return problems


def dump(url: str, path: Any) -> None:
    """The runs, jobs and run events as JSON lines, for reading a failure after the database is gone."""
    import json

    engine = sa.create_engine(url)
    try:
        with engine.connect() as c, open(path, "w") as out:
            for table, sql in (("run", "SELECT * FROM runs ORDER BY id"), ("job", "SELECT * FROM jobs ORDER BY id"),
                               ("event", "SELECT id, at, kind, run_id, actor, outcome, data FROM events "
                                         "WHERE run_id IS NOT NULL ORDER BY id")):
                for row in c.execute(sa.text(sql)):
                    out.write(json.dumps({"table": table, **row._asdict()}, default=str) + "\n")
    finally:
        engine.dispose()


def sqlite_problems(path: str) -> list[str]:
    """``PRAGMA integrity_check`` says ok and ``PRAGMA foreign_key_check`` finds nothing."""
    con = sqlite3.connect(path)
    try:
        integrity = [r[0] for r in con.execute("PRAGMA integrity_check")]
        fks = list(con.execute("PRAGMA foreign_key_check"))
    finally:
        con.close()
    out = []
    if integrity != ["ok"]:
        out.append(f"PRAGMA integrity_check: {integrity[:10]}")
    if fks:
        out.append(f"PRAGMA foreign_key_check: {fks[:10]}")
    return out
