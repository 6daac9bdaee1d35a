"""After each finished run: re-evaluate that job's alerts and announce what opened or resolved to webhooks.

The worker calls `on_run_finished` once a run's outcome is recorded. The alert rules are the monitoring
endpoint's (`shared.alerts`) over the last ALERT_WINDOW; `alert_states` decides, atomically, which
evaluation announces a change, so concurrent runs of one job never send an event twice. Each delivery is
signed (`X-Syncjobs-Signature: sha256=<hex HMAC-SHA256 of the raw body>`), retried with exponential
backoff on network errors, 429 and 5xx, and recorded in `webhook_deliveries`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from bson import ObjectId

from shared import metrics
from shared.alerts import Alert, alert_transitions, evaluate_job
from shared.clock import to_ms
from shared.logging import get_logger
from shared.mongo import Database, Document
from shared.settings import Settings
from shared.store import run_stats, webhooks

log = get_logger(__name__)

ALERT_WINDOW = timedelta(hours=24)
SIGNATURE_HEADER = "X-Syncjobs-Signature"
SLACK_HOSTS = ("hooks.slack.com",)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try one delivery: `attempts` POSTs, waiting first_backoff * factor^(n-1) after the n-th."""

    attempts: int = 5
    first_backoff_seconds: float = 1.0
    backoff_factor: float = 2.0
    timeout_seconds: float = 10.0

    def backoff(self, attempt: int) -> float:
        return self.first_backoff_seconds * self.backoff_factor ** (attempt - 1)


@dataclass(frozen=True)
class AlertEvent:
    """One announcement: `alert.opened` or `alert.resolved`, ready to serialise."""

    name: str
    kind: str
    job_id: str
    payload: dict[str, Any]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_slack(url: str) -> bool:
    return (urlsplit(url).hostname or "") in SLACK_HOSTS


def request_body(url: str, event: AlertEvent) -> bytes:
    """The bytes POSTed (and signed): the whole event, or just its `text` for a Slack incoming webhook."""
    payload = {"text": event.payload["text"]} if is_slack(url) else event.payload
    return json.dumps(payload, separators=(",", ":")).encode()


def _event(name: str, alert: dict[str, Any], job: Document, run_id: str, now: datetime) -> AlertEvent:
    verb = "opened" if name == "alert.opened" else "resolved"
    icon = ":red_circle:" if verb == "opened" else ":white_check_mark:"
    text = f"{icon} syncjobs alert {verb} on job '{job.get('name', '')}' ({alert['kind']}): {alert['message']}"
    payload = {
        "event": name,
        "workspaceId": str(job["workspaceId"]),
        "job": {"id": str(job["_id"]), "name": job.get("name")},
        "alert": alert,
        "runId": run_id,
        "occurredAt": now.isoformat(),
        "text": text,
    }
    return AlertEvent(name, alert["kind"], str(job["_id"]), payload)


async def _changes(db: Database, settings: Settings, job: Document, run_id: str, now: datetime) -> list[AlertEvent]:
    """Evaluate the job's alerts and claim each transition in `alert_states`; only claimed ones are sent."""
    job_id = str(job["_id"])
    [stats] = await run_stats.job_run_stats(db, job["workspaceId"], to_ms(now - ALERT_WINDOW), job["_id"])
    current = evaluate_job(stats, settings.alerts, now)
    transitions = alert_transitions(await webhooks.open_alert_kinds(db, job_id), current)
    events: list[AlertEvent] = []
    for alert in transitions.opened:
        if await webhooks.open_alert(db, job["workspaceId"], alert, now):
            events.append(_event("alert.opened", alert.to_json(), job, run_id, now))
    for kind in transitions.resolved:
        state = await webhooks.resolve_alert(db, job_id, kind)
        if state is not None:
            resolved = Alert(job_id, state["kind"], state["message"], state["since"]).to_json()
            events.append(_event("alert.resolved", {**resolved, "resolvedAt": now.isoformat()}, job, run_id, now))
    return events


async def deliver(
    session: aiohttp.ClientSession, hook: Document, event: AlertEvent, policy: DeliveryPolicy
) -> Document:
    """POST one event to one webhook until it answers 2xx, a permanent 4xx, or the attempts run out."""
    delivery_id = ObjectId()
    body = request_body(hook["url"], event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(hook["secret"], body),
        "X-Syncjobs-Event": event.name,
        "X-Syncjobs-Delivery": str(delivery_id),
    }
    started = to_ms(datetime.now(UTC))
    outcome, status, error, attempt = "failed", None, None, 0
    for attempt in range(1, policy.attempts + 1):
        try:
            async with session.post(
                hook["url"], data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=policy.timeout_seconds)
            ) as response:
                status, error = response.status, None
            if 200 <= status < 300:
                outcome = "delivered"
                break
            error = f"HTTP {status}"
            if status < 500 and status != 429:
                break  # the receiver refuses this event: retrying would not change its mind
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        if attempt < policy.attempts:
            await asyncio.sleep(policy.backoff(attempt))
    metrics.webhook_deliveries_total.labels(outcome=outcome).inc()
    log.info(
        "webhook_delivery",
        webhook_id=str(hook["_id"]),
        event_name=event.name,
        kind=event.kind,
        outcome=outcome,
        attempts=attempt,
        status=status,
    )
    return {
        "_id": delivery_id,
        "webhookId": hook["_id"],
        "workspaceId": hook["workspaceId"],
        "event": event.name,
        "jobId": event.job_id,
        "kind": event.kind,
        "outcome": outcome,
        "attempts": attempt,
        "responseStatus": status,
        "error": error,
        "createdAt": started,
        "finishedAt": to_ms(datetime.now(UTC)),
    }


async def _deliver_in_order(
    db: Database, session: aiohttp.ClientSession, hook: Document, events: list[AlertEvent], policy: DeliveryPolicy
) -> None:
    """One webhook's events one after the other, so a receiver sees an open before its resolve."""
    for event in events:
        if event.name in hook.get("events", ()):
            await webhooks.record_delivery(db, await deliver(session, hook, event, policy))


async def announce(db: Database, workspace_id: ObjectId, events: list[AlertEvent], policy: DeliveryPolicy) -> None:
    hooks = await webhooks.webhook_targets(db, workspace_id, [event.name for event in events])
    if not hooks:
        return
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        for hook in hooks:
            group.create_task(_deliver_in_order(db, session, hook, events, policy))


async def on_run_finished(
    db: Database,
    settings: Settings,
    job_id: ObjectId | str,
    run_id: ObjectId | str,
    *,
    policy: DeliveryPolicy | None = None,
    now: datetime | None = None,
) -> list[AlertEvent]:
    """Re-evaluate `job_id`'s alerts after run `run_id` and deliver what changed; never raises into the worker.

    Returns the events announced (delivered or not), for the caller's logs and the tests.
    """
    now = to_ms(now or datetime.now(UTC))
    try:
        job = await db.syncjobs.find_one({"_id": ObjectId(job_id)}, {"name": 1, "workspaceId": 1})
        if job is None:
            return []
        events = await _changes(db, settings, job, str(run_id), now)
        if events:
            log.info("alerts_changed", job_id=str(job_id), events=[f"{e.name}:{e.kind}" for e in events])
            await announce(db, job["workspaceId"], events, policy or DeliveryPolicy())
        return events
    except Exception:
        log.exception("notifier_failed", job_id=str(job_id), run_id=str(run_id))
        return []
