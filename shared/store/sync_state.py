"""Saved incremental cursors, one per (job, entity), in the control database's `sync_state`.

A cursor is saved only after the destination acknowledged the writes it covers, so a crash at any point
re-reads (and idempotently re-upserts) at most one batch, and never skips a record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from syncjobs.shared.clock import Clock, SystemClock, to_ms

COLLECTION = "sync_state"


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
