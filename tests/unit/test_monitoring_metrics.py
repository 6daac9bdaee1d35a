"""Each process kind serves only its own series: the worker's port has the worker's, never the api's."""

from __future__ import annotations

import urllib.request

from syncjobs.shared import metrics

WORKER_SERIES = (
    "syncjobs_lease_held",
    "syncjobs_executors_running",
    "syncjobs_runs_total",
    "syncjobs_run_duration_seconds",
    "syncjobs_fire_lag_seconds",
    "syncjobs_change_stream_reconnects_total",
    "syncjobs_webhook_deliveries_total",
    "syncjobs_clock_offset_seconds",
)
API_SERIES = ("syncjobs_stored_runs", "syncjobs_open_alerts")


def _type_lines(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_the_worker_metrics_server_serves_the_worker_series_and_none_of_the_apis() -> None:
    metrics.lease_held.set(1)
    metrics.observe_run_finished("failed", 1500)
    server, thread = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        metrics.lease_held.set(0)
    assert set(WORKER_SERIES) <= _type_lines(text)
    assert "syncjobs_lease_held 1.0" in text
    assert 'syncjobs_runs_total{status="failed"}' in text
    assert "process_resident_memory_bytes" in text
    assert [name for name in API_SERIES if name in text] == []


def test_each_kind_renders_its_own_registry() -> None:
    worker_text = metrics.render("worker")[0].decode()
    api_text = metrics.render("api")[0].decode()
    assert set(WORKER_SERIES) <= _type_lines(worker_text)
    assert set(API_SERIES) <= _type_lines(api_text)
    assert [name for name in WORKER_SERIES if name in api_text] == []
    assert [name for name in API_SERIES if name in worker_text] == []
