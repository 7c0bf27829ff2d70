"""100 runs while the server and the agents are killed with SIGKILL at random moments.

Real processes: ``chute serve --no-agent`` (SQLite under its CHUTE_HOME, or PostgreSQL) and
three ``chute agent`` processes running real pipelines of a real git repository:

* ``quick`` (most runs): two stages whose steps need no container (``exports``). The run is all
  agent protocol -- claim, checkout, graph, stage updates, logs, completion -- which is where
  a crash can lose or duplicate state, and it is cheap enough for 100 runs in the time bound.
* ``box`` (one run in 25, and the runs of the targeted kills): a Blubber image built from
  ``localhost/debian:bookworm`` (cached after the warm-up run) and a ``run`` step in podman that
  sleeps 2-5 s and fails one time in ten. A killed agent leaves this
  container behind; its janitor must remove it.

Building an image for every run costs about 10 s on this 2-core machine, 27 s with three agents
at once (measured): 100 of them would take 15 minutes. So only the box runs build.

The chaos: every 4-10 s the server or one agent gets SIGKILL -- the process alone (as the OOM
killer does) or its whole process group (a machine or unit going down) -- and is restarted
0.3-2.5 s later; twice an agent is killed on purpose while its container runs. The lease is
3 s and the reaper looks every second, so abandoned jobs come back within the bound. When 100
runs were acknowledged (HTTP 201) and every run ended, everything is killed one last time and
the database is checked (tests/chaos/checks.py).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_repo

from . import checks
from .conftest import need_podman
from .harness import Cluster, Proc, containers, podman, tail

pytestmark = [pytest.mark.slow, pytest.mark.podman]

RUNS = 100
BOX_SHARE = 0.04
KILL_EVERY = (3.0, 7.0)  # seconds between two kills
RUNS_PER_KILL = 4  # a run is queued only while there are fewer than this many per kill so far
BACKLOG = 4  # runs are queued while fewer wait: the chaos then hits runs in progress, not a queue
TARGETED_AT = (30, 65)  # after this many acknowledged runs, kill an agent while its container runs
CHAOS_BUDGET = 210.0  # seconds to get 100 runs acknowledged under chaos
QUIET_BUDGET = 90.0  # seconds for every run to end once the chaos stops

BLUBBER = """version: v4
base: localhost/debian:bookworm
lives: {in: /srv/app}
variants:
  test:
    copies: [local]
    entrypoint: [sh, test.sh]
"""

CONFIG = """pipelines:
  quick:
    stages:
      - name: lint
        exports: {verdict: clean}
      - name: unit
        exports: {verdict: passed}
  box:
    blubberfile: blubber.yaml
    stages:
      - name: test
