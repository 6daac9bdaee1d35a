"""Shapes that exist only at the API edge: list envelopes, run acceptance, job status, monitoring, errors.

Stored documents (and the request bodies that become them) live in `shared/models.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field
from syncjobs.shared.alerts import AlertKind
from syncjobs.shared.cron import DstNote
from syncjobs.shared.models import (
    Camel,
    DataSource,
    Destination,
    JobRun,
    Output,
    RunStatus,
    SyncJob,
    Webhook,
    WebhookDelivery,
)


class DataSourceList(Output):
    """Every list is one page: pass `next` back as `after` for the following one (null on the last page)."""

    items: list[DataSource]
    next: str | None


class DestinationList(Output):
    items: list[Destination]
    next: str | None


class SyncJobList(Output):
    items: list[SyncJob]
    next: str | None


class WebhookList(Output):
    items: list[Webhook]
    next: str | None


class WebhookDeliveryList(Output):
    items: list[WebhookDelivery]
    next: str | None


class RunPage(Output):
    """Newest first; pass `next` as `before` for the following page (null on the last one)."""

    runs: list[JobRun]
    next: str | None


class BackfillResult(Output):
    """How many of the range's `fires` became pending backfill runs, and how many had already run."""

    fires: int
    created: int
    skipped: int


class RunAccepted(Output):
    run_id: str
    status: RunStatus


class JobStatus(Output):
    """`nextRuns` carry the job's own UTC offset (e.g. `-05:00` for America/New_York in winter)."""

    job_id: str
    enabled: bool
    running: bool
    last_run_at: AwareDatetime | None
    last_status: RunStatus | None
    last_error: str | None
    next_run_at: AwareDatetime | None
    next_runs: list[str]
    average_duration_ms: float | None
    recent_runs: list[JobRun]
    paused: bool
    paused_until: AwareDatetime | None
    pause_note: str | None
    skip_count: int
    # changeStream jobs with a saved resume point: its cluster time and age (how far behind it may be).
    change_stream_resume_at: AwareDatetime | None = None
    change_stream_lag_seconds: float | None = None


class CleanupInput(Camel):
    retention_days: int = Field(ge=1, le=3650)


class CleanupResult(Output):
    deleted_count: int
    retention_days: int
    before: str


class JobRunStatsEntry(Output):
    """One job's runs over the report's range (`JobRunStats.to_json`)."""

    job_id: str
    job_name: str
    total_executions: int
    success_count: int
    failure_count: int
    skipped_count: int
    missed_count: int
    success_rate: float | None
    average_duration_ms: float | None
    last_execution: AwareDatetime | None
    last_status: RunStatus | None
    consecutive_failures: int


class AlertEntry(Output):
    """An alert that holds now (`Alert.to_json`), open since `since`."""

    job_id: str
    kind: AlertKind
    message: str
    since: AwareDatetime


class TimeRange(Output):
    hours: int
    since: AwareDatetime


class MonitoringReport(Output):
    """`{stats, alerts, recentExecutions, timeRange}`; `recentExecutions` maps a job id to its latest runs."""

    stats: list[JobRunStatsEntry]
    alerts: list[AlertEntry]
    recent_executions: dict[str, list[JobRun]]
    time_range: TimeRange


class ErrorDetail(Camel):
    field: str | None = None
    message: str


class ErrorInfo(Camel):
    code: str
    message: str
    details: list[ErrorDetail]


class ErrorBody(Camel):
    """Every error answer: `{"error": {code, message, details}}`."""

    error: ErrorInfo


class HealthDetails(Output):
    tap_isolation: str  # bwrap, unshare, unshare-user or proxy-only: how taps are fenced in on this host


class Health(Output):
    status: Literal["ok"]
    details: HealthDetails


class OpenApiDocument(Output):
    """The OpenAPI 3.1 document itself (its parts as the specification defines them)."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
    security: list[dict[str, Any]]


class Me(Output):
    """Who the presented token is: its name and scope, and its workspace (null for an admin token)."""

    name: str
    scope: Literal["full", "read"]
    admin: bool
    workspace_id: str | None
    workspace_name: str | None


class PreviewFire(Output):
    """One coming fire: the instant with the zone's offset, its wall-clock time there, and what DST did."""

    at: str
    wall_time: str
    dst: DstNote | None


class SchedulePreview(Output):
    cron: str
    timezone: str
    description: str
    fires: list[PreviewFire]
