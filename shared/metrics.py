"""Prometheus collectors, one registry per process kind; labels never carry job names, ids or secrets.

A process shows only what is true of it: the worker's registry holds what a worker does (its runs, its
lease, its change stream, its executors, its webhook deliveries) and is served on
SYNCJOBS_WORKER_METRICS_PORT; the api's holds what the database stores, read at scrape time, and is served
at the api's `/metrics`. An api never reports `syncjobs_lease_held 0` for a lease it could never hold.
Both carry the standard `process_*` and `python_info` series of their own process.
"""

from __future__ import annotations

import threading
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from syncjobs.shared.models import RunStatus

ProcessKind = Literal["api", "worker"]

WORKER_REGISTRY = CollectorRegistry(auto_describe=True)
API_REGISTRY = CollectorRegistry(auto_describe=True)
_REGISTRIES: dict[ProcessKind, CollectorRegistry] = {"api": API_REGISTRY, "worker": WORKER_REGISTRY}
for _registry in _REGISTRIES.values():
    ProcessCollector(registry=_registry)
    PlatformCollector(registry=_registry)

_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# The worker's own series: updated as things happen in the worker process.
runs_total = Counter(
    "syncjobs_runs", "Runs finished by this worker, by final status.", ["status"], registry=WORKER_REGISTRY
)
run_duration_seconds = Histogram(
    "syncjobs_run_duration_seconds",
    "Wall time of executed runs, by final status.",
    ["status"],
    buckets=_DURATION_BUCKETS,
    registry=WORKER_REGISTRY,
)
fire_lag_seconds = Histogram(
    "syncjobs_fire_lag_seconds",
    "Delay between a fire's scheduled time and its run starting.",
    buckets=_LAG_BUCKETS,
    registry=WORKER_REGISTRY,
)
lease_held = Gauge(
    "syncjobs_lease_held", "1 while this worker holds the scheduler lease, else 0.", registry=WORKER_REGISTRY
)
change_stream_reconnects_total = Counter(
    "syncjobs_change_stream_reconnects",
    "Times the worker reopened its change stream on syncjobs.",
    registry=WORKER_REGISTRY,
)
clock_offset_seconds = Gauge(
    "syncjobs_clock_offset_seconds",
    "The database server's clock minus this worker's, as last measured (fires are decided on the server's).",
    registry=WORKER_REGISTRY,
)
executors_running = Gauge(
    "syncjobs_executors_running", "Executor processes this worker is running now.", registry=WORKER_REGISTRY
)
executor_first_event_seconds = Histogram(
    "syncjobs_executor_first_event_seconds",
    "From asking for an executor to its first NDJSON event, by start (cold: new interpreter, warm: forked, "
    "hosted: a workspace's executor host).",
    ["start"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=WORKER_REGISTRY,
)
webhook_deliveries_total = Counter(
    "syncjobs_webhook_deliveries",
    "Alert webhook deliveries, by outcome (delivered or failed).",
    ["outcome"],
    registry=WORKER_REGISTRY,
)

# The api's series: what the database holds, set at each scrape of the api's `/metrics`.
stored_runs = Gauge(
    "syncjobs_stored_runs",
    "Runs kept in the database (within retention), by status; set by the api at scrape.",
    ["status"],
    registry=API_REGISTRY,
)
open_alerts = Gauge(
    "syncjobs_open_alerts",
    "Alerts open now (announced and not yet resolved), by kind; set by the api at scrape.",
    ["kind"],
    registry=API_REGISTRY,
)


change_stream_lag_seconds = Gauge(
    "syncjobs_change_stream_lag_seconds",
    "Age of each changeStream job's resume point (cluster time), by job id; set by the api at scrape.",
    ["job_id"],
    registry=API_REGISTRY,
)


def observe_run_finished(status: str, duration_ms: int | None) -> None:
    """One call for the worker when it records a run's outcome."""
    runs_total.labels(status=status).inc()
    if duration_ms is not None:
        run_duration_seconds.labels(status=status).observe(duration_ms / 1000)


def set_stored_runs(counts: dict[str, int]) -> None:
    """Every known status gets a sample, so a status that went to zero shows 0 rather than vanishing."""
    for status in sorted({*RunStatus, *counts}):
        stored_runs.labels(status=status).set(counts.get(status, 0))


def set_open_alerts(counts: dict[str, int], kinds: tuple[str, ...]) -> None:
    """Like `set_stored_runs`: every alert kind gets a sample, 0 when none is open."""
    for kind in sorted({*kinds, *counts}):
        open_alerts.labels(kind=kind).set(counts.get(kind, 0))


def set_change_stream_lags(lags: dict[str, float]) -> None:
    """One sample per changeStream job with a resume point; a job reset or deleted drops out."""
    change_stream_lag_seconds.clear()
    for job_id, lag in lags.items():
        change_stream_lag_seconds.labels(job_id=job_id).set(lag)


def render(process: ProcessKind) -> tuple[bytes, str]:
    """The exposition body of that process kind's registry, and its content type."""
    return generate_latest(_REGISTRIES[process]), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> tuple[WSGIServer, threading.Thread]:
    """Serve the worker's registry on its own port (a daemon thread); `server.shutdown()` stops it."""
    return start_http_server(port, addr=addr, registry=WORKER_REGISTRY)
