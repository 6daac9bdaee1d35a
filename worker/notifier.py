"""After each finished run, and periodically: re-evaluate alerts and announce what opened or resolved.

The worker calls `on_run_finished` once a run's outcome is recorded; the leader also runs
`sweep_alerts_forever`, which resolves open alerts that stopped holding without a run (their failures aged
out, or the job was deleted). The alert rules are the monitoring endpoint's (`shared.alerts`) over the last
ALERT_WINDOW; `alert_states` decides, atomically, which evaluation announces a change, so concurrent runs
of one job (or a run and the sweep) never send an event twice. Each delivery is signed
(`X-Syncjobs-Signature: sha256=<hex HMAC-SHA256 of the raw body>`), retried with exponential backoff on
network errors, 429 and 5xx, and recorded in `webhook_deliveries`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from bson import ObjectId
from syncjobs.shared import metrics
from syncjobs.shared.alerts import NO_LONGER_HOLDS, Alert, alert_transitions, evaluate_job, stale_alerts
from syncjobs.shared.clock import Clock, to_ms
from syncjobs.shared.egress import EgressPolicy, EgressRefused, guarded_connector
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.retry import Backoff
from syncjobs.shared.secrets import open_sealed
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import run_stats, sync_jobs, webhooks
from syncjobs.shared.store.run_stats import ALERT_WINDOW

log = get_logger(__name__)

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
        return Backoff(self.first_backoff_seconds, self.backoff_factor).seconds(attempt)


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


def _job_label(job: Document) -> str:
    name = job.get("name")
    return f"job '{name}'" if name else f"job {job['_id']}"


def _event(name: str, alert: dict[str, Any], job: Document, run_id: str | None, now: datetime) -> AlertEvent:
    if name == "alert.opened":
        text = f":red_circle: syncjobs alert opened on {_job_label(job)} ({alert['kind']}): {alert['message']}"
    else:
        text = (
            f":white_check_mark: syncjobs alert resolved on {_job_label(job)} ({alert['kind']}): "
            f"{alert['resolution']} (was: {alert['message']})"
        )
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


async def _current_alerts(db: Database, settings: Settings, job: Document, now: datetime) -> list[Alert]:
    """The job's alerts over the last ALERT_WINDOW, by the same rules as the monitoring endpoint."""
    stats = await run_stats.one_job_run_stats(db, job, to_ms(now - ALERT_WINDOW))
    return evaluate_job(stats, settings.alerts, now)


async def _resolve(
    db: Database, job: Document, kinds: list[str], reason: str, run_id: str | None, now: datetime
) -> list[AlertEvent]:
    """Claim each resolve in `alert_states` (a delete); only the evaluation that deleted it announces it."""
    job_id = str(job["_id"])
    events: list[AlertEvent] = []
    for kind in kinds:
        state = await webhooks.resolve_alert(db, job_id, kind)
        if state is not None:
            resolved = Alert(job_id, state["kind"], state["message"], state["since"]).to_json()
            alert = {**resolved, "resolvedAt": now.isoformat(), "resolution": reason}
            events.append(_event("alert.resolved", alert, job, run_id, now))
    return events


async def _changes(db: Database, settings: Settings, job: Document, run_id: str, now: datetime) -> list[AlertEvent]:
    """Evaluate the job's alerts and claim each transition in `alert_states`; only claimed ones are sent."""
    job_id = str(job["_id"])
    transitions = alert_transitions(
        await webhooks.open_alert_kinds(db, job_id), await _current_alerts(db, settings, job, now)
    )
    events: list[AlertEvent] = []
    for alert in transitions.opened:
        if await webhooks.open_alert(db, job["workspaceId"], alert, now):
            events.append(_event("alert.opened", alert.to_json(), job, run_id, now))
    if transitions.opened:  # its runs are evaluated from now on, so a run resolves what it opened
        await sync_jobs.watch_alerts(db, job["_id"], sync_jobs.WATCHED_FOR_GOOD)
    return events + await _resolve(db, job, transitions.resolved, NO_LONGER_HOLDS, run_id, now)


async def deliver(
    session: aiohttp.ClientSession, hook: Document, event: AlertEvent, policy: DeliveryPolicy, clock: Clock
) -> Document:
    """POST one event to one webhook until it answers 2xx, a permanent 4xx, or the attempts run out."""
    delivery_id = ObjectId()
    url = open_sealed(hook["url"])  # sealed when it carries credentials (shared/secret_fields.py)
    body = request_body(url, event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(open_sealed(hook["secret"]), body),
        "X-Syncjobs-Event": event.name,
        "X-Syncjobs-Delivery": str(delivery_id),
    }
    started = to_ms(clock.now())
    outcome, status, error, attempt = "failed", None, None, 0
    for attempt in range(1, policy.attempts + 1):
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=policy.timeout_seconds)
            ) as response:
                status, error = response.status, None
            if 200 <= status < 300:
                outcome = "delivered"
                break
            error = f"HTTP {status}"
            if status < 500 and status != 429:
                break  # the receiver refuses this event: retrying would not change its mind
        except EgressRefused as exc:  # the URL (or a redirect) resolves to a refused address: final
            status, error = None, str(exc)
            break
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
        "finishedAt": to_ms(clock.now()),
    }


