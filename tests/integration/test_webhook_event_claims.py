"""The run event queue is claimed a batch at a time: oldest first, each event by one claimer only, in a
fixed number of commands whatever the batch's size, and again once a claim lapses; events published together
are queued in one write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.shared.mongo import Database, connect
from syncjobs.shared.run_events import RunEventSubscriptions
from syncjobs.shared.store import webhook_events
from syncjobs.shared.store.webhook_events import QueuedEvent

from tests.fixtures.command_log import CommandLog

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
HOLD = timedelta(minutes=5)


async def _queue(db: Database, count: int) -> list[ObjectId]:
    workspace = ObjectId()
    events = [QueuedEvent(workspace, "run.succeeded", {"runId": f"run-{n}"}, T0) for n in range(count)]
    await webhook_events.enqueue_many(db, events)
    return [doc["_id"] async for doc in db.webhook_events.find({}, {"_id": 1}).sort("_id", 1)]


async def test_batches_are_claimed_oldest_first_and_again_once_their_claim_lapses(db: Database) -> None:
    queued = await _queue(db, 5)

    first = await webhook_events.claim_batch(db, T0, HOLD, 3)
    second = await webhook_events.claim_batch(db, T0, HOLD, 3)
    third = await webhook_events.claim_batch(db, T0 + timedelta(minutes=1), HOLD, 3)
    lapsed = await webhook_events.claim_batch(db, T0 + HOLD, HOLD, 10)

    assert [doc["_id"] for doc in first] == queued[:3]
    assert [doc["_id"] for doc in second] == queued[3:]
    assert third == []
    assert [doc["_id"] for doc in lapsed] == queued


async def test_concurrent_claimers_never_win_the_same_event(db: Database, mongo_uri: str) -> None:
    queued = await _queue(db, 30)
    clients = [connect(mongo_uri) for _ in range(3)]
    try:
        won = await asyncio.gather(*(webhook_events.claim_batch(c[db.name], T0, HOLD, 30) for c in clients))
    finally:
        for client in clients:
            await client.close()

    ids = [doc["_id"] for batch in won for doc in batch]
    assert sorted(ids) == queued  # every event won, and once only


async def test_a_batch_costs_three_commands_to_claim_and_one_to_delete(db: Database, mongo_uri: str) -> None:
    await _queue(db, 50)
    commands = CommandLog()
    client = connect(mongo_uri, event_listeners=[commands])
    try:
        batch = await webhook_events.claim_batch(client[db.name], T0, HOLD, 100)
        await webhook_events.delivered(client[db.name], [doc["_id"] for doc in batch])
    finally:
        await client.close()

    assert len(batch) == 50
    assert [name for name in commands.names if name not in ("endSessions",)] == ["find", "update", "find", "delete"]
    assert await webhook_events.pending_count(db) == 0


async def test_events_published_together_are_queued_in_one_write_in_their_order(db: Database, mongo_uri: str) -> None:
    commands = CommandLog()
    client = connect(mongo_uri, event_listeners=[commands])
    workspace = ObjectId()
    subscriptions = RunEventSubscriptions(client[db.name], refresh_seconds=60)
    subscriptions.workspaces = {workspace}
    try:
        await asyncio.gather(
            *(subscriptions.publish(workspace, "run.started", {"runId": f"run-{n}"}, T0) for n in range(6)),
            subscriptions.publish(ObjectId(), "run.started", {"runId": "not-subscribed"}, T0),
        )
    finally:
        await client.close()

    assert commands.names.count("insert") == 1
    queued = await db.webhook_events.find({}).sort("_id", 1).to_list()
    assert [doc["payload"]["runId"] for doc in queued] == [f"run-{n}" for n in range(6)]
