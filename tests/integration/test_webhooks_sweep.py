"""The leader's periodic sweep resolves alerts that stopped holding without a run, and announces it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.shared.alerts import Alert
from syncjobs.shared.clock import to_ms
from syncjobs.shared.models import WebhookInput
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import AlertThresholds, Settings
from syncjobs.shared.store.webhooks import create_webhook, open_alert
from syncjobs.worker import notifier
from syncjobs.worker.main import run_worker

from tests.fixtures.eventually import eventually
from tests.fixtures.fake_clock import FakeClock
from tests.integration.monitoring_helpers import insert_job, insert_runs
from tests.integration.test_webhooks_delivery import NO_WAIT, Receiver, receiver

__all__ = ["receiver"]  # the fixture, shared with the delivery tests
STREAK = timedelta(seconds=10)


async def _failing_job(db: Database, settings: Settings, ws: ObjectId, name: str, at: datetime) -> Document:
    """A job whose three failures at `at` opened its consecutive_failures alert (announced then)."""
    job = await insert_job(db, ws, name)
    run_ids = await insert_runs(db, job, ["failed"] * 3, at, step=timedelta(seconds=5))
    events = await notifier.on_run_finished(
        db, settings, job["_id"], run_ids[-1], policy=NO_WAIT, clock=FakeClock(at + STREAK)
    )
    assert [event.name for event in events] == ["alert.opened"]
    return job


async def _open_kinds(db: Database) -> list[tuple[str, str]]:
    return sorted([(doc["jobId"], doc["kind"]) async for doc in db.alert_states.find()])


async def _sleeping_until(clock: FakeClock, instant: datetime) -> bool:
    return clock.sleeping_until == [instant]


async def test_the_sweep_resolves_aged_out_and_deleted_jobs_alerts_once_and_keeps_the_rest(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    settings = settings.with_overrides(alerts=AlertThresholds(min_executions=10), alert_sweep_seconds=60)
    ws = ObjectId()
    await create_webhook(db, ws, WebhookInput.model_validate({"url": receiver.url}), datetime.now(UTC))
    t0 = to_ms(datetime.now(UTC))
    # Failed a day ago, just inside the window at t0; out of it two minutes later. Nothing runs since.
    ageing = await _failing_job(db, settings, ws, "ageing", t0 - timedelta(hours=24) + timedelta(minutes=1))
    recent = await _failing_job(db, settings, ws, "recent", t0 - timedelta(hours=1))
    deleted = await _failing_job(db, settings, ws, "deleted", t0 - timedelta(hours=1))
    await db.syncjobs.delete_one({"_id": deleted["_id"]})
    receiver.received.clear()

    clock = FakeClock(t0)
    sweeping = asyncio.create_task(notifier.sweep_alerts_forever(db, settings, clock, policy=NO_WAIT))
    try:
        # The first pass runs at once: only the deleted job's alert no longer has a job to hold for.
        assert await eventually(lambda: _sleeping_until(clock, t0 + timedelta(seconds=60)))
        [gone] = receiver.events()
        assert gone["event"] == "alert.resolved" and gone["runId"] is None
        assert gone["job"] == {"id": str(deleted["_id"]), "name": None}
        assert gone["alert"]["kind"] == "consecutive_failures"
        assert gone["alert"]["resolution"] == "job was deleted"
        assert gone["alert"]["resolvedAt"] == t0.isoformat()
        assert "job was deleted" in gone["text"]
        assert await _open_kinds(db) == sorted(
            [(str(ageing["_id"]), "consecutive_failures"), (str(recent["_id"]), "consecutive_failures")]
        )

        # Two minutes on, the ageing job's failures have left the 24 h window: its alert resolves.
        clock.set(t0 + timedelta(minutes=2))
        assert await eventually(lambda: _sleeping_until(clock, t0 + timedelta(minutes=3)))
        assert len(receiver.received) == 2
        aged = receiver.events()[1]
        assert (aged["event"], aged["job"]["name"], aged["alert"]["kind"]) == (
            "alert.resolved",
            "ageing",
            "consecutive_failures",
        )
        assert aged["alert"]["resolution"] == "no longer holds"
        assert await _open_kinds(db) == [(str(recent["_id"]), "consecutive_failures")]

        # A pass with nothing stale announces nothing.
        clock.set(t0 + timedelta(minutes=3))
        assert await eventually(lambda: _sleeping_until(clock, t0 + timedelta(minutes=4)))
        assert len(receiver.received) == 2
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)

    deliveries = await db.webhook_deliveries.find({"event": "alert.resolved"}).to_list()
    assert sorted((d["jobId"], d["outcome"]) for d in deliveries) == sorted(
        [(str(deleted["_id"]), "delivered"), (str(ageing["_id"]), "delivered")]
    )


async def test_a_second_sweep_at_the_same_time_announces_nothing_again(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    ws = ObjectId()
    await create_webhook(db, ws, WebhookInput.model_validate({"url": receiver.url}), datetime.now(UTC))
    now = to_ms(datetime.now(UTC))
    job_id = str(ObjectId())  # a job deleted after its alert opened
    await open_alert(db, ws, Alert(job_id, "missed_runs", "1 fire not run", now - timedelta(hours=2)), now)

    first, second = await asyncio.gather(
        notifier.sweep_alerts(db, settings, policy=NO_WAIT, clock=FakeClock(now)),
        notifier.sweep_alerts(db, settings, policy=NO_WAIT, clock=FakeClock(now)),
    )
    assert sorted(len(events) for events in (first, second)) == [0, 1]
    assert [event["alert"]["kind"] for event in receiver.events()] == ["missed_runs"]


async def test_the_leading_worker_sweeps_on_its_clock(db: Database, settings: Settings, receiver: Receiver) -> None:
    ws = ObjectId()
    await create_webhook(db, ws, WebhookInput.model_validate({"url": receiver.url}), datetime.now(UTC))
    now = to_ms(datetime.now(UTC))
    job_id = str(ObjectId())  # a job deleted after its alert opened
    await open_alert(db, ws, Alert(job_id, "missed_runs", "1 fire not run", now - timedelta(hours=2)), now)
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(settings.with_overrides(worker_id="sweeper"), clock=FakeClock(now), stop=stop)
    )
    try:
        [event] = await asyncio.wait_for(receiver.wait_for(1), timeout=60)
    finally:
        stop.set()
        await worker
    assert (event["event"], event["job"]["id"], event["alert"]["resolution"]) == (
        "alert.resolved",
        job_id,
        "job was deleted",
    )
    assert await db.alert_states.count_documents({}) == 0
