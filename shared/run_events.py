"""Per-run webhook events (`run.started`, `run.succeeded`, ...): what one says, and which workspaces want them.

The run path only enqueues (an insert into `webhook_events`, shared by the events published meanwhile)
and only for a workspace in `RunEventSubscriptions`, a set refreshed in the background: a workspace
without a webhook subscribed to run events costs a run no database call at all.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import RUN_EVENTS, JobRun, RunStatus
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import sync_jobs, webhook_events, webhooks
from syncjobs.shared.store.webhook_events import QueuedEvent
from syncjobs.shared.waits import spawn

log = get_logger(__name__)

# The event a run's final status announces; a status not here (skipped, reset) announces none.
FINAL_EVENTS = {
    RunStatus.SUCCEEDED: "run.succeeded",
    RunStatus.FAILED: "run.failed",
    RunStatus.TIMED_OUT: "run.failed",
    RunStatus.CANCELLED: "run.cancelled",
    RunStatus.MISSED: "run.missed",
}


def run_event(
    name: str, run: dict[str, Any], job_name: str | None, now: datetime, error: str | None = None
) -> dict[str, Any]:
    """The body POSTed for one run event; `run`: the run's document (or its fields as stored)."""
    status = run["status"] if name != "run.started" else RunStatus.RUNNING
    label = f"job '{job_name}'" if job_name else f"job {run['jobId']}"
    payload = {
        "event": name,
        "workspaceId": str(run["workspaceId"]),
        "job": {"id": str(run["jobId"]), "name": job_name},
        "run": {
            "id": str(run["_id"]),
            "status": str(status),
            "trigger": run["trigger"],
            "attempt": run.get("attempt", 1),
            "scheduledFor": run["scheduledFor"].isoformat(),
            "error": error,
        },
        "runId": str(run["_id"]),
        "occurredAt": now.isoformat(),
        "text": f"syncjobs {label}: run {run['_id']} {str(status).replace('_', ' ')}"
        + (f" ({error})" if error else ""),
    }
    return payload


class RunEventSubscriptions:
    """The workspaces with a webhook subscribed to a run event, as of the last refresh (every
    `refresh_seconds`): a webhook created meanwhile gets the runs that start after the next refresh."""

    def __init__(self, db: Database, refresh_seconds: float) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.workspaces: set[ObjectId] = set()
        self.queued = asyncio.Event()  # set by each enqueue: this process's drain need not wait its poll
        self._waiting: list[tuple[list[QueuedEvent], asyncio.Future[None]]] = []  # for the next write
        self._writer: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        self.workspaces = await webhooks.workspaces_subscribed_to(self.db, list(RUN_EVENTS))

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except PyMongoError as error:  # keep the last set: a late event beats a read per run
                log.warning("run_event_subscriptions_not_read", error=str(error)[:200])
            await asyncio.sleep(self.refresh_seconds)

    async def publish(self, workspace_id: ObjectId, name: str, payload: dict[str, Any], now: datetime) -> None:
        """Enqueue the event when the workspace wants run events; never raises into the run."""
        await self.publish_many([(workspace_id, name, payload)], now)

    async def publish_many(self, events: list[tuple[ObjectId, str, dict[str, Any]]], now: datetime) -> None:
        """`publish` of (workspaceId, name, payload) each. Returns once they are stored (or could not be:
        logged, never raised). Events published while an earlier write is on its way go together in the
        next one: a burst's runs start and end in waves, and one insert per event cost the server a
        command and a wake-up of every paced change stream each."""
        wanted = [QueuedEvent(*event, now) for event in events if event[0] in self.workspaces]
        if not wanted:
            return
        stored = asyncio.get_running_loop().create_future()
        self._waiting.append((wanted, stored))
        if self._writer is None or self._writer.done():
            self._writer = spawn(self._write_while_waiting(), "run event enqueue")
        await stored

    async def _write_while_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            events = [event for wanted, _ in batch for event in wanted]
            try:
                await webhook_events.enqueue_many(self.db, events)
                self.queued.set()
            except PyMongoError as error:
                names = [f"{event.name}:{event.payload['runId']}" for event in events]
                log.warning("run_event_not_queued", events=names[:10], error=str(error)[:200])
            finally:
                for _, stored in batch:
                    if not stored.done():  # its publisher may have been cancelled meanwhile
                        stored.set_result(None)


async def publish_cancelled(db: Database, workspace_id: ObjectId, run: JobRun, now: datetime) -> None:
    """`run.cancelled` for a pending run the api cancelled: off the run path, so one read of the webhooks
    replaces the workers' cached set (which the api does not keep)."""
    if not await webhooks.webhook_targets(db, workspace_id, ["run.cancelled"]):
        return
    job = await sync_jobs.find_job_identity(db, ObjectId(run.job_id))
    stored = {
        "_id": run.id,
        "workspaceId": workspace_id,
        "jobId": run.job_id,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "scheduledFor": run.scheduled_for,
        "status": run.status,
    }
    name = str(job["name"]) if job and job.get("name") else None
    payload = run_event("run.cancelled", stored, name, now, run.error)
    await webhook_events.enqueue(db, workspace_id, "run.cancelled", payload, now)
