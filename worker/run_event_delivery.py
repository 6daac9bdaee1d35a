"""The `run event delivery` task every replica runs: drain `webhook_events` to the subscribed webhooks.

Events are claimed one at a time, oldest first, so on one replica a run's `run.started` goes out before
its end; each is delivered to every webhook of its workspace subscribed to it (signed, retried, recorded
in `webhook_deliveries` like an alert event) and then deleted. A replica that dies mid-delivery leaves
its claim to lapse after CLAIM_HOLD: the event is delivered again by another (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import aiohttp
from pymongo.errors import PyMongoError
from syncjobs.shared.clock import Clock
from syncjobs.shared.egress import EgressPolicy, guarded_connector
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.run_events import RunEventSubscriptions
from syncjobs.shared.store import webhook_events, webhooks
from syncjobs.worker.notifier import AlertEvent, DeliveryPolicy, deliver

log = get_logger(__name__)

# Longer than a delivery to every webhook of a workspace can take under the default DeliveryPolicy.
CLAIM_HOLD = timedelta(minutes=5)


async def _deliver_one(
    db: Database, session: aiohttp.ClientSession, event: Document, policy: DeliveryPolicy, clock: Clock
) -> None:
    payload = event["payload"]
    announced = AlertEvent(event["event"], payload["run"]["status"], payload["job"]["id"], payload)
    hooks = await webhooks.webhook_targets(db, event["workspaceId"], [event["event"]])
    async with asyncio.TaskGroup() as group:
        for hook in hooks:
            group.create_task(_deliver_and_record(db, session, hook, announced, policy, clock))
    await webhook_events.delivered(db, event["_id"])


async def _deliver_and_record(
    db: Database,
    session: aiohttp.ClientSession,
    hook: Document,
    event: AlertEvent,
    policy: DeliveryPolicy,
    clock: Clock,
) -> None:
    await webhooks.record_delivery(db, await deliver(session, hook, event, policy, clock))


async def deliver_run_events_forever(
    db: Database,
    subscriptions: RunEventSubscriptions,
    egress: EgressPolicy,
    clock: Clock,
    *,
    poll_seconds: float,
    policy: DeliveryPolicy | None = None,
) -> None:
    """Until cancelled: deliver what is queued, then wait for this replica's next enqueue or `poll_seconds`
    (another process, the api or another replica, may have queued one)."""
    policy = policy or DeliveryPolicy()
    async with aiohttp.ClientSession(connector=guarded_connector(egress)) as session:
        while True:
            subscriptions.queued.clear()
            try:
                event = await webhook_events.claim_next(db, clock.now(), CLAIM_HOLD)
                if event is not None:
                    await _deliver_one(db, session, event, policy, clock)
                    continue
            except PyMongoError as error:
                log.warning("run_event_delivery_failed", error=str(error)[:200])
            except Exception:  # e.g. a delivery record not written (in an ExceptionGroup): the claim lapses
                log.exception("run_event_delivery_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscriptions.queued.wait(), poll_seconds)
