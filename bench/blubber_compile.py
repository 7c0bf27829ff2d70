"""In-process Blubber compile speed over the public corpus: variants per second on one core.

    .venv/bin/python bench/blubber_compile.py [--rounds N]

Loads every config of the corpus that chute accepts (configs/ and repaired/),
then compiles every variant to Dockerfile text (expansion, stages,
instructions, rendering), ``--rounds`` times, and prints the best round.
Loading (YAML parse + validation) is measured separately. The corpus is
../shared/testdata/blubber-corpus next to the repository, or
$CHUTE_SHARED/testdata/blubber-corpus.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from chute.blubber import ConfigError, compile_variant, parse_config


def corpus() -> Path:
    shared = Path(os.environ.get("CHUTE_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")
    path = shared / "testdata" / "blubber-corpus"
    if not path.is_dir():
        sys.exit(f"the corpus is not at {path}; set CHUTE_SHARED to the shared folder")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    root = corpus()
    texts = [(str(p), p.read_bytes())
             for folder in ("configs", "repaired") for p in sorted((root / folder).iterdir())]

    best_load = float("inf")
    configs = []
    for _ in range(args.rounds):
        configs = []
        t0 = time.perf_counter()
        for name, text in texts:
            try:
                configs.append(parse_config(text, name))
            except ConfigError:
                pass  # the v3 files
        best_load = min(best_load, time.perf_counter() - t0)
    pairs = [(cfg, v) for cfg in configs for v in cfg.variant_names()]

    best = float("inf")
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for cfg, variant in pairs:
            compile_variant(cfg, variant)
        best = min(best, time.perf_counter() - t0)

    print(f"corpus: {len(texts)} files, {len(configs)} accepted, {len(pairs)} variants")
    print(f"load (parse + validate): {len(texts) / best_load:,.0f} files/s "
          f"({best_load * 1000:.1f} ms for all)")
    print(f"compile: {len(pairs) / best:,.0f} variants/s ({best / len(pairs) * 1e6:.0f} us per variant, "
          f"best of {args.rounds} rounds)")
    per_variant_load = best_load / len(pairs)
    print(f"load + compile: {1 / (per_variant_load + best / len(pairs)):,.0f} variants/s")


if __name__ == "__main__":
    main()
