"""The DAG scheduler: real concurrency along the graph, fail-fast, skip reasons, cancellation."""

from __future__ import annotations

import threading
import time

from chute.runner.scheduler import Outcome, schedule


def test_independent_chains_do_not_wait_for_each_other():
    # [[build-a, test-a], [build-b, test-b]]: PipelineLib's frames made test-a wait for build-b.
    started: dict[str, float] = {}
    t0 = time.monotonic()
    durations = {"build-a": 0.05, "test-a": 0.05, "build-b": 0.4, "test-b": 0.05}

    def run(name: str) -> Outcome:
        started[name] = time.monotonic() - t0
        time.sleep(durations[name])
        return Outcome("success")

    out = schedule(durations, {"test-a": ["build-a"], "test-b": ["build-b"]}, run, cancel=threading.Event())
    assert all(o.status == "success" for o in out.values())
    assert started["test-a"] < 0.3  # did not wait for build-b (0.4 s)
    assert started["test-b"] >= 0.4


def test_predecessors_finish_before_successors_start():
    log: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> Outcome:
        with lock:
            log.append(f"start {name}")
        time.sleep(0.02)
        with lock:
            log.append(f"end {name}")
        return Outcome("success")

    schedule(["a", "b", "c", "d"], {"b": ["a"], "c": ["a"], "d": ["b", "c"]}, run, cancel=threading.Event())
    assert log.index("end a") < log.index("start b") and log.index("end a") < log.index("start c")
    assert log.index("start d") > max(log.index("end b"), log.index("end c"))


def test_failure_skips_dependents_and_names_the_cause():
    def run(name: str) -> Outcome:
        return Outcome("failure", "tests failed") if name == "unit" else Outcome("success")

    out = schedule(["unit", "lint", "publish"], {"publish": ["unit", "lint"]}, run, cancel=threading.Event(),
                   max_parallel=1)
    assert out["unit"].status == "failure"
    assert out["publish"].status == "skipped"
    assert "unit did not succeed" in out["publish"].error


def test_an_exception_in_a_stage_fails_it_instead_of_hanging():
    def run(name: str) -> Outcome:
        raise RuntimeError("boom")

    out = schedule(["a", "b"], {"b": ["a"]}, run, cancel=threading.Event())
    assert out["a"].status == "failure" and "boom" in out["a"].error
    assert out["b"].status == "skipped"


def test_cancel_stops_new_stages_and_marks_the_rest_cancelled():
    cancel = threading.Event()

    def run(name: str) -> Outcome:
        if name == "a":
            cancel.set()
            return Outcome("cancelled", "stopped")
        return Outcome("success")

    out = schedule(["a", "b"], {"b": ["a"]}, run, cancel=cancel)
    assert out == {"a": Outcome("cancelled", "stopped"), "b": Outcome("cancelled", "cancelled")}
