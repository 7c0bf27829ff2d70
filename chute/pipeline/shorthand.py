"""The January 2019 pipeline shorthand, expanded to canonical stages (spec §7.1).

```yaml
pipelines:
  serviceOne:
    directory: src/serviceOne
    blubberfile: serviceOne/blubber.yaml   # default <pipeline>/blubber.yaml, else blubber.yaml
    helmConfig: serviceOne/helm.yaml
    stages:
      test: [phpunit, mocha]               # default [test]: build and run each variant
      production: foo                      # default production: build and publish; false: none
```

``stages`` written as a mapping (not a list) marks the shorthand. ``{test: [a, b], production: p}``
becomes the stages ``[{name: a}, {name: b}, {name: production, build: p, publish: {image: true}}]``
with ``execution: [[a, production], [b, production]]``: the tests run in parallel and production
follows them all. ``production: false`` drops that stage (``execution: [[a], [b]]``).

The blubberfile default ``<pipeline>/blubber.yaml`` falls back to ``blubber.yaml`` when the
former does not exist; that needs a checkout, so it is resolved by
:func:`chute.pipeline.plan.resolve_blubberfile`, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schema import Path, _Checker

SHORTHAND_KEYS = ("test", "production")
DEFAULT_TESTS = ("test",)
DEFAULT_PRODUCTION = "production"


def expand(tests: list[str], production: str | None) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Canonical stages and execution arcs for the shorthand values."""
    stages: list[dict[str, Any]] = [{"name": t} for t in tests]
    if production is None:
        return stages, [[t] for t in tests]
    stages.append({"name": "production", "build": production, "publish": {"image": True}})
    arcs = [[t, "production"] for t in tests] if tests else [["production"]]
    return stages, arcs


def expand_shorthand(checker: _Checker, pipeline: str, raw: dict[str, Any], path: Path
                     ) -> tuple[list[tuple[Any, Path]], list[list[str]]] | None:
    """Check the shorthand ``stages`` mapping; return ``(stage items with their document
    paths, arcs)`` or None after reporting problems to ``checker``."""
    before = checker.error_count()
    checker.unknown_keys(raw, path, SHORTHAND_KEYS, "the shorthand `stages` mapping",
                         hints={k: "the shorthand has only `test` (variants to build and run) and "
                                   "`production` (the variant to publish, or false); write `stages` as "
                                   "a list for anything else" for k in raw if k not in SHORTHAND_KEYS})
    tests_raw = raw.get("test", list(DEFAULT_TESTS))
    tests: list[str] = []
    test_paths: list[Path] = []
    if tests_raw is None:
        tests_raw = list(DEFAULT_TESTS)
    if isinstance(tests_raw, str):
        tests, test_paths = [tests_raw], [(*path, "test")]
    elif isinstance(tests_raw, list):
        for i, t in enumerate(tests_raw):
            if not isinstance(t, str) or not t:
                checker.error((*path, "test", i), "a test entry must be a variant name",
                              "e.g. `test: [phpunit, mocha]`")
                continue
            if t in tests:
                checker.error((*path, "test", i), f"variant `{t}` is listed twice", "list each variant once")
                continue
            tests.append(t)
            test_paths.append((*path, "test", i) if "test" in raw else path)
    else:
        checker.error((*path, "test"), "`test` must be a list of variant names",
                      "e.g. `test: [phpunit, mocha]`")

    prod_raw = raw.get("production", DEFAULT_PRODUCTION)
    production: str | None
    if prod_raw is None or prod_raw is True:
        production = DEFAULT_PRODUCTION
    elif prod_raw is False:
        production = None
    elif isinstance(prod_raw, str) and prod_raw:
        production = prod_raw
    else:
        checker.error((*path, "production"), "`production` must be a variant name or false",
                      "e.g. `production: production`, or `production: false` for a test-only pipeline")
        production = None
    if production is not None and "production" in tests:
        idx = tests.index("production")
        checker.error(test_paths[idx], "a test variant cannot be called `production` while the "
                      "shorthand also publishes a `production` stage",
                      "set `production: false`, or write `stages` as a list")
    if checker.error_count() != before:
        return None
    stages, arcs = expand(tests, production)
    items: list[tuple[Any, Path]] = list(zip(stages, test_paths, strict=False))
    if production is not None:
        items.append((stages[-1], (*path, "production") if "production" in raw else path))
    return items, arcs
