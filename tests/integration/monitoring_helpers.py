"""Small builders for the monitoring tests: jobs and finished runs written straight through the store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.store.job_runs import new_run_document


async def insert_job(db: Database, workspace_id: ObjectId, name: str) -> Document:
    """A minimal job document: statistics only need its id, workspace and name."""
    job = {
        "_id": ObjectId(),
        "workspaceId": workspace_id,
        "name": name,
        "enabled": True,
        "schedule": {"cron": "*/5 * * * *", "timezone": "UTC"},
    }
    await db.syncjobs.insert_one(job)
    return job


async def insert_runs(
    db: Database,
    job: Document,
    statuses: list[str],
    start: datetime,
    duration_ms: int = 1000,
    step: timedelta = timedelta(minutes=5),
) -> list[ObjectId]:
    """One finished run per status, oldest first, `step` apart from `start`."""
    docs: list[dict[str, Any]] = []
    for index, status in enumerate(statuses):
        at = start + step * index
        doc = new_run_document(job, trigger="schedule", scheduled_for=at, now=at)
        executed = status not in ("skipped", "missed")
        doc.update(
            status=status,
            startedAt=at if executed else None,
            finishedAt=at + timedelta(milliseconds=duration_ms) if executed else None,
            durationMs=duration_ms if executed else None,
            error="source unreachable" if status in ("failed", "timed_out") else None,
        )
        docs.append(doc)
    await db.job_runs.insert_many(docs)
    return [doc["_id"] for doc in docs]
