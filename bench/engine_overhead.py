"""What chute.engine adds on top of the bare podman CLI.

    .venv/bin/python bench/engine_overhead.py [repeats]

Measures, each `repeats` times (default 5), median wall-clock seconds:
* run:   `podman run --rm <busybox> true`  vs  engine.run(<busybox>, args=["true"], keep=False)
* build: a fully cached 3-step build with plain `podman build`  vs  engine.build (which also
  declares the CA build args and mounts the bundle)
The engine's run does more than the bare command on purpose (env file, inspect for the exit code,
separate removal), so the ratio is the price of those guarantees.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chute.engine import PodmanEngine

BUSYBOX = "localhost/busybox:stable"
LABEL = "chute.test=1"


def timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine = PodmanEngine()
    env = engine.environ
    podman = engine.binary

    def raw_run() -> None:
        subprocess.run([podman, "run", "--rm", f"--label={LABEL}", BUSYBOX, "true"], env=env, check=True)

    def engine_run() -> None:
        result = engine.run(BUSYBOX, args=["true"], labels={"chute.test": "1"}, keep=False)
        assert result.exit_code == 0

    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        (ctx / "f.txt").write_text("bench\n")
        dockerfile = f"FROM {BUSYBOX}\nRUN echo chute-bench-{os.getuid()} > /b\nCOPY f.txt /f.txt\n"
        (ctx.parent / "chute-bench.Dockerfile").write_text(dockerfile)
        df_path = ctx.parent / "chute-bench.Dockerfile"

        built: set[str] = set()

        def raw_build() -> None:
            done = subprocess.run(
                [podman, "build", "-q", "--format=docker", f"--file={df_path}", str(ctx)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            built.add(done.stdout.strip().splitlines()[-1])

        def engine_build() -> None:
            built.add(engine.build(dockerfile, ctx).image_id)

        raw_build()
        engine_build()  # warm both caches
        figures = {
            "run: podman run --rm true": timed(raw_run, repeats),
            "run: engine.run(keep=False)": timed(engine_run, repeats),
            "build (cached): podman build": timed(raw_build, repeats),
            "build (cached): engine.build": timed(engine_build, repeats),
        }
        df_path.unlink()
        engine.remove_images(sorted(built))
    for name, seconds in figures.items():
        print(f"{name:34s} {seconds:6.3f} s")
    print(
        f"ratio run {figures['run: engine.run(keep=False)'] / figures['run: podman run --rm true']:.2f}x, "
        f"build {figures['build (cached): engine.build'] / figures['build (cached): podman build']:.2f}x"
    )


if __name__ == "__main__":
    main()
