"""`/webhooks` over HTTP: the secret is shown once, never listed; workspaces stay apart."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.secrets import open_sealed
from syncjobs.shared.store.webhooks import record_delivery

from tests.integration.test_api_helpers import (
    START,
    Tenant,
)

pytest_plugins = ["tests.integration.test_api_helpers"]

HOOK_URL = "https://hooks.example.com/syncjobs"


async def test_create_returns_a_generated_secret_once_and_lists_never_show_it(tenant: Tenant, db: Database) -> None:
    status, created = await tenant.api.call("POST", tenant.path("/webhooks"), json={"url": HOOK_URL})
    assert status == 201, created
    assert re.fullmatch(r"[0-9a-f]{64}", created["secret"])
    assert created["events"] == ["alert.opened", "alert.resolved"] and created["url"] == HOOK_URL
    assert created["workspaceId"] == tenant.id and "_id" not in created

    status, listed = await tenant.api.call("GET", tenant.path("/webhooks"))
    assert status == 200
    assert listed["items"] == [{k: v for k, v in created.items() if k != "secret"}]
    stored = await db.webhooks.find_one({})
    assert stored is not None and open_sealed(stored["secret"]) == created["secret"] != stored["secret"]


async def test_a_given_secret_and_event_list_are_kept(tenant: Tenant) -> None:
    status, created = await tenant.api.call(
        "POST",
        tenant.path("/webhooks"),
        json={"url": HOOK_URL, "events": ["alert.opened"], "secret": "my-own-secret-of-enough-length"},
    )
    assert status == 201
    assert created["secret"] == "my-own-secret-of-enough-length" and created["events"] == ["alert.opened"]


async def test_invalid_webhooks_are_422_naming_the_field(tenant: Tenant) -> None:
    cases = [
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": HOOK_URL, "events": ["run.finished"]}, "events.0"),
        ({"url": HOOK_URL, "events": []}, "events"),
        ({"url": HOOK_URL, "secret": "short"}, "secret"),
        ({"url": HOOK_URL, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        status, answer = await tenant.api.call("POST", tenant.path("/webhooks"), json=body)
        assert status == 422, (body, answer)
        assert answer["error"]["details"][0]["field"] == field, answer


async def test_delete_and_isolation(tenant: Tenant, other_tenant: Tenant) -> None:
    _, created = await tenant.api.call("POST", tenant.path("/webhooks"), json={"url": HOOK_URL})
    item = tenant.path(f"/webhooks/{created['id']}")
    assert (await other_tenant.api.call("GET", tenant.path("/webhooks")))[0] == 404
    assert (await other_tenant.api.call("DELETE", item))[0] == 404
    assert (await other_tenant.api.call("DELETE", other_tenant.path(f"/webhooks/{created['id']}")))[0] == 404
    assert (await tenant.api.call("GET", item + "/deliveries")) == (200, {"items": [], "next": None})

    assert (await tenant.api.call("DELETE", item))[0] == 204
    assert (await tenant.api.call("DELETE", item))[0] == 404
    assert (await tenant.api.call("GET", tenant.path("/webhooks"))) == (200, {"items": [], "next": None})


async def test_deliveries_are_listed_newest_first(tenant: Tenant, db: Database) -> None:
    _, created = await tenant.api.call("POST", tenant.path("/webhooks"), json={"url": HOOK_URL})
    hook_id = ObjectId(created["id"])
    for minute, outcome, attempts, http_status in ((1, "failed", 5, 503), (2, "delivered", 1, 200)):
        at = START + timedelta(minutes=minute)
        await record_delivery(
            db,
            {
                "_id": ObjectId(),
                "webhookId": hook_id,
                "workspaceId": ObjectId(tenant.id),
                "event": "alert.opened",
                "jobId": "j1",
                "kind": "consecutive_failures",
                "outcome": outcome,
                "attempts": attempts,
                "responseStatus": http_status,
                "error": None if http_status == 200 else f"HTTP {http_status}",
                "createdAt": at,
                "finishedAt": at,
            },
        )
    status, body = await tenant.api.call("GET", tenant.path(f"/webhooks/{created['id']}/deliveries"))
    assert status == 200
    assert [(d["outcome"], d["attempts"], d["responseStatus"], d["webhookId"]) for d in body["items"]] == [
        ("delivered", 1, 200, created["id"]),
        ("failed", 5, 503, created["id"]),
    ]
    assert "secret" not in json.dumps(body) and created["secret"] not in json.dumps(body)


async def test_run_events_may_be_subscribed_beside_alert_events_and_an_unknown_one_is_refused(
    tenant: Tenant, db: Database
) -> None:
    events = ["alert.opened", "run.started", "run.succeeded", "run.failed", "run.cancelled", "run.missed"]
    status, created = await tenant.api.call("POST", tenant.path("/webhooks"), json={"url": HOOK_URL, "events": events})
    assert (status, created["events"]) == (201, events), created
    status, answer = await tenant.api.call(
        "POST", tenant.path("/webhooks"), json={"url": HOOK_URL, "events": ["run.started", "run.exploded"]}
    )
    assert status == 422 and answer["error"]["details"][0]["field"] == "events.1", answer
    assert await db.webhooks.count_documents({}) == 1  # the refused one wrote nothing
