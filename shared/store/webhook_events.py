"""`webhook_events`: run events waiting for delivery (an outbox), written where a run changes, drained by
the workers' `run event delivery` task.

A document is claimed for a while (`claimedUntil`) by the replica that delivers it and deleted once every
subscribed webhook was tried, so a replica that dies mid-delivery leaves it to another one after the claim.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from syncjobs.shared.clock import to_ms
from syncjobs.shared.mongo import Database, Document


async def enqueue(db: Database, workspace_id: ObjectId, name: str, payload: dict[str, Any], now: datetime) -> None:
    await enqueue_many(db, [(workspace_id, name, payload)], now)


async def enqueue_many(db: Database, events: list[tuple[ObjectId, str, dict[str, Any]]], now: datetime) -> None:
    """(workspaceId, event name, payload) each, in one write."""
    docs = [
        {
            "_id": ObjectId(),
            "workspaceId": workspace_id,
            "event": name,
            "payload": payload,
            "createdAt": to_ms(now),
            "claimedUntil": to_ms(now),
        }
        for workspace_id, name, payload in events
    ]
    if docs:
        await db.webhook_events.insert_many(docs)


async def claim_next(db: Database, now: datetime, hold: timedelta) -> Document | None:
    """The oldest event nobody holds, held by the caller until `now + hold`; None when there is none."""
    return await db.webhook_events.find_one_and_update(
        {"claimedUntil": {"$lte": to_ms(now)}},
        {"$set": {"claimedUntil": to_ms(now + hold)}},
        sort=[("claimedUntil", 1), ("_id", 1)],
        return_document=ReturnDocument.AFTER,
    )


async def delivered(db: Database, event_id: ObjectId) -> None:
    await db.webhook_events.delete_one({"_id": event_id})


async def pending_count(db: Database) -> int:
    """Events not yet delivered (the burst bench's drain waits on it)."""
    return await db.webhook_events.count_documents({})
