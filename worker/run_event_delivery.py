"""The `run event delivery` task every replica runs: drain `webhook_events` to the subscribed webhooks.

Events are claimed a batch at a time, oldest first. The events of one run are delivered in order (its
`run.started` before its end), the runs of a batch side by side; each event goes to every webhook of its
workspace subscribed to it (signed, retried, recorded in `webhook_deliveries` like an alert event). The
batch's records are written, then its events deleted, in one write each. A replica that dies mid-batch
leaves its claim to lapse after CLAIM_HOLD: those events are delivered again by another (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import timedelta

import aiohttp
from bson import ObjectId
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
# Events claimed per batch: a burst of 1,000 runs queues 2,000 (started, succeeded); a batch is three
# commands to claim, one to record and one to delete, whatever its size.
BATCH_EVENTS = 100


async def _deliver_batch(
    db: Database, session: aiohttp.ClientSession, events: list[Document], policy: DeliveryPolicy, clock: Clock
) -> None:
    """Every event of the batch to its workspace's subscribed webhooks: one run's events in order, runs
    side by side; then the records, then the events gone."""
    targets: dict[ObjectId, list[Document]] = {}
    for workspace_id in {event["workspaceId"] for event in events}:
        targets[workspace_id] = await webhooks.webhook_targets(db, workspace_id, [event["event"] for event in events])
    by_run: dict[str, list[Document]] = defaultdict(list)
    for event in events:
        by_run[event["payload"]["runId"]].append(event)
    records: list[Document] = []

    async def one_run(run_events: list[Document]) -> None:
        for event in run_events:
            payload = event["payload"]
            announced = AlertEvent(event["event"], payload["run"]["status"], payload["job"]["id"], payload)
            hooks = [hook for hook in targets[event["workspaceId"]] if event["event"] in hook.get("events", [])]
            records.extend(await asyncio.gather(*(deliver(session, hook, announced, policy, clock) for hook in hooks)))

    await asyncio.gather(*(one_run(run_events) for run_events in by_run.values()))
    await webhooks.record_deliveries(db, records)
    await webhook_events.delivered(db, [event["_id"] for event in events])


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
                events = await webhook_events.claim_batch(db, clock.now(), CLAIM_HOLD, BATCH_EVENTS)
                if events:
                    await _deliver_batch(db, session, events, policy, clock)
                    continue
            except PyMongoError as error:
                log.warning("run_event_delivery_failed", error=str(error)[:200])
            except Exception:  # e.g. a delivery that raised: the claim lapses and the batch goes again
                log.exception("run_event_delivery_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscriptions.queued.wait(), poll_seconds)
