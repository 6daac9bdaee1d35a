"""Run events from a leadership term and its claimer on the injected clock: queued only for a subscribed
workspace (missed fires from the leader, start and end from the claimer), then drained to a receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from syncjobs.shared.egress import EgressPolicy
from syncjobs.shared.models import RUN_EVENTS, WebhookInput
from syncjobs.shared.mongo import Database
from syncjobs.shared.run_events import RunEventSubscriptions
from syncjobs.shared.settings import Settings
from syncjobs.shared.store.webhooks import create_webhook
from syncjobs.worker.notifier import DeliveryPolicy
from syncjobs.worker.run_event_delivery import deliver_run_events_forever

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_harness import T0, Harness, leadership_harness
from tests.fixtures.worker_jobs import make_job
from tests.integration.test_webhooks_delivery import Receiver, receiver

__all__ = ["receiver"]  # the fixture, shared with the alert delivery tests

SECRET = "run-events-secret-0123456789"


@pytest.fixture
async def harness(db: Database, settings: Settings) -> AsyncIterator[Harness]:
    async with leadership_harness(db, settings) as running:
        yield running


async def test_missed_started_and_succeeded_are_queued_for_the_subscribed_workspace_only(
    harness: Harness, db: Database, settings: Settings, receiver: Receiver
) -> None:
    subscribed = await make_job(db, "ok", "*/5 * * * * *", T0, workspace_name="subscribed")
    other = await make_job(db, "ok", "*/5 * * * * *", T0, workspace_name="not-subscribed")
    for job in (subscribed, other):  # ten fires missed while no worker led, the last one caught up
        await db.syncjobs.update_one({"_id": job["_id"]}, {"$set": {"nextRunAt": T0 - timedelta(seconds=50)}})
    hook = WebhookInput.model_validate({"url": receiver.url, "events": list(RUN_EVENTS), "secret": SECRET})
    await create_webhook(db, subscribed["workspaceId"], hook, datetime.now(UTC))
    subscriptions = RunEventSubscriptions(db, refresh_seconds=60)
    await subscriptions.refresh()
    assert subscriptions.workspaces == {subscribed["workspaceId"]}

    await harness.start(run_events=subscriptions)
    for job in (subscribed, other):
        await eventually(lambda job=job: harness.run_with(job["_id"], status="succeeded"))  # type: ignore[misc]
    await eventually(lambda: _count(db, {"event": "run.succeeded"}), "the run's end queued")
    queued = await db.webhook_events.find().sort("_id", 1).to_list()
    assert {event["workspaceId"] for event in queued} == {subscribed["workspaceId"]}
    names = [event["event"] for event in queued]
    assert sorted(names) == ["run.missed"] * 10 + ["run.started", "run.succeeded"], names
    assert names.index("run.started") < names.index("run.succeeded")
    missed = [event["payload"] for event in queued if event["event"] == "run.missed"]
    assert [m["run"]["scheduledFor"] for m in missed] == [
        (T0 - timedelta(seconds=s)).isoformat() for s in range(50, 0, -5)
    ]

    egress = EgressPolicy.from_strings(settings.allowed_networks)
    policy = DeliveryPolicy(attempts=1, timeout_seconds=10)
    drain = asyncio.create_task(
        deliver_run_events_forever(db, subscriptions, egress, harness.clock, poll_seconds=0.2, policy=policy)
    )
    try:
        received = await asyncio.wait_for(receiver.wait_for(12), 60)
        await eventually(lambda: _none_left(db), "every event delivered and removed")
    finally:
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
    assert sorted(event["event"] for event in received) == sorted(names)
    for headers, body in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Syncjobs-Signature"], expected)
        assert json.loads(body)["job"]["id"] == str(subscribed["_id"])
    assert await db.webhook_deliveries.count_documents({"outcome": "delivered"}) == 12


async def _count(db: Database, query: dict[str, object]) -> int | None:
    return await db.webhook_events.count_documents(query) or None


async def _none_left(db: Database) -> bool:
    return await db.webhook_events.count_documents({}) == 0
