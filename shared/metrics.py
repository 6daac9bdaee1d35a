"""Prometheus collectors, one registry per process; labels never carry job names, ids or secrets.

The worker updates the run, lease and executor metrics as things happen; the api serves the same registry
at `/metrics` and adds the stored run counts, read from the database at scrape time.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)

_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

runs_total = Counter(
    "syncjobs_runs", "Runs finished by this worker, by final status.", ["status"], registry=REGISTRY
)
run_duration_seconds = Histogram(
    "syncjobs_run_duration_seconds", "Wall time of executed runs, by final status.", ["status"],
    buckets=_DURATION_BUCKETS, registry=REGISTRY,
)
fire_lag_seconds = Histogram(
    "syncjobs_fire_lag_seconds", "Delay between a fire's scheduled time and its run starting.",
    buckets=_LAG_BUCKETS, registry=REGISTRY,
)
lease_held = Gauge("syncjobs_lease_held", "1 while this worker holds the scheduler lease, else 0.",
                   registry=REGISTRY)
change_stream_reconnects_total = Counter(
    "syncjobs_change_stream_reconnects", "Times the worker reopened its change stream on syncjobs.",
    registry=REGISTRY,
)
executors_running = Gauge("syncjobs_executors_running", "Executor processes this worker is running now.",
                          registry=REGISTRY)
stored_runs = Gauge(
    "syncjobs_stored_runs", "Runs kept in the database (within retention), by status; set by the api at scrape.",
    ["status"], registry=REGISTRY,
)
webhook_deliveries_total = Counter(
    "syncjobs_webhook_deliveries", "Alert webhook deliveries, by outcome (delivered or failed).", ["outcome"],
    registry=REGISTRY,
)

RUN_STATUSES = ("pending", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped", "missed")


def observe_run_finished(status: str, duration_ms: int | None) -> None:
    """One call for the worker when it records a run's outcome."""
    runs_total.labels(status=status).inc()
    if duration_ms is not None:
        run_duration_seconds.labels(status=status).observe(duration_ms / 1000)


def set_stored_runs(counts: dict[str, int]) -> None:
    """Every known status gets a sample, so a status that went to zero shows 0 rather than vanishing."""
    for status in sorted({*RUN_STATUSES, *counts}):
        stored_runs.labels(status=status).set(counts.get(status, 0))


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> tuple[WSGIServer, threading.Thread]:
    """Serve this process's registry on its own port (a daemon thread); `server.shutdown()` stops it."""
    return start_http_server(port, addr=addr, registry=REGISTRY)
