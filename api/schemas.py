"""Shapes that exist only at the API edge: list envelopes, run acceptance, job status, monitoring, errors.

Stored documents (and the request bodies that become them) live in `shared/models.py`.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field
from syncjobs.shared.models import Camel, DataSource, Destination, JobRun, Output, RunStatus, SyncJob


class DataSourceList(Output):
    items: list[DataSource]


class DestinationList(Output):
    items: list[Destination]


class SyncJobList(Output):
    items: list[SyncJob]


class RunPage(Output):
    """Newest first; pass `next` as `before` for the following page (null on the last one)."""

    runs: list[JobRun]
    next: str | None


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


class CleanupInput(Camel):
    retention_days: int = Field(ge=1, le=3650)


class CleanupResult(Output):
    deleted_count: int
    retention_days: int
    before: str


class MonitoringReport(Output):
    """`{stats, alerts, recentExecutions, timeRange}` (documented shape; built as plain JSON)."""

    stats: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    recent_executions: dict[str, list[dict[str, Any]]]
    time_range: dict[str, Any]


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
