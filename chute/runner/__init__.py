"""Executes a plan: stages concurrently along the DAG, steps in PipelineLib's order, logs and results.

The same code runs under ``chute run`` on a laptop, in the embedded agent of
``chute serve`` and in a remote ``chute agent``.

    result = run_pipeline(RunRequest(repo_dir=..., pipelines=["test"], ...),
                          observer=Observer(), cancel=threading.Event())

The result is a plain JSON-serialisable document (status, error, stages with
status/error/exports/duration/log path, images with name/tags/digest,
promotions, triggers, notifications, graph).
"""

from .request import Isolation, IsolationError, Observer, RunRequest
from .run import run_pipeline, run_pipelines
from .scheduler import Outcome, schedule

__all__ = ["Isolation", "IsolationError", "Observer", "Outcome", "RunRequest", "run_pipeline", "run_pipelines",
           "schedule"]
