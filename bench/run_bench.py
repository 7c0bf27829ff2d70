"""The pipeline runner against the same work done by a shell script; cold vs rerun; parallel stages.

    CONTAINERS_CONF=/etc/chute/containers.conf .venv/bin/python bench/run_bench.py [--rounds 5]
        [--cold-rounds 1] [--only cold,overhead,parallel] [--json out.json] [--compare-with DIR]

Three measurements, all with real podman and a real registry (Debian's
docker-registry on a free 127.0.0.1 port, started here):

* **cold / rerun**: ``chute run publish`` of ``examples/greeter`` (copied into a
  temporary git repository) right after its images were made impossible to
  reuse, then again with nothing changed. "Cold" gives the config a base image
  of its own (``localhost/debian:bookworm`` plus a unique label, so every layer
  of the config is built from scratch while the Debian base stays), instead of
  deleting shared cache layers that other builds on the machine may be using.
  Goal: rerun <= 25 % of cold.
* **overhead**: on the warm cache, ``chute run publish`` against a shell script
  that does the same work with plain podman: ``chute blubber`` to a Dockerfile
  (with the two ``ARG`` lines chute's engine declares), ``podman build`` with
  the same flags that matter (``--format=docker --layers``, the CA bundle mount
  and build args, labels, ignore file), ``podman run`` of the test image with the
  same isolation flags, ``podman tag`` + ``podman push`` of the production image
  under the same three tags, and the same cleanup. Alternating (A B, B A, ...),
  medians reported. Goal: ratio <= 1.10. ``--compare-with DIR`` adds a third
  contestant in the same rotation: ``chute run`` with the ``chute`` package of
  another source tree first on ``PYTHONPATH`` (e.g. ``git archive`` of an older
  commit), for before/after figures under the same load.
* **parallel**: two independent stages that each run ``sleep 5`` in an image a
  first stage builds (``execution: [[image, a], [image, b]]``), against the same
  two stages one after the other (``[[image, a, b]]``). Reported: the time from
  the start of the first of the two stages to the end of the last (goal: about
  5 s, not 10) and the whole ``chute run``.

Everything built here descends from the bench's own base images and is removed
at the end (the registry's storage too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = "localhost/debian:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_CONTAINER = "/dev/chute-ca-bundle.crt"

# What the engine adds to every run container (chute/engine/base.py): every capability dropped
# by name except these, no new privileges, an init, no healthcheck.
KEPT_CAPS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"}

BASELINE = r"""#!/usr/bin/env bash
# The same work as `chute run publish` of examples/greeter, with plain podman commands.
set -euo pipefail
cd "$REPO"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
ID=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
COMMIT=$(git rev-parse HEAD)
LABELS=(--label=ci.project=greeter --label=ci.pipeline=publish --label=ci.commit="$COMMIT")
CA=(--build-arg=PIP_CERT=$CA_IN --build-arg=NODE_EXTRA_CA_CERTS=$CA_IN --volume="$CA_BUNDLE:$CA_IN:ro")
printf '.git\n' > "$T/ignore"
dockerfile() {  # chute blubber, plus the ARG lines chute's engine declares in every stage
  $CHUTE blubber .pipeline/blubber.yaml "$1" | sed '/^FROM /a ARG PIP_CERT\nARG NODE_EXTRA_CA_CERTS'
}
build() {  # variant stage
  dockerfile "$1" > "$T/$1.Dockerfile"
  podman build -q --format=docker --layers=true --force-rm=true --pull=missing --iidfile="$T/$1.iid" \
    --file="$T/$1.Dockerfile" --tag="localhost/bench-image-$ID-$1" "${LABELS[@]}" --label=chute.stage="$2" \
    "${CA[@]}" --ignorefile="$T/ignore" . > /dev/null
  cut -d: -f2 "$T/$1.iid"
}

# stage test: build the test variant and run it
TEST=$(build test test)
podman run --name="bench-run-$ID" --init --no-healthcheck --security-opt=no-new-privileges $CAP_DROPS \
  --label=chute.managed=1 --label=chute.run=bench --label=chute.stage=test --pull=missing "$TEST" > /dev/null 2>&1

# stage production: build and publish under the primary tag, latest and the commit
PROD=$(build production production)
REFS=()
for tag in "$(date -u +%Y-%m-%d-%H%M%S)-production" latest "$COMMIT"; do
  podman tag "$PROD" "$REGISTRY/greeter:$tag"
  podman push -q --tls-verify=false --digestfile="$T/digest" "$REGISTRY/greeter:$tag"
  REFS+=("$REGISTRY/greeter:$tag")
