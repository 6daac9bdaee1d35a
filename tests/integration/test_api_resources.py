"""Workspaces, data sources and destinations: CRUD, list envelopes, and write-only secrets."""

from __future__ import annotations

import asyncio
import json

from bson import ObjectId
from syncjobs.shared.models import REDACTED
from syncjobs.shared.mongo import Database
from syncjobs.shared.secrets import open_sealed

from tests.integration.test_api_helpers import (
    DEST_URI,
    SOURCE_URI,
    Api,
    Tenant,
    create,
    destination_body,
    make_job,
    snapshot,
    source_body,
)

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_create_and_get_workspace(api: Api) -> None:
    status, created = await api.call("POST", "/api/workspaces", json={"name": "initech"})
    assert status == 201
    assert ObjectId.is_valid(created["id"])
    assert created["name"] == "initech"
    assert created["createdAt"].endswith("Z")
    assert await api.call("GET", f"/api/workspaces/{created['id']}") == (200, created)


async def test_data_source_crud(tenant: Tenant, db: Database) -> None:
    created = await create(tenant.api, tenant.path("/data-sources"), source_body())
    assert created["name"] == "orders-db"
    assert created["kind"] == "mongodb"
    assert created["workspaceId"] == tenant.id
    assert created["config"] == {"uri": REDACTED, "database": "shop"}
    item = tenant.path(f"/data-sources/{created['id']}")
    assert await tenant.api.call("GET", item) == (200, created)
    assert await tenant.api.call("GET", tenant.path("/data-sources")) == (200, {"items": [created], "next": None})

    replaced_body = source_body("orders-db-2", config={"uri": "mongodb://other/", "database": "shop2"})
    status, replaced = await tenant.api.call("PUT", item, json=replaced_body)
    assert status == 200
    assert (replaced["name"], replaced["config"]["database"]) == ("orders-db-2", "shop2")
    stored = await db.data_sources.find_one({"_id": ObjectId(created["id"])})
    assert stored is not None
    assert open_sealed(stored["config"]["uri"]) == "mongodb://other/" != stored["config"]["uri"]

    assert await tenant.api.call("DELETE", item) == (204, None)
    assert (await tenant.api.call("GET", item))[0] == 404
    assert await db.data_sources.count_documents({}) == 0


async def test_destination_crud(tenant: Tenant, db: Database) -> None:
    created = await create(tenant.api, tenant.path("/destinations"), destination_body())
    assert created["kind"] == "mongodb"
    assert created["config"] == {"uri": REDACTED, "database": "dw"}
    item = tenant.path(f"/destinations/{created['id']}")
    assert await tenant.api.call("GET", item) == (200, created)
    assert await tenant.api.call("GET", tenant.path("/destinations")) == (200, {"items": [created], "next": None})
    status, replaced = await tenant.api.call("PUT", item, json=destination_body("dw2"))
    assert (status, replaced["name"]) == (200, "dw2")
    assert await tenant.api.call("DELETE", item) == (204, None)
    assert await db.destinations.count_documents({}) == 0


async def test_kinds_of_data_source(api: Api, tenant: Tenant) -> None:
    http = await create(
        tenant.api,
        tenant.path("/data-sources"),
        {
            "name": "crm",
            "kind": "http",
            "config": {
                "baseUrl": "https://crm.example/api",
                "headers": {"Authorization": "Bearer crm-secret"},
                "apiKey": "k-123",
                "entities": {"contacts": {"path": "/contacts", "cursorField": "updatedAt"}},
            },
        },
    )
    assert http["config"]["headers"] == {"Authorization": REDACTED}
    assert http["config"]["apiKey"] == REDACTED
    assert http["config"]["entities"] == {"contacts": {"path": "/contacts", "cursorField": "updatedAt"}}
    assert http["config"]["baseUrl"] == "https://crm.example/api"
    command = await create(  # a raw argv: only an admin token may save one (tests/integration/test_security_*)
        api,
        tenant.path("/data-sources"),
        {
            "name": "tap",
            "kind": "command",
            "config": {"command": ["tap-csv", "--config", "c.json"], "config": {"password": "pw-1", "path": "/x"}},
        },
    )
    assert command["config"] == {
        "command": ["tap-csv", "--config", "c.json"],
        "config": {"password": REDACTED, "path": REDACTED},  # a tap's config is secret by default (issue 21)
    }
    status, listed = await tenant.api.call("GET", tenant.path("/data-sources"))
    assert status == 200
    text = json.dumps(listed)
    assert not [secret for secret in ("crm-secret", "k-123", "pw-1") if secret in text]


async def test_secrets_never_come_back_and_survive_a_get_edit_put(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    for path, resource, secret in [
        ("/data-sources", setup.source, SOURCE_URI),
        ("/destinations", setup.destination, DEST_URI),
    ]:
        item = tenant.path(f"{path}/{resource['id']}")
        for answer in [await tenant.api.call("GET", item), await tenant.api.call("GET", tenant.path(path))]:
            assert answer[0] == 200
            assert secret not in json.dumps(answer[1])
        # Send back what GET showed, with a new name: the stored secret must be kept, not the marker.
        _, shown = await tenant.api.call("GET", item)
        edit = {"name": shown["name"] + "-renamed", "kind": shown["kind"], "config": shown["config"]}
        status, replaced = await tenant.api.call("PUT", item, json=edit)
        assert status == 200
        assert replaced["config"]["uri"] == REDACTED
        collection = "data_sources" if path == "/data-sources" else "destinations"
        stored = await db[collection].find_one({"_id": ObjectId(resource["id"])})
        assert stored is not None
        assert stored["config"]["uri"] != secret and open_sealed(stored["config"]["uri"]) == secret
        assert stored["name"].endswith("-renamed")
    _, job = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}"))
    assert SOURCE_URI not in json.dumps(job)


async def test_a_source_or_destination_in_use_cannot_be_deleted(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    before = await snapshot(db)
    for path in (f"/data-sources/{setup.source['id']}", f"/destinations/{setup.destination['id']}"):
        status, body = await tenant.api.call("DELETE", tenant.path(path))
        assert status == 409
        assert body["error"]["code"] == "conflict"
    assert await snapshot(db) == before
    assert (await tenant.api.call("DELETE", tenant.path(f"/sync-jobs/{setup.job['id']}")))[0] == 204
    assert (await tenant.api.call("DELETE", tenant.path(f"/data-sources/{setup.source['id']}")))[0] == 204


async def test_concurrent_creates_of_one_name_make_exactly_one(tenant: Tenant, db: Database) -> None:
    answers = await asyncio.gather(
        *[tenant.api.call("POST", tenant.path("/destinations"), json=destination_body("same")) for _ in range(5)]
    )
    assert sorted(status for status, _ in answers) == [201, 409, 409, 409, 409]
    assert await db.destinations.count_documents({"name": "same"}) == 1
