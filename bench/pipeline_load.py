"""How long loading (parse + every check) and linting a pipeline config takes.

Run: .venv/bin/python bench/pipeline_load.py [CORPUS_DIR]
(CORPUS_DIR defaults to $CHUTE_SHARED/testdata/pipeline-configs or ../shared/...).
Prints the median time per file over the valid corpus files and for the largest one.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def corpus_dir() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    root = Path(__file__).resolve().parents[1]
    env = os.environ.get("CHUTE_SHARED")
    for base in ([Path(env)] if env else [root.parent / "shared", root.parent.parent / "shared"]):
        d = base / "testdata" / "pipeline-configs"
        if d.is_dir():
            return d
    sys.exit("corpus not found: pass its directory or set CHUTE_SHARED")


def main() -> None:
    from chute.config import ConfigError
    from chute.pipeline import expand_config, lint_pipeline_config, parse_pipeline_config

    files = sorted(corpus_dir().glob("*.yaml"))
    texts = {f.name: f.read_text() for f in files}
    valid = {}
    for name, text in texts.items():
        try:
            parse_pipeline_config(text, name)
            valid[name] = text
        except ConfigError:
            pass
    rounds = 30
    per_file = []
    for name, text in valid.items():
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            cfg = parse_pipeline_config(text, name)
            lint_pipeline_config(cfg, ".", check_blubber=False)
            expand_config(cfg)
            samples.append(time.perf_counter() - t0)
        per_file.append((statistics.median(samples), name, len(text)))
    per_file.sort()
    med = statistics.median(t for t, _, _ in per_file)
    worst = per_file[-1]
    print(f"{len(valid)} valid corpus files, {rounds} rounds each (load + lint --no-blubber + expand)")
    print(f"median file: {med * 1000:.2f} ms")
    print(f"slowest: {worst[1]} ({worst[2]} bytes): {worst[0] * 1000:.2f} ms")
    code = "import chute.pipeline"
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - t0)
    base = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    print(f"python -c 'import chute.pipeline': {statistics.median(samples) * 1000:.0f} ms "
          f"(bare interpreter {statistics.median(base) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
