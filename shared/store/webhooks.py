"""`webhooks`, `webhook_deliveries` and `alert_states`: where alert events go, how each went, what is open.

A webhook's secret is write-only: stored (it must be, to sign), returned once by the create, never listed.
`alert_states` holds one document per open (job, kind) alert; opening is an insert and resolving a delete, so
when two finished runs re-evaluate the same job at once the database lets exactly one of them announce it.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.alerts import ALERT_KINDS, Alert
from syncjobs.shared.clock import to_ms
from syncjobs.shared.errors import NotFound
from syncjobs.shared.models import CreatedWebhook, Webhook, WebhookDelivery, WebhookInput, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.paging import PageRequest, keyset_page
from syncjobs.shared.secret_fields import REDACTED, carries_secrets
from syncjobs.shared.secrets import seal
from syncjobs.shared.store.versioned import refuse, version_filter

LIST_LIMIT = 100


async def create_webhook(db: Database, workspace_id: ObjectId, body: WebhookInput, now: datetime) -> CreatedWebhook:
    secret = body.secret or secrets.token_hex(32)
    url = str(body.url)
    doc = {
        "_id": ObjectId(),
        "workspaceId": workspace_id,
        "url": seal(url) if carries_secrets(url) else url,
        "events": list(body.events),
        "secret": seal(secret),
        "version": 1,
        "createdAt": to_ms(now),
    }
    await db.webhooks.insert_one(doc)
    return from_document(CreatedWebhook, {**doc, "url": redact_url(url), "secret": secret})


async def list_webhooks(db: Database, workspace_id: ObjectId, page: PageRequest) -> tuple[list[Webhook], str | None]:
    """Oldest first, by id (time-ordered), on (workspaceId, _id)."""
    found = await keyset_page(db, "webhooks", {"workspaceId": workspace_id}, "_id", page, {"secret": 0})
    return [from_document(Webhook, {**doc, "url": redact_url(doc["url"])}) for doc in found.docs], found.next


def redact_url(url: str) -> str:
    """A URL with user-info or a query is a secret: shown as the marker, like every other secret."""
    return REDACTED if carries_secrets(url) else url


async def delete_webhook(
    db: Database, workspace_id: ObjectId, webhook_id: ObjectId, expected_version: int | None = None
) -> None:
    scope = {"_id": webhook_id, "workspaceId": workspace_id}
    result = await db.webhooks.delete_one({**scope, **version_filter(expected_version)})
    if result.deleted_count == 0:
        await refuse(db, "webhooks", scope, "webhook", expected_version)


async def webhook_targets(db: Database, workspace_id: ObjectId, events: list[str]) -> list[Document]:
    """The workspace's webhooks subscribed to any of `events`, secrets included (sealed: the signer opens
    them): for signing, never output."""
    return await db.webhooks.find({"workspaceId": workspace_id, "events": {"$in": events}}).to_list(LIST_LIMIT)


async def workspaces_subscribed_to(db: Database, events: list[str]) -> set[ObjectId]:
    """The workspaces with a webhook subscribed to any of `events`: what the run path's cache holds."""
    return {ObjectId(ws) for ws in await db.webhooks.distinct("workspaceId", {"events": {"$in": events}})}


async def record_delivery(db: Database, delivery: Document) -> None:
    await db.webhook_deliveries.insert_one(delivery)


async def record_deliveries(db: Database, deliveries: list[Document]) -> None:
    """A batch's delivery records in one write (the run event drain's)."""
    if deliveries:
        await db.webhook_deliveries.insert_many(deliveries)


async def list_deliveries(
    db: Database, workspace_id: ObjectId, webhook_id: ObjectId, page: PageRequest
) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first, by id (made as the delivery starts), on (webhookId, _id)."""
    if not await db.webhooks.count_documents({"_id": webhook_id, "workspaceId": workspace_id}, limit=1):
        raise NotFound("webhook not found")
    found = await keyset_page(db, "webhook_deliveries", {"webhookId": webhook_id}, "_id", page, descending=True)
    return [from_document(WebhookDelivery, doc) for doc in found.docs], found.next


def _state_id(job_id: str, kind: str) -> str:
    return f"{job_id}:{kind}"


async def open_alert_kinds(db: Database, job_id: str) -> set[str]:
    ids = [_state_id(job_id, kind) for kind in ALERT_KINDS]
    return {doc["kind"] async for doc in db.alert_states.find({"_id": {"$in": ids}}, {"kind": 1})}


async def open_alert(db: Database, workspace_id: ObjectId, alert: Alert, now: datetime) -> bool:
    """Record the alert as open; False if it already was (another evaluation got there first)."""
    doc: dict[str, Any] = {
        "_id": _state_id(alert.job_id, alert.kind),
        "workspaceId": workspace_id,
        "jobId": alert.job_id,
        "kind": alert.kind,
        "since": alert.since,
        "message": alert.message,
        "openedAt": to_ms(now),
    }
    try:
        await db.alert_states.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def resolve_alert(db: Database, job_id: str, kind: str) -> Document | None:
    """Remove the open alert and return it; None if it was not open (or someone else resolved it)."""
    return await db.alert_states.find_one_and_delete({"_id": _state_id(job_id, kind)})


async def count_open_alerts_by_kind(db: Database) -> dict[str, int]:
    """Open alerts per kind across all workspaces, for the api's `/metrics`."""
    cursor = await db.alert_states.aggregate([{"$group": {"_id": "$kind", "count": {"$sum": 1}}}])
    return {str(doc["_id"]): int(doc["count"]) for doc in await cursor.to_list()}


async def jobs_with_open_alerts(db: Database) -> list[Document]:
    """`{jobId, workspaceId}` once per job with an open alert: what the worker's periodic sweep re-evaluates."""
    cursor = await db.alert_states.aggregate(
        [
            {"$group": {"_id": "$jobId", "workspaceId": {"$first": "$workspaceId"}}},
            {"$sort": {"_id": 1}},
        ]
    )
    return [{"jobId": doc["_id"], "workspaceId": doc["workspaceId"]} for doc in await cursor.to_list()]
