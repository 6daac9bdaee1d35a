"""`webhook_events`: run events waiting for delivery (an outbox), written where a run changes, drained by
the workers' `run event delivery` task.

A document is claimed for a while (`claimedUntil`) by the replica that delivers it and deleted once every
subscribed webhook was tried, so a replica that dies mid-delivery leaves it to another one after the claim.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from bson import ObjectId
from syncjobs.shared.clock import to_ms
from syncjobs.shared.mongo import Database, Document


class QueuedEvent(NamedTuple):
    workspace_id: ObjectId
    name: str
    payload: dict[str, Any]
    at: datetime  # when it happened: the queue's order after `_id`


async def enqueue(db: Database, workspace_id: ObjectId, name: str, payload: dict[str, Any], now: datetime) -> None:
    await enqueue_many(db, [QueuedEvent(workspace_id, name, payload, now)])


async def enqueue_many(db: Database, events: list[QueuedEvent]) -> None:
    """Each event, in one write, in the order given (`_id` keeps it)."""
    docs = [
        {
            "_id": ObjectId(),
            "workspaceId": event.workspace_id,
            "event": event.name,
            "payload": event.payload,
            "createdAt": to_ms(event.at),
            "claimedUntil": to_ms(event.at),
        }
        for event in events
    ]
    if docs:
        await db.webhook_events.insert_many(docs)


async def claim_batch(db: Database, now: datetime, hold: timedelta, limit: int) -> list[Document]:
    """Up to `limit` of the oldest events nobody holds, held by the caller until `now + hold`, oldest first.

    Three commands for the batch (the ids, one conditional update stamping a claim token, the documents
    it won) instead of a find_one_and_update per event: SecantusDB planned each sorted find_one_and_update
    over the whole queue, so a burst's 2,000 events cost its server ~30 ms each (issue 16's burst bench)."""
    claimable = {"claimedUntil": {"$lte": to_ms(now)}}
    found = db.webhook_events.find(claimable, {"_id": 1}).sort([("claimedUntil", 1), ("_id", 1)]).limit(limit)
    ids = [doc["_id"] for doc in await found.to_list()]
    if not ids:
        return []
    token = ObjectId()
    await db.webhook_events.update_many(
        {"_id": {"$in": ids}, **claimable}, {"$set": {"claimedUntil": to_ms(now + hold), "claimToken": token}}
    )
    won = await db.webhook_events.find({"_id": {"$in": ids}, "claimToken": token}).to_list()
    return sorted(won, key=lambda doc: doc["_id"])


async def delivered(db: Database, event_ids: list[ObjectId]) -> None:
    if event_ids:
        await db.webhook_events.delete_many({"_id": {"$in": event_ids}})


async def pending_count(db: Database) -> int:
    """Events not yet delivered (the burst bench's drain waits on it)."""
    return await db.webhook_events.count_documents({})
