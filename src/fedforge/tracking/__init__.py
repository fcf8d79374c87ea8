"""Run outputs: the run directory, the SQLite run store and its query API, sinks, reports."""

from fedforge.tracking.query import (
    load_client_rounds,
    load_domain_rounds,
    load_events,
    load_metrics,
    load_rounds,
    load_runs,
)

__all__ = ["load_client_rounds", "load_domain_rounds", "load_events", "load_metrics", "load_rounds", "load_runs"]