done

# teardown: the run's container, the local tags of both images and the pushed refs
podman rm --force --ignore --time=0 "bench-run-$ID" > /dev/null
podman rmi --force --ignore --no-prune "localhost/bench-image-$ID-test" "localhost/bench-image-$ID-production" \
  "${REFS[@]}" > /dev/null
"""

SLEEPERS_BLUBBER = """version: v4
base: {base}
variants:
  sleeper:
    entrypoint: [sleep, "5"]
"""

SLEEPERS_CONFIG = """pipelines:
  parallel:
    blubberfile: blubber.yaml
    execution: [[image, a], [image, b]]
    stages:
      - {name: image, build: sleeper}
      - {name: a, run: {image: '${image.imageID}'}}
      - {name: b, run: {image: '${image.imageID}'}}
  serial:
    blubberfile: blubber.yaml
    execution: [[image, a, b]]
    stages:
      - {name: image, build: sleeper}
      - {name: a, run: {image: '${image.imageID}'}}
      - {name: b, run: {image: '${image.imageID}'}}
"""


def environ() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF") and Path("/etc/chute/containers.conf").is_file():
        env["CONTAINERS_CONF"] = "/etc/chute/containers.conf"
    return env


ENV = environ()


def sh(*args: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None,
       timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env or ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def chute_command() -> list[str]:
    script = Path(sys.executable).parent / "chute"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "chute"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(state: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    (state / "registry.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {state}/storage}}\n"
        f"  delete: {{enabled: true}}\nhttp: {{addr: \"127.0.0.1:{port}\"}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(state / "registry.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                return f"127.0.0.1:{port}", proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("docker-registry did not start")


class Bench:
    def __init__(self, tmp: Path, registry: str, rounds: int) -> None:
        self.tmp, self.registry, self.rounds = tmp, registry, rounds
        self.chute = chute_command()
        self.bases: list[str] = []
        self.tokens: set[str] = set()
        self.results: dict[str, Any] = {}
        self.last_cpu = 0.0  # CPU seconds of the last measured command's processes (see _children_cpu)

    # ------------------------------------------------------------------ setup
    def fresh_base(self) -> str:
        """A base image of the bench's own: Debian's files, a new image ID, so nothing is cached on it."""
        token = secrets.token_hex(4)
        self.tokens.add(token)
        tag = f"localhost/chute-bench-base:{token}"
        ctx = self.tmp / f"base-{token}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {DEBIAN}\nLABEL chute.bench={token}\n")
        sh("podman", "build", "-q", "-t", tag, str(ctx))
        self.bases.append(tag)
        return tag

    def repo(self, name: str, base: str, files: dict[str, str] | None = None, source: Path | None = None) -> Path:
        dest = self.tmp / name
        if dest.exists():
            shutil.rmtree(dest)
        if source is not None:
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        for rel, text in (files or {}).items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(text)
        blubber = dest / ".pipeline" / "blubber.yaml"
        blubber.write_text(blubber.read_text().replace(f"base: {DEBIAN}", f"base: {base}"))
        git = {**ENV, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
        sh("git", "init", "-q", "-b", "main", cwd=dest, env=git)
        sh("git", "add", "-A", cwd=dest, env=git)
        sh("git", "commit", "-q", "-m", "bench", cwd=dest, env=git)
        return dest

    # ------------------------------------------------------------------ runs
    def chute_run(self, repo: Path, pipeline: str, registry: bool = True,
                  other_tree: Path | None = None) -> tuple[float, dict[str, Any]]:
        args = [*self.chute, "run", pipeline, "--json"]
        if registry:
            args += ["--registry", f"http://{self.registry}"]
        env = {**ENV, "PYTHONPATH": str(other_tree)} if other_tree else None
        if other_tree:
            args = [sys.executable, "-m", "chute", *args[len(self.chute):]]
        t0, c0 = time.perf_counter(), _children_cpu()
        proc = sh(*args, cwd=repo, check=False, env=env)
        elapsed, self.last_cpu = time.perf_counter() - t0, _children_cpu() - c0
        if proc.returncode != 0:
            raise SystemExit(f"chute run {pipeline} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return elapsed, json.loads(proc.stdout)

    def baseline_run(self, repo: Path) -> float:
        script = self.tmp / "baseline.sh"
        script.write_text(BASELINE)
        from chute.engine.base import ALL_CAPABILITIES

        env = {**ENV, "REPO": str(repo), "REGISTRY": self.registry, "CHUTE": self.chute[0] if len(self.chute) == 1
               else f"{sys.executable} -m chute", "CA_BUNDLE": str(CA_BUNDLE), "CA_IN": CA_IN_CONTAINER,
               "CAP_DROPS": " ".join(f"--cap-drop={c}" for c in ALL_CAPABILITIES if c not in KEPT_CAPS)}
        t0, c0 = time.perf_counter(), _children_cpu()
        proc = sh("bash", str(script), check=False, env=env)
        elapsed, self.last_cpu = time.perf_counter() - t0, _children_cpu() - c0
        if proc.returncode != 0:
            raise SystemExit(f"baseline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return elapsed

    # ------------------------------------------------------------------ measurements
    def cold(self, cold_rounds: int) -> Path:
        samples = []
        greeter = Path()
        for i in range(cold_rounds):
            base = self.fresh_base()
            greeter = self.repo("greeter", base, source=ROOT / "examples" / "greeter")
            cold, doc = self.chute_run(greeter, "publish")
            rerun, doc2 = self.chute_run(greeter, "publish")
            cached = [_cached_steps(doc2)]
            samples.append((cold, rerun))
            print(f"  cold {i + 1}: cold {cold:.1f} s, rerun {rerun:.1f} s ({rerun / cold:.0%}); "
                  f"stage durations cold {_stage_durations(doc)}, rerun {_stage_durations(doc2)}; "
                  f"rerun build steps from cache: {cached[0]}", flush=True)
        cold_med = statistics.median(c for c, _ in samples)
        rerun_med = statistics.median(r for _, r in samples)
        self.results["cold"] = {"cold_s": cold_med, "rerun_s": rerun_med, "ratio": rerun_med / cold_med,
                                "samples": samples}
        print(f"cold vs rerun: cold {cold_med:.1f} s, rerun {rerun_med:.1f} s, rerun/cold = "
              f"{rerun_med / cold_med:.1%} (goal <= 25%)", flush=True)
        return greeter

    def overhead(self, greeter: Path, other_tree: Path | None = None) -> None:
        contestants = {"chute": lambda: self.chute_run(greeter, "publish")[0],
                       "shell": lambda: self.baseline_run(greeter)}
        if other_tree is not None:
            contestants["other"] = lambda: self.chute_run(greeter, "publish", other_tree=other_tree)[0]
        for run in contestants.values():  # warm-up: all share this cache
            run()
        samples: dict[str, list[float]] = {name: [] for name in contestants}
        cpu: dict[str, list[float]] = {name: [] for name in contestants}
        names = list(contestants)
        for i in range(self.rounds):
            order = names[i % len(names):] + names[:i % len(names)]  # rotate who goes first
            for name in (order if i % 2 == 0 else order[::-1]):
                samples[name].append(contestants[name]())
                cpu[name].append(self.last_cpu)
            print(f"  round {i + 1}: " + ", ".join(f"{n} {samples[n][-1]:.2f} s (CPU {cpu[n][-1]:.2f} s)"
                                                   for n in names), flush=True)
        med = {n: statistics.median(v) for n, v in samples.items()}
        mcpu = {n: statistics.median(v) for n, v in cpu.items()}
        self.results["overhead"] = {"chute_s": med["chute"], "shell_s": med["shell"],
                                    "ratio": med["chute"] / med["shell"], "samples": samples,
                                    "cpu_chute_s": mcpu["chute"], "cpu_shell_s": mcpu["shell"], "cpu": cpu}
        print(f"overhead: chute run {med['chute']:.2f} s, shell script {med['shell']:.2f} s (medians of "
              f"{self.rounds}), ratio {med['chute'] / med['shell']:.3f} (goal <= 1.10); CPU time of the "
              f"processes started {mcpu['chute']:.2f} s vs {mcpu['shell']:.2f} s", flush=True)
        if other_tree is not None:
            self.results["overhead"].update(other_s=med["other"], other_ratio=med["other"] / med["shell"],
                                            other_tree=str(other_tree), cpu_other_s=mcpu["other"])
            print(f"          chute from {other_tree}: {med['other']:.2f} s, ratio "
                  f"{med['other'] / med['shell']:.3f}, CPU {mcpu['other']:.2f} s", flush=True)

    def parallel(self) -> None:
        base = self.bases[-1] if self.bases else self.fresh_base()
        repo = self.repo("sleepers", base, files={".pipeline/blubber.yaml": SLEEPERS_BLUBBER.format(base=DEBIAN),
                                                   ".pipeline/config.yaml": SLEEPERS_CONFIG})
        self.chute_run(repo, "parallel", registry=False)  # warm-up: builds the image once
        out: dict[str, dict[str, list[float]]] = {"parallel": {"wall": [], "stages": []},
                                                   "serial": {"wall": [], "stages": []}}
        for i in range(self.rounds):
            for name in (("parallel", "serial") if i % 2 == 0 else ("serial", "parallel")):
                wall, doc = self.chute_run(repo, name, registry=False)
                out[name]["wall"].append(wall)
                out[name]["stages"].append(_stage_span(doc))
            print(f"  round {i + 1}: independent stages {out['parallel']['stages'][-1]:.2f} s "
                  f"(run {out['parallel']['wall'][-1]:.2f} s), one after the other "
                  f"{out['serial']['stages'][-1]:.2f} s (run {out['serial']['wall'][-1]:.2f} s)", flush=True)
        summary = {k: {"wall_s": statistics.median(v["wall"]), "stages_s": statistics.median(v["stages"]),
                       "samples": v} for k, v in out.items()}
        self.results["parallel"] = summary
        p, s = summary["parallel"], summary["serial"]
        print(f"two 5-second stages: independent {p['stages_s']:.2f} s from the first one's start to the last one's "
              f"end ({p['wall_s']:.2f} s the whole chute run); one after the other {s['stages_s']:.2f} s "
              f"({s['wall_s']:.2f} s)", flush=True)

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        """Remove every image built on the bench's base images (they carry its label), newest first."""
        for _ in range(5):
            listing = json.loads(sh("podman", "images", "-a", "--filter", "label=chute.bench", "--format", "json",
                                    check=False).stdout or "[]")
            mine = [i for i in listing if (i.get("Labels") or {}).get("chute.bench") in self.tokens]
            if not mine:
                return
            doomed = [i["Id"] for i in sorted(mine, key=lambda i: i.get("Created", 0), reverse=True)]
            for start in range(0, len(doomed), 50):
                sh("podman", "rmi", "--force", "--ignore", *doomed[start:start + 50], check=False)


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes (and theirs): the podman CLI calls and
    chute itself, not the containers (conmon is not a child). Less sensitive to a busy machine than
    wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stage_durations(doc: dict[str, Any]) -> str:
    return ", ".join(f"{s['name']} {s.get('duration', 0):.1f} s" for p in doc["pipelines"] for s in p["stages"])


