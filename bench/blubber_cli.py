"""Fresh-process speed of ``chute blubber CONFIG VARIANT``: median wall time of N runs.

    .venv/bin/python bench/blubber_cli.py [--runs 30]

Runs ``.venv/bin/chute blubber <corpus config> <variant>`` as a new process
each time (what an editor, a script or the pipeline does) and prints the
median and quartiles of wall time, the median CPU time, and the same for
``python -c pass`` (the interpreter's floor) and ``import chute.config``
(the shared YAML loader chute blubber builds on) in the same venv.
Bytecode caches are allowed (a warm-up run writes them), as on a user's
machine, even if PYTHONDONTWRITEBYTECODE is set in the calling shell.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "wikimedia__mediawiki-services-mathoid__.pipeline_blubber.yaml"


def measure(cmd: list[str], runs: int) -> tuple[list[float], list[float]]:
    # As on a user's machine: bytecode caches are written on the first (warm-up) run and used after.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
    return walls, cpus


def report(label: str, walls: list[float], cpus: list[float]) -> None:
    q = statistics.quantiles(walls, n=4)
    print(f"{label}: median {statistics.median(walls) * 1000:.1f} ms wall (quartiles {q[0] * 1000:.1f}"
          f"-{q[2] * 1000:.1f}), median {statistics.median(cpus) * 1000:.1f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    shared = Path(os.environ.get("CHUTE_SHARED") or REPO / ".." / "shared")
    config = shared / "testdata" / "blubber-corpus" / "configs" / CONFIG
    if not config.is_file():
        sys.exit(f"{config} is missing; set CHUTE_SHARED to the shared folder")
    chute = REPO / ".venv" / "bin" / "chute"
    python = REPO / ".venv" / "bin" / "python"
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report("python -c pass", *measure([str(python), "-c", "pass"], args.runs))
    report("python -c 'import chute.config' (YAML loader, errors)",
           *measure([str(python), "-c", "import chute.config"], args.runs))
    report(f"chute blubber {CONFIG} production", *measure([str(chute), "blubber", str(config), "production"],
                                                          args.runs))


if __name__ == "__main__":
    main()
