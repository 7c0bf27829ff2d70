"""Deploy and rollback speed on the podman target, and failed requests under load.

Usage: CONTAINERS_CONF=/etc/chute/containers.conf .venv/bin/python bench/deploy_bench.py [--runs 10]

Measures, over --runs runs each, under a constant 50 requests/s on the public port:

* deploy: deploy() called -> the new revision serves (serving_at) and -> healthy
  (after stable_for);
* automatic rollback: a release that turns unhealthy while serving; the
  health verdict -> the previous revision serves again (server side: the
  deployment's finished_at; client side: the first answer from the previous
  revision seen by the load generator);
* manual rollback to a retired revision (its pod is gone, so it starts cold):
  rollback() called -> serving / healthy;
* baseline: plain ``podman kube play --replace`` on the public port, the gap
  during which requests fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "deploy"))
os.environ.setdefault("CONTAINERS_CONF", "/etc/chute/containers.conf")

import deploy_images  # noqa: E402
from deploy_images import HEALTH, Load  # noqa: E402

from chute.deploy import HEALTHY, Deployer, MemoryStore, PodmanTarget, parse_environments  # noqa: E402

PORT = 18390
PROJECT = "bench/web"


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def secs(a: datetime | None, b: datetime | None) -> float:
    return (b - a).total_seconds() if a and b else float("nan")


def first_seen(load: Load, since: float, body: str) -> float | None:
    for t, b in load.timeline:
        if t >= since and b == body:
            return t
    return None


def bench_deploys(deployer: Deployer, images: dict[str, str], runs: int) -> dict:
    serving, healthy, failed, sent = [], [], 0, 0
    first = deployer.deploy(PROJECT, "staging", images["v1"], reason="bench warm-up", actor="bench")
    assert first.status == HEALTHY, first.error  # the router exists from here on
    with Load(f"http://127.0.0.1:{PORT}/") as load:
        for i in range(runs):
            dep = deployer.deploy(
                PROJECT, "staging", images["v2" if i % 2 == 0 else "v1"], reason="bench", actor="bench"
            )
            assert dep.status == HEALTHY, dep.error
            serving.append(secs(dep.created_at, dep.serving_at))
            healthy.append(secs(dep.created_at, dep.finished_at))
        time.sleep(0.2)
    failed, sent = load.failed, load.sent
    return {
        "runs": runs,
        "to_serving_p50": p50(serving),
        "to_healthy_p50": p50(healthy),
        "to_healthy_max": max(healthy),
        "requests": sent,
        "failed": failed,
        "errors": load.errors[:5],
    }


def bench_auto_rollbacks(deployer: Deployer, images: dict[str, str], runs: int) -> dict:
    server, client, failed, sent, ttr = [], [], 0, 0, []
    for _ in range(runs):
        current = deployer.store.current(PROJECT, "staging")
        previous_body = (
            "v1"
            if current.image_digest == deployer.targets["podman"].resolve_image(images["v1"]).digest
            else "v2"
        )
        with Load(f"http://127.0.0.1:{PORT}/") as load:
            dep = deployer.deploy(PROJECT, "staging", images["flaky"], reason="bench", actor="bench")
            time.sleep(0.3)
        assert dep.status == "failed" and dep.restored_revision == current.revision, dep
        decided = datetime.fromisoformat(dep.health[-1]["decided_at"])
        server.append(secs(decided, dep.finished_at))
        seen = first_seen(load, decided.timestamp(), previous_body)
        client.append(seen - decided.timestamp() if seen else float("nan"))
        ttr.append(dep.time_to_restore)
        failed += load.failed
        sent += load.sent
    return {
        "runs": runs,
        "decision_to_previous_serving_p50": p50(server),
        "max": max(server),
        "client_first_previous_answer_p50": p50(client),
        "time_to_restore_p50": p50(ttr),
        "requests": sent,
        "failed": failed,
    }


def bench_manual_rollbacks(deployer: Deployer, images: dict[str, str], runs: int) -> dict:
    serving, healthy, failed, sent = [], [], 0, 0
    with Load(f"http://127.0.0.1:{PORT}/") as load:
        for _ in range(runs):
            target = deployer.targets["podman"]
            target.wait_idle()  # the revision rolled back to has been retired: a cold start
            t0 = time.time()
            dep = deployer.rollback(PROJECT, "staging", actor="bench", reason="bench")
            assert dep.status == HEALTHY, dep.error
            serving.append(dep.serving_at.timestamp() - t0)
            healthy.append(dep.finished_at.timestamp() - t0)
        time.sleep(0.2)
    failed, sent = load.failed, load.sent
    return {
        "runs": runs,
        "to_serving_p50": p50(serving),
        "to_healthy_p50": p50(healthy),
        "requests": sent,
        "failed": failed,
    }


def bench_replace_baseline(images: dict[str, str], runs: int) -> dict:
    """The naive way: both revisions on the public port, switched with kube play --replace."""
    gaps, failed, sent = [], 0, 0
    work = Path(tempfile.mkdtemp(prefix="chute-bench-"))
    kube = work / "k.yaml"

    def write(image: str) -> None:
        kube.write_text(f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: chute-bench-replace, labels: {{chute.test: "1", app: chute-bench-replace}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: chute-bench-replace}}}}
  template:
    metadata: {{labels: {{chute.test: "1", app: chute-bench-replace}}}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        ports: [{{containerPort: 8080, hostPort: {PORT + 1}, hostIP: 127.0.0.1}}]
""")

    try:
        write(images["v1"])
        subprocess.run(["podman", "kube", "play", "--replace", str(kube)], check=True, capture_output=True)
        time.sleep(1)
        for i in range(runs):
            write(images["v2" if i % 2 == 0 else "v1"])
            with Load(f"http://127.0.0.1:{PORT + 1}/") as load:
                time.sleep(0.5)
                subprocess.run(
                    ["podman", "kube", "play", "--replace", str(kube)], check=True, capture_output=True
                )
                time.sleep(1.5)
            bad = [t for t, b in load.timeline if b not in ("v1", "v2")]
            gaps.append(max(bad) - min(bad) if bad else 0.0)
            failed += load.failed
            sent += load.sent
    finally:
        subprocess.run(["podman", "kube", "down", str(kube)], capture_output=True, check=False)
    return {"runs": runs, "gap_p50": p50(gaps), "requests": sent, "failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--stable-for", default="3s")
    args = ap.parse_args()
    images = {v: deploy_images.build(v) for v in ("v1", "v2", "flaky")}
    envs = parse_environments(
        {
            "staging": {
                "port": PORT,
                "health": {"http": HEALTH, "within": "30s", "stable_for": args.stable_for, "interval": 0.25},
            }
        }
    )
    state = tempfile.mkdtemp(prefix="chute-bench-state-")
    target = PodmanTarget(state, extra_labels={"chute.test": "1"}, stop_timeout=1)
    deployer = Deployer(MemoryStore(), {PROJECT: envs}, {"podman": target})
    results = {}
    try:
        results["deploy"] = bench_deploys(deployer, images, args.runs)
        results["auto_rollback"] = bench_auto_rollbacks(deployer, images, args.runs)
        results["manual_rollback"] = bench_manual_rollbacks(deployer, images, args.runs)
    finally:
        target.down(PROJECT, envs["staging"])
    results["replace_baseline"] = bench_replace_baseline(images, min(args.runs, 5))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