"""

TEST_SH = """r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
echo "chaos box run: r=$r"
sleep $((r % 3 + 2)).$((r % 9 + 1))
if [ $((r % 10)) -eq 0 ]; then echo "failing on purpose"; exit 1; fi
echo ok
"""


def _trigger(http: httpx.Client, pipeline: str) -> int | None:
    """Queue one run; its id once the server acknowledged it (201), else None (outcome unknown)."""
    try:
        r = http.post("/api/v1/projects/chaos/trigger", json={"pipelines": [pipeline]}, timeout=5)
    except httpx.HTTPError:
        return None
    if r.status_code != 201:
        return None
    (run,) = r.json()
    return int(run["id"])


def _backlog(http: httpx.Client) -> int:
    """Runs waiting for an agent (a large number when the server does not answer)."""
    try:
        r = http.get("/api/v1/runs", params={"project": "chaos", "status": "queued", "limit": 50}, timeout=5)
    except httpx.HTTPError:
        return 10**6
    return len(r.json()) if r.status_code == 200 else 10**6


def _runs(http: httpx.Client) -> list[dict]:
    out: list[dict] = []
    before = None
    while True:
        params = {"project": "chaos", "limit": 500} | ({"before": before} if before else {})
        page = http.get("/api/v1/runs", params=params, timeout=10).json()
        out += page
        if len(page) < 500:
            return out
        before = page[-1]["id"]


def _wait_quiet(cluster: Cluster, deadline: float) -> list[dict]:
    """Every run final (server and agents up); the last listing of runs."""
    runs: list[dict] = []
    while time.monotonic() < deadline:
        try:
            with cluster.http() as http:
                runs = _runs(http)
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if runs and all(r["status"] in checks.FINAL for r in runs):
            return runs
        time.sleep(0.5)
    return runs


def _running_container(cluster: Cluster) -> tuple[Proc, dict] | None:
    """A live agent of ours and a container it is running, if any."""
    mine = {a.name: a for a in cluster.workers if a.alive()}
    for c in containers("chute.managed=1", running_only=True):
        agent = mine.get(c["labels"].get("chute.agent", ""))
        if agent is not None:
            return agent, c
    return None


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_no_run_is_lost_stuck_or_run_twice_when_processes_are_killed(db_url: str, tmp_path: Path,
                                                                     seed: int) -> None:
    need_podman("localhost/debian:bookworm")
    started = time.monotonic()
    make_repo(tmp_path / "repo", files={".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": CONFIG,
                                        "test.sh": TEST_SH})
    cluster = Cluster(tmp_path / "cluster", db_url, agents=3, agent_prefix=f"chaos-{uuid.uuid4().hex[:6]}",
                      server_env={"CHUTE_LEASE_SECONDS": "3", "CHUTE_REAP_INTERVAL": "1"})
    kill_rng = random.Random(seed)  # what to kill, how, and when: the same sequence for the same seed
    work_rng = random.Random(seed + 1)  # which pipeline each run is, and how fast they come
    acked: set[int] = set()
    kills: Counter[str] = Counter()
    targeted: list[dict] = []
    died: list[str] = []  # processes that exited without being killed: a crash of chute itself
    try:
        cluster.start_all()
        with cluster.http(timeout=60) as http:
            r = http.post("/api/v1/projects", json={"repo": str(tmp_path / "repo"), "name": "chaos"})
            assert r.status_code == 201, r.text
            # Warm-up, not counted: the first box run builds the image the others take from the cache.
            warm = _trigger(http, "box")
            assert warm is not None
        warm_runs = _wait_quiet(cluster, time.monotonic() + 180)
        assert warm_runs and warm_runs[0]["status"] in ("success", "failure"), cluster.logs()
        acked.add(warm)
        chaos_started = time.monotonic()

        # ---------------------------------------------------------------- the chaos
        restarts: list[tuple[float, Proc]] = []
        next_trigger = time.monotonic()
        next_kill = time.monotonic() + kill_rng.uniform(*KILL_EVERY)
        targets = list(TARGETED_AT)
        force_box = 0
        last_forced = -1e9
        next_look = 0.0
        http = cluster.http()
        deadline = chaos_started + CHAOS_BUDGET
        while len(acked) < RUNS + 1:
            now = time.monotonic()
            if now >= deadline:
                died.append(f"only {len(acked) - 1} of {RUNS} runs queued within {CHAOS_BUDGET:g}s")
                break
            for when, proc in [x for x in restarts if x[0] <= now]:
                restarts.remove((when, proc))
                if proc is cluster.server:
                    proc.start()
                else:
                    cluster.start_agent(proc)
            for proc in cluster.procs():
                if not proc.alive() and not any(p is proc for _, p in restarts):
                    died.append(f"{proc.name} exited by itself with {proc.exit_code()}:\n{tail(proc.log, 15)}")
                    restarts.append((now, proc))
            if now >= next_trigger and cluster.server.alive():
                # Pace the runs by the kills, so that a fast machine does not finish before the chaos
                # had its say (at least RUNS / RUNS_PER_KILL kills among the runs).
                if len(acked) - 1 >= RUNS_PER_KILL * (sum(kills.values()) + 1):
                    next_trigger = now + 0.3
                elif _backlog(http) < BACKLOG:
                    box = force_box > 0 or work_rng.random() < BOX_SHARE
                    run_id = _trigger(http, "box" if box else "quick")
                    if run_id is not None:
                        acked.add(run_id)
                        force_box -= 1 if box and force_box > 0 else 0
                    next_trigger = now + work_rng.uniform(0.1, 0.6)
                else:
                    next_trigger = now + 0.3
            if now >= next_kill:
                victim = kill_rng.choice([cluster.server, *cluster.workers])
                group = kill_rng.random() < 0.5
                down = kill_rng.uniform(0.3, 2.5)
                next_kill = now + kill_rng.uniform(*KILL_EVERY)
                if victim.alive():
                    victim.kill(group=group)
                    kills[f"{victim.name.rsplit('-', 1)[-1]}{' (group)' if group else ''}"] += 1
                    restarts.append((now + down, victim))
            if targets and len(acked) >= targets[0]:
                if not targeted or targeted[-1]["armed"] != targets[0]:
                    targeted.append({"armed": targets[0]})
                if force_box == 0 and now - last_forced > 30:  # a box run to catch (again, if it was missed)
                    force_box, last_forced = 1, now
                found = None
                if now >= next_look:
                    found = _running_container(cluster)
                    next_look = time.monotonic() + 0.5
                if found is not None:
                    agent, ctr = found
                    agent.kill(group=True)
                    kills["targeted agent (group)"] += 1
                    targeted[-1].update(agent=agent.name, container=ctr["name"], run=ctr["labels"].get("chute.run"))
                    restarts.append((time.monotonic() + 1.0, agent))
                    targets.pop(0)
            time.sleep(0.05)
        http.close()
        queued_at = time.monotonic()

        # ---------------------------------------------------------------- quiet
        for _when, proc in restarts:
            if proc is cluster.server:
                proc.start()
            else:
                cluster.start_agent(proc)
        cluster.wait_ready()
        print(f"{len(acked) - 1} runs queued in {queued_at - chaos_started:.0f}s; kills {dict(kills)}", flush=True)
        runs = _wait_quiet(cluster, time.monotonic() + QUIET_BUDGET)
        quiet_at = time.monotonic()
        quiet = bool(runs) and all(r["status"] in checks.FINAL for r in runs)
        for proc in cluster.procs():
            if not proc.alive():
                died.append(f"{proc.name} exited by itself with {proc.exit_code()}:\n{tail(proc.log, 15)}")
        # The killed agents' containers are gone: each agent's janitor removed them when it came back.
        leftovers: list[dict] = []
        if quiet:
            leftovers = [c for a in cluster.workers for c in containers(f"chute.agent={a.name}")]
        for t in targeted:
            if "container" not in t:
                died.append(f"no container was caught running for the targeted kill {t}")
            elif quiet and containers(f"chute.run={t['run']}", f"chute.agent={t['agent']}"):
                died.append(f"the container {t['container']} of killed agent {t['agent']} (run {t['run']}) "
                            "is still there")
    finally:
        cluster.kill_all()  # the last crash: every process at once
        for a in cluster.workers:
            for c in containers(f"chute.agent={a.name}"):
                podman("rm", "-f", "-t", "0", c["name"])

    # ---------------------------------------------------------------- the database after all that
    checks.dump(db_url, tmp_path / "database.jsonl")  # kept with the logs under the test's tmp_path
    problems, summary = checks.runs_problems(db_url, acked)
    problems = died + [f"container left behind by a killed agent: {c}" for c in leftovers] + problems
    if db_url.startswith("sqlite"):
        problems += checks.sqlite_problems(db_url.removeprefix("sqlite:///"))
    report = (f"seed {seed}: {summary.runs} runs ({len(acked) - 1} acknowledged under chaos + 1 warm-up), "
              f"kills {dict(kills)} ({sum(kills.values())} in all), requeues {summary.requeues}, "
              f"given up after max attempts {summary.given_up}, outcomes {dict(summary.outcomes)}, "
              f"attempts per run {dict(sorted(summary.attempts.items()))}, "
              f"longest waits for an agent (s, run) {sorted(summary.waits, reverse=True)[:5]}, "
              f"chaos {queued_at - chaos_started:.0f}s, quiet after {quiet_at - queued_at:.0f}s, "
              f"total {time.monotonic() - started:.0f}s")
    print(report)
    assert not problems, "\n".join([report, *problems[:60]])
    assert len(runs) == summary.runs and sum(kills.values()) >= 20, report
