"""Response shapes that exist only at the API edge: list envelopes, run acceptance, job status."""

from __future__ import annotations

from pydantic import AwareDatetime
from syncjobs.shared.models import DataSource, Destination, JobRun, Output, SyncJob
from syncjobs.shared.store.webhooks import Webhook, WebhookDelivery


class DataSourceList(Output):
    items: list[DataSource]


class DestinationList(Output):
    items: list[Destination]


class SyncJobList(Output):
    items: list[SyncJob]


class WebhookList(Output):
    items: list[Webhook]


class WebhookDeliveryList(Output):
    items: list[WebhookDelivery]


class RunPage(Output):
    """Newest first; pass `next` as `before` for the following page (null on the last one)."""

    runs: list[JobRun]
    next: str | None


class RunAccepted(Output):
    run_id: str
    status: str


class JobStatus(Output):
    """`nextRuns` carry the job's own UTC offset (e.g. `-05:00` for America/New_York in winter)."""

    job_id: str
    enabled: bool
    running: bool
    last_run_at: AwareDatetime | None
    last_status: str | None
    last_error: str | None
    next_run_at: AwareDatetime | None
    next_runs: list[str]
    average_duration_ms: float | None
    recent_runs: list[JobRun]
