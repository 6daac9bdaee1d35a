"""Alert events reach a real HTTP receiver, signed, once per transition, with retries recorded."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from bson import ObjectId
from structlog.testing import capture_logs
from syncjobs.shared.clock import to_ms
from syncjobs.shared.models import WebhookInput
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import AlertThresholds, Settings
from syncjobs.shared.store.webhooks import create_webhook
from syncjobs.worker.notifier import DeliveryPolicy, on_run_finished

from tests.fixtures.fake_clock import FakeClock
from tests.fixtures.local_http import serving
from tests.integration.monitoring_helpers import insert_job, insert_runs

NO_WAIT = DeliveryPolicy(attempts=3, first_backoff_seconds=0, timeout_seconds=10)
SECRET = "test-secret-0123456789abcdef"


@dataclass
class Receiver:
    """An HTTP endpoint that records what it is sent and answers with the statuses queued for it."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Until `count` requests have arrived (a process under test sends them in its own time)."""
        while len(self.received) < count:
            self.arrived.clear()
            await self.arrived.wait()
        return self.events()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.received.append((dict(request.headers), await request.read()))
        state.arrived.set()
        return web.Response(status=state.answers.pop(0) if state.answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as base:
        state.url = f"{base}/hook"
        yield state


async def _watched_job(db: Database, **webhook: Any) -> Document:
    """Job `orders` in a workspace of its own, with one webhook (`webhook`: its fields, `url` at least)."""
    ws = ObjectId()
    job = await insert_job(db, ws, "orders")
    await create_webhook(db, ws, WebhookInput.model_validate(webhook), datetime.now(UTC))
    return job


async def _finish(db: Database, settings: Settings, job: Document, status: str, at: datetime) -> list[str]:
    [run_id] = await insert_runs(db, job, [status], at)
    events = await on_run_finished(
        db, settings, job["_id"], run_id, policy=NO_WAIT, clock=FakeClock(at + timedelta(seconds=5))
    )
    return [f"{event.name}:{event.kind}" for event in events]


async def test_three_failures_in_a_row_send_one_signed_alert_and_a_success_resolves_it(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    settings = settings.with_overrides(alerts=AlertThresholds(min_executions=10))  # only the streak alerts
    job = await _watched_job(db, url=receiver.url, secret=SECRET)
    start = to_ms(datetime.now(UTC) - timedelta(hours=1))

    assert await _finish(db, settings, job, "failed", start) == []
    assert await _finish(db, settings, job, "failed", start + timedelta(minutes=5)) == []
    assert receiver.received == []
    assert await _finish(db, settings, job, "failed", start + timedelta(minutes=10)) == [
        "alert.opened:consecutive_failures"
    ]
    assert await _finish(db, settings, job, "failed", start + timedelta(minutes=15)) == []  # already open

    [(headers, body)] = receiver.received
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Syncjobs-Signature"], expected)
    opened = json.loads(body)
    assert opened["event"] == "alert.opened" and headers["X-Syncjobs-Event"] == "alert.opened"
    assert opened["alert"]["kind"] == "consecutive_failures" and opened["alert"]["jobId"] == str(job["_id"])
    assert opened["alert"]["since"] == start.isoformat()
    assert opened["job"] == {"id": str(job["_id"]), "name": "orders"}
    assert "orders" in opened["text"] and "consecutive failures" in opened["text"]

    assert await _finish(db, settings, job, "succeeded", start + timedelta(minutes=20)) == [
        "alert.resolved:consecutive_failures"
    ]
    resolved_headers, resolved_body = receiver.received[1]
    assert resolved_headers["X-Syncjobs-Signature"] == (
        "sha256=" + hmac.new(SECRET.encode(), resolved_body, hashlib.sha256).hexdigest()
    )
    resolved = json.loads(resolved_body)
    assert resolved["event"] == "alert.resolved" and resolved["alert"]["kind"] == "consecutive_failures"
    assert len(receiver.received) == 2

    deliveries = await db.webhook_deliveries.find().sort("createdAt", 1).to_list()
    assert [(d["event"], d["outcome"], d["attempts"], d["responseStatus"]) for d in deliveries] == [
        ("alert.opened", "delivered", 1, 200),
        ("alert.resolved", "delivered", 1, 200),
    ]


async def test_a_failing_receiver_is_retried_and_each_outcome_recorded(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    job = await _watched_job(db, url=receiver.url)
    gone = await create_webhook(
        db, job["workspaceId"], WebhookInput.model_validate({"url": receiver.url + "/gone"}), datetime.now(UTC)
    )
    start = to_ms(datetime.now(UTC) - timedelta(hours=1))
    await insert_runs(db, job, ["failed", "failed"], start)
    receiver.answers = [503, 500]

    assert await _finish(db, settings, job, "failed", start + timedelta(minutes=30)) == [
        "alert.opened:consecutive_failures"
    ]

    deliveries = {d["webhookId"]: d async for d in db.webhook_deliveries.find()}
    assert len(deliveries) == 2
    retried = next(d for hook_id, d in deliveries.items() if hook_id != ObjectId(gone.id))
    assert (retried["outcome"], retried["attempts"], retried["responseStatus"]) == ("delivered", 3, 200)
    refused = deliveries[ObjectId(gone.id)]  # aiohttp answers 404 for the unknown path: not retried
    assert (refused["outcome"], refused["attempts"], refused["error"]) == ("failed", 1, "HTTP 404")
    assert len(receiver.received) == 3


async def test_a_webhook_receives_only_the_events_it_subscribed_to(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    job = await _watched_job(db, url=receiver.url, events=["alert.resolved"])
    start = to_ms(datetime.now(UTC) - timedelta(hours=1))
    await insert_runs(db, job, ["failed", "failed"], start)
    assert await _finish(db, settings, job, "failed", start + timedelta(minutes=30)) == [
        "alert.opened:consecutive_failures"
    ]
    assert receiver.received == []
    await _finish(db, settings, job, "succeeded", start + timedelta(minutes=35))
    assert [event["event"] for event in receiver.events()] == ["alert.resolved"]


async def test_concurrent_evaluations_of_one_job_announce_an_alert_once(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    job = await _watched_job(db, url=receiver.url)
    start = to_ms(datetime.now(UTC) - timedelta(hours=1))
    run_ids = await insert_runs(db, job, ["failed"] * 3, start)
    now = start + timedelta(minutes=30)

    results = await asyncio.gather(
        *(on_run_finished(db, settings, job["_id"], run_id, policy=NO_WAIT, clock=FakeClock(now)) for run_id in run_ids)
    )
    assert sorted(len(events) for events in results) == [0, 0, 1]
    assert [event["alert"]["kind"] for event in receiver.events()] == ["consecutive_failures"]


async def test_an_opened_alert_is_logged_at_warning_a_resolved_one_at_info(db: Database, settings: Settings) -> None:
    settings = settings.with_overrides(alerts=AlertThresholds(min_executions=10))  # only the streak alerts
    job = await insert_job(db, ObjectId(), "orders")
    start = to_ms(datetime.now(UTC) - timedelta(hours=1))
    with capture_logs() as logged:
        for minutes, status in ((0, "failed"), (5, "failed"), (10, "failed"), (15, "succeeded")):
            await _finish(db, settings, job, status, start + timedelta(minutes=minutes))
    changes = [(e["log_level"], e["events"]) for e in logged if e["event"] == "alerts_changed"]
    assert changes == [
        ("warning", ["alert.opened:consecutive_failures"]),
        ("info", ["alert.resolved:consecutive_failures"]),
    ]
