"""Monitoring: per-job run statistics and alerts over a time range, run-history cleanup, and `/metrics`."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from syncjobs.api.context import SETTINGS_KEY, clock, db, read_body, workspace_id
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import CleanupInput, CleanupResult, MonitoringReport
from syncjobs.shared import metrics
from syncjobs.shared.alerts import ALERT_KINDS, evaluate
from syncjobs.shared.clock import to_ms
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.store import run_stats, sync_state, webhooks

routes = web.RouteTableDef()
TAG = "monitoring"
DEFAULT_HOURS = 24
MAX_HOURS = 168


def time_range_hours(request: web.Request) -> int:
    raw = request.query.get("timeRange")
    if raw is None or raw == "":
        return DEFAULT_HOURS
    try:
        hours = int(raw)
    except ValueError:
        raise ValidationFailed("timeRange", "must be a whole number of hours") from None
    if not 1 <= hours <= MAX_HOURS:
        raise ValidationFailed("timeRange", f"must be between 1 and {MAX_HOURS} hours")
    return hours


@routes.get("/api/workspaces/{ws}/monitoring")
@describe(
    "Run statistics, alerts and recent runs per job over the last `timeRange` hours",
    tag=TAG,
    response=MonitoringReport,
    errors=(404, 422),
    query={"timeRange": {"type": "integer", "minimum": 1, "maximum": MAX_HOURS, "default": DEFAULT_HOURS}},
)
async def get_monitoring(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    hours = time_range_hours(request)
    now = clock(request).now()
    since = to_ms(now - timedelta(hours=hours))
    stats = await run_stats.job_run_stats(db(request), ws, since)
    alerts = evaluate(stats, request.app[SETTINGS_KEY].alerts, now)
    return web.json_response(
        {
            "stats": [entry.to_json() for entry in stats],
            "alerts": [alert.to_json() for alert in alerts],
            "recentExecutions": {entry.job_id: [run.to_json() for run in entry.recent_runs] for entry in stats},
            "timeRange": {"hours": hours, "since": since.isoformat()},
        }
    )


@routes.post("/api/workspaces/{ws}/monitoring/cleanup")
@describe(
    "Delete this workspace's finished runs older than `retentionDays` now",
    tag=TAG,
    body=CleanupInput,
    response=CleanupResult,
    errors=(404,),
)
async def cleanup_runs(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, CleanupInput)
    before = to_ms(clock(request).now() - timedelta(days=body.retention_days))
    deleted = await run_stats.delete_runs_before(db(request), ws, before)
    return web.json_response(
        {"deletedCount": deleted, "retentionDays": body.retention_days, "before": before.isoformat()}
    )


@routes.get("/metrics")
@describe("The api's Prometheus metrics: stored runs and open alerts (no token; no job names or secrets)", tag="meta")
async def prometheus_metrics(request: web.Request) -> web.Response:
    metrics.set_stored_runs(await run_stats.count_runs_by_status(db(request)))
    metrics.set_open_alerts(await webhooks.count_open_alerts_by_kind(db(request)), ALERT_KINDS)
    now = clock(request).now()
    resume_times = await sync_state.change_stream_resume_times(db(request))
    metrics.set_change_stream_lags({job: sync_state.lag_seconds(at, now) for job, at in resume_times.items()})
    body, content_type = metrics.render("api")
    return web.Response(body=body, headers={"Content-Type": content_type})