def _cached_steps(doc: dict[str, Any]) -> str:
    logs = [Path(s["log"]).read_text() for p in doc["pipelines"] for s in p["stages"] if s.get("log")]
    found = [line.split("(", 1)[1].split(" steps")[0] for text in logs for line in text.splitlines()
             if line.startswith("chute: built ")]
    return ", ".join(found)


def _stage_span(doc: dict[str, Any]) -> float:
    stages = [s for s in doc["pipelines"][0]["stages"] if s["name"] in ("a", "b")]
    start = min(datetime.fromisoformat(s["started_at"].replace("Z", "+00:00")) for s in stages)
    end = max(datetime.fromisoformat(s["finished_at"].replace("Z", "+00:00")) for s in stages)
    return (end - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds for overhead and parallel")
    parser.add_argument("--cold-rounds", type=int, default=1, help="cold/rerun pairs (each builds from scratch)")
    parser.add_argument("--only", default="cold,overhead,parallel", help="comma-separated sections")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    parser.add_argument("--compare-with", type=Path, help="a chute source tree to time as well (overhead)")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    if shutil.which("podman") is None or shutil.which("docker-registry") is None:
        raise SystemExit("needs podman and docker-registry (apt-get install podman docker-registry; .ci/run does)")
    if sh("podman", "image", "exists", DEBIAN, check=False).returncode != 0:
        raise SystemExit(f"{DEBIAN} is missing: bash -c '. scripts/lib.sh; configure_podman; make_base_images'")
    load = os.getloadavg()[0]
    print(f"chute run benchmark, {datetime.now().isoformat(timespec='seconds')}, load average {load:.1f}, "
          f"{os.cpu_count()} CPUs", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="chute-bench-run-"))
    registry, proc = start_registry(tmp / "registry")
    bench = Bench(tmp, registry, args.rounds)
    try:
        greeter = None
        if "cold" in sections:
            greeter = bench.cold(args.cold_rounds)
        if "overhead" in sections:
            if greeter is None:
                greeter = bench.repo("greeter", bench.fresh_base(), source=ROOT / "examples" / "greeter")
            bench.overhead(greeter, args.compare_with)
        if "parallel" in sections:
            bench.parallel()
    finally:
        bench.cleanup()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    bench.results["load_average_start"] = load
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(bench.results, indent=2) + "\n")


if __name__ == "__main__":
    main()
