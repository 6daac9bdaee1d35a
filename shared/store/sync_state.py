"""Saved incremental cursors, one per (job, entity), in the control database's `sync_state`.

A cursor is saved only after the destination acknowledged the writes it covers, so a crash at any point
re-reads (and idempotently re-upserts) at most one batch, and never skips a record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId, Timestamp
from pymongo.asynchronous.database import AsyncDatabase
from syncjobs.shared.clock import Clock, SystemClock, to_ms

COLLECTION = "sync_state"
# The `entity` under which a changeStream job keeps its resume point ({token, clusterTime}): `$` cannot
# start a collection name, so it never meets an entity's cursor.
CHANGE_STREAM_KEY = "$changeStream"


def _state_id(job_id: ObjectId, entity: str) -> dict[str, Any]:
    # Field order is part of an embedded-document _id's identity: always build it here.
    return {"jobId": job_id, "entity": entity}


async def load_cursor(db: AsyncDatabase[Any], job_id: ObjectId, entity: str) -> Any | None:
    """The entity's saved cursor, or None when it was never synced incrementally."""
    doc = await db[COLLECTION].find_one({"_id": _state_id(job_id, entity)})
    return None if doc is None else doc.get("cursor")


async def save_cursor(db: AsyncDatabase[Any], job_id: ObjectId, entity: str, cursor: Any, now: datetime) -> None:
    """Record how far the entity is synced (acknowledged write, upserted)."""
    await db[COLLECTION].update_one(
        {"_id": _state_id(job_id, entity)},
        {"$set": {"cursor": cursor, "updatedAt": to_ms(now)}},
        upsert=True,
    )


class JobCursors:
    """The cursors of one job, as the sync algorithm sees them."""

    def __init__(self, db: AsyncDatabase[Any], job_id: ObjectId, clock: Clock | None = None) -> None:
        self._db = db
        self._job_id = job_id
        self._clock = clock or SystemClock()

    async def load(self, entity: str) -> Any | None:
        return await load_cursor(self._db, self._job_id, entity)

    async def save(self, entity: str, cursor: Any) -> None:
        await save_cursor(self._db, self._job_id, entity, cursor, self._clock.now())


async def change_stream_resume_times(
    db: AsyncDatabase[Any], job_ids: list[ObjectId] | None = None
) -> dict[str, datetime]:
    """The cluster time of each changeStream job's resume point (of those jobs, when given), by job id."""
    query: dict[str, Any] = {"_id.entity": CHANGE_STREAM_KEY}
    if job_ids is not None:  # by _id: an index lookup per job
        query = {"_id": {"$in": [_state_id(job_id, CHANGE_STREAM_KEY) for job_id in job_ids]}}
    times: dict[str, datetime] = {}
    async for doc in db[COLLECTION].find(query, {"cursor.clusterTime": 1}):
        cluster_time = (doc.get("cursor") or {}).get("clusterTime")
        if isinstance(cluster_time, Timestamp):
            times[str(doc["_id"]["jobId"])] = cluster_time.as_datetime()
    return times


def lag_seconds(resume_at: datetime, now: datetime) -> float:
    """A resume point's age: how far behind its source a changeStream destination may be."""
    return round(max((now - resume_at).total_seconds(), 0.0), 3)


async def reset_job_state(db: AsyncDatabase[Any], job_id: ObjectId) -> int:
    """Forget every cursor and the resume point of the job: its next run starts over. Returns how many."""
    result = await db[COLLECTION].delete_many({"_id.jobId": job_id})
    return result.deleted_count