async def _deliver_in_order(
    db: Database,
    session: aiohttp.ClientSession,
    hook: Document,
    events: list[AlertEvent],
    policy: DeliveryPolicy,
    clock: Clock,
) -> None:
    """One webhook's events one after the other, so a receiver sees an open before its resolve."""
    for event in events:
        if event.name in hook.get("events", ()):
            await webhooks.record_delivery(db, await deliver(session, hook, event, policy, clock))


async def announce(
    db: Database,
    workspace_id: ObjectId,
    events: list[AlertEvent],
    policy: DeliveryPolicy,
    egress: EgressPolicy,
    clock: Clock,
) -> None:
    """Deliver `events` to the workspace's webhooks; every address connected to passes the egress policy."""
    hooks = await webhooks.webhook_targets(db, workspace_id, [event.name for event in events])
    if not hooks:
        return
    async with aiohttp.ClientSession(connector=guarded_connector(egress)) as session, asyncio.TaskGroup() as group:
        for hook in hooks:
            group.create_task(
                _deliver_in_order(db, session, hook, events, policy, clock), name=f"webhook {hook['_id']}"
            )


def _egress(settings: Settings) -> EgressPolicy:
    return EgressPolicy.from_strings(settings.allowed_networks)


async def on_run_finished(
    db: Database,
    settings: Settings,
    job_id: ObjectId | str,
    run_id: ObjectId | str,
    *,
    clock: Clock,
    job: Document | None = None,
    policy: DeliveryPolicy | None = None,
) -> list[AlertEvent]:
    """Re-evaluate `job_id`'s alerts after run `run_id` and deliver what changed; never raises into the worker.
    `job`: its identity (`sync_jobs.job_identity`) when the caller has it, else it is read.

    Returns the events announced (delivered or not), for the caller's logs and the tests.
    """
    now = to_ms(clock.now())
    try:
        job = job or await sync_jobs.find_job_identity(db, ObjectId(job_id))
        if job is None:
            return []
        events = await _changes(db, settings, job, str(run_id), now)
        if events:
            opened = any(e.name == "alert.opened" for e in events)
            (log.warning if opened else log.info)(
                "alerts_changed", job_id=str(job_id), events=[f"{e.name}:{e.kind}" for e in events]
            )
            await announce(db, job["workspaceId"], events, policy or DeliveryPolicy(), _egress(settings), clock)
        return events
    except Exception:
        log.exception("notifier_failed", job_id=str(job_id), run_id=str(run_id))
        return []


async def _sweep_job(
    db: Database, settings: Settings, target: Document, policy: DeliveryPolicy, clock: Clock
) -> list[AlertEvent]:
    now = to_ms(clock.now())
    job_id = str(target["jobId"])
    try:
        job = await sync_jobs.find_job_identity(db, ObjectId(job_id))
        current = None if job is None else await _current_alerts(db, settings, job, now)
        stale = stale_alerts(await webhooks.open_alert_kinds(db, job_id), current)
        subject = job or {"_id": ObjectId(job_id), "workspaceId": target["workspaceId"]}
        events = await _resolve(db, subject, stale.kinds, stale.reason, None, now)
        if events:
            log.info("alerts_swept", job_id=job_id, reason=stale.reason, events=[e.kind for e in events])
            await announce(db, subject["workspaceId"], events, policy, _egress(settings), clock)
        return events
    except Exception:
        log.exception("alert_sweep_failed", job_id=job_id)
        return []


async def sweep_alerts(
    db: Database, settings: Settings, *, clock: Clock, policy: DeliveryPolicy | None = None
) -> list[AlertEvent]:
    """One pass over the jobs with open alerts: resolve and announce what stopped holding; never raises.

    Runs finishing re-evaluate a job, but a job that stops running does not: its failures age out of the
    window, or it is deleted, and nothing would ever resolve its alerts without this pass. A resolve it
    announces has `runId` null; a deleted job's says `"resolution": "job was deleted"`.
    """
    try:
        targets = await webhooks.jobs_with_open_alerts(db)
    except Exception:
        log.exception("alert_sweep_failed")
        return []
    events: list[AlertEvent] = []
    for target in targets:
        events += await _sweep_job(db, settings, target, policy or DeliveryPolicy(), clock)
    return events


async def sweep_alerts_forever(
    db: Database, settings: Settings, clock: Clock, *, policy: DeliveryPolicy | None = None
) -> None:
    """The leader's sweep: one pass at once, then one every `alert_sweep_seconds` of `clock` time, until cancelled."""
    interval = timedelta(seconds=settings.alert_sweep_seconds)
    while True:
        started = clock.now()
        await sweep_alerts(db, settings, clock=clock, policy=policy)
        await clock.sleep_until(started + interval)
