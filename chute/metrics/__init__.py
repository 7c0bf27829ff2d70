"""Delivery metrics from the ledger: DORA metrics, traces, flakiness, export, Prometheus.

Everything here reads the ``events`` table (docs/ledger.md) and nothing else is
its source; definitions and edge cases are in docs/metrics.md. What others may
import:

- ``compute_metrics(db, project, since, until, environment)`` -> dict
- ``trace(db, project, change=|commit=|environment=+revision=)``, ``trace_change``,
  ``trace_commit``, ``trace_deployment`` -> ``PatchTrace`` / ``DeploymentTrace``
  (``.to_json()``); ``TraceError`` when there is nothing to trace
- ``export_events(db, project, since, out)``, ``iter_events``, ``bulk_index``,
  ``export_to_elasticsearch`` -> ``BulkReport``; ``ExportError``
- ``make_registry(db)`` -> a Prometheus ``CollectorRegistry`` with chute's collector
- ``urls``: the web pages' URL patterns, for links from other pages
"""

from . import urls
from .dora import compute_metrics
from .export import BulkReport, ExportError, bulk_index, export_events, export_to_elasticsearch, iter_events
from .periods import TimeError, parse_time
from .prometheus import LedgerCollector, make_registry
from .trace import (
    DeploymentTrace,
    PatchTrace,
    TraceError,
    environment_history,
    environments,
    trace,
    trace_change,
    trace_commit,
    trace_deployment,
)

__all__ = [
    "BulkReport",
    "DeploymentTrace",
    "ExportError",
    "LedgerCollector",
    "PatchTrace",
    "TimeError",
    "TraceError",
    "bulk_index",
    "compute_metrics",
    "environment_history",
    "environments",
    "export_events",
    "export_to_elasticsearch",
    "iter_events",
    "make_registry",
    "parse_time",
    "trace",
    "trace_change",
    "trace_commit",
    "trace_deployment",
    "urls",
]
