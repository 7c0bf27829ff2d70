"""A DAG scheduler: each stage starts as soon as all of its predecessors succeeded.

PipelineLib ran the graph in lock-step frames (a stage waited for every stage
of the previous frame, related or not). Here a stage waits only for its own
predecessors. When a stage fails, nothing new starts; stages already running
finish (as Jenkins' ``parallel`` let siblings finish), and every stage that did
not run is reported as skipped. Cancellation stops new stages and tells the
running ones through the shared event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    status: str  # success | failure | cancelled | skipped | reused
    error: str = ""


def schedule(
    stages: Iterable[str],
    predecessors: Mapping[str, Iterable[str]],
    run_stage: Callable[[str], Outcome],
    *,
    cancel: threading.Event,
    max_parallel: int = 4,
    on_skip: Callable[[str, str], None] | None = None,
) -> dict[str, Outcome]:
    """Run ``run_stage`` for every stage along the DAG; return each stage's outcome."""
    order = list(stages)
    preds = {s: set(predecessors.get(s, ())) for s in order}
    outcomes: dict[str, Outcome] = {}
    running: dict[Future[Outcome], str] = {}
    failed = False

    def ready() -> list[str]:
        return [s for s in order if s not in outcomes and s not in running.values()
                and all(outcomes.get(p, Outcome("")).status in ("success", "reused") for p in preds[s])]

    with ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="stage") as pool:
        while True:
            if not failed and not cancel.is_set():
                for s in ready():
                    if len(running) >= max_parallel:
                        break
                    running[pool.submit(_guard, run_stage, s)] = s
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                outcome = fut.result()
                outcomes[name] = outcome
                if outcome.status not in ("success", "reused"):
                    failed = True
    for s in order:
        if s not in outcomes:
            why = "cancelled" if cancel.is_set() else _skip_reason(s, preds, outcomes)
            outcomes[s] = Outcome("cancelled" if cancel.is_set() else "skipped", why)
            if on_skip is not None:
                on_skip(s, outcomes[s].status)
    return outcomes


def _guard(fn: Callable[[str], Outcome], name: str) -> Outcome:
    try:
        return fn(name)
    except Exception as exc:  # a bug in a step must fail the stage, not hang the scheduler
        return Outcome("failure", f"internal error: {type(exc).__name__}: {exc}")


def _skip_reason(stage: str, preds: Mapping[str, set[str]], outcomes: Mapping[str, Outcome]) -> str:
    bad = sorted(p for p in preds[stage] if p in outcomes and outcomes[p].status not in ("success", "reused"))
    if bad:
        return f"not run: {', '.join(bad)} did not succeed"
    return "not run: an earlier stage failed"
