"""Tokens over REST: shown once, listed without the value, revoked or expired at once on every replica,
and a `read` token only reads."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from syncjobs.api.app import create_app
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings

from tests.fixtures.fake_clock import FakeClock
from tests.integration.test_api_helpers import START, Api, Tenant, create, source_body

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_a_created_token_is_shown_once_and_listed_without_its_value(tenant: Tenant, db: Database) -> None:
    expires = (START + timedelta(days=30)).isoformat()
    created = await create(tenant.api, tenant.path("/tokens"), {"name": "ci", "expiresAt": expires})
    assert created["token"].startswith("sjt_") and created["scope"] == "full"
    assert created["workspaceId"] == tenant.id and created["expiresAt"].startswith("2026-02-14T12:00:00")
    status, listed = await tenant.api.call("GET", tenant.path("/tokens"))
    assert status == 200
    assert created["token"] not in json.dumps(listed)
    (entry,) = [item for item in listed["items"] if item["id"] == created["id"]]
    assert {k: v for k, v in created.items() if k != "token"} == entry
    assert created["token"] not in json.dumps(await db.api_tokens.find().to_list(), default=str)
    # the new token works, and its use is recorded
    assert (await tenant.api.as_token(created["token"]).call("GET", tenant.path("/data-sources")))[0] == 200
    _, listed = await tenant.api.call("GET", tenant.path("/tokens"))
    (entry,) = [item for item in listed["items"] if item["id"] == created["id"]]
    assert entry["lastUsedAt"] is not None


async def test_a_revoked_token_is_refused_at_once_by_every_replica(
    aiohttp_client: Any, api_settings: Settings, clock: FakeClock, tenant: Tenant
) -> None:
    other_replica = Api(await aiohttp_client(create_app(api_settings, clock=clock)))
    created = await create(tenant.api, tenant.path("/tokens"), {"name": "temp"})
    for replica in (tenant.api, other_replica):
        assert (await replica.as_token(created["token"]).call("GET", tenant.path()))[0] == 200
    assert await tenant.api.call("DELETE", tenant.path(f"/tokens/{created['id']}")) == (204, None)
    for replica in (tenant.api, other_replica):
        status, body = await replica.as_token(created["token"]).call("GET", tenant.path())
        assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await tenant.api.call("DELETE", tenant.path(f"/tokens/{created['id']}")))[0] == 404


async def test_an_expired_token_is_refused(tenant: Tenant, clock: FakeClock) -> None:
    expires = (START + timedelta(hours=1)).isoformat()
    created = await create(tenant.api, tenant.path("/tokens"), {"name": "short", "expiresAt": expires})
    short = tenant.api.as_token(created["token"])
    assert (await short.call("GET", tenant.path()))[0] == 200
    clock.advance(timedelta(hours=1))
    assert (await short.call("GET", tenant.path()))[0] == 401
    past = {"name": "late", "expiresAt": START.isoformat()}
    status, body = await tenant.api.call("POST", tenant.path("/tokens"), json=past)
    assert status == 422 and body["error"]["details"][0]["field"] == "expiresAt"


async def test_a_read_token_only_reads(tenant: Tenant, db: Database) -> None:
    created = await create(tenant.api, tenant.path("/tokens"), {"name": "viewer", "scope": "read"})
    reader = tenant.api.as_token(created["token"])
    assert (await reader.call("GET", tenant.path("/data-sources")))[0] == 200
    count = await db.data_sources.count_documents({})
    status, body = await reader.call("POST", tenant.path("/data-sources"), json=source_body())
    assert status == 403 and "read scope" in body["error"]["message"]
    assert (await reader.call("POST", tenant.path("/tokens"), json={"name": "escalate"}))[0] == 403
    assert await db.data_sources.count_documents({}) == count


async def test_tokens_of_another_workspace_are_out_of_reach(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = await create(other_tenant.api, other_tenant.path("/tokens"), {"name": "theirs"})
    assert (await tenant.api.call("GET", other_tenant.path("/tokens")))[0] == 404
    assert (await tenant.api.call("POST", other_tenant.path("/tokens"), json={"name": "mine"}))[0] == 404
    assert (await tenant.api.call("DELETE", other_tenant.path(f"/tokens/{theirs['id']}")))[0] == 404
    assert (await tenant.api.call("DELETE", tenant.path(f"/tokens/{theirs['id']}")))[0] == 404
    assert (await other_tenant.api.as_token(theirs["token"]).call("GET", other_tenant.path()))[0] == 200


async def test_only_an_admin_lists_workspaces(api: Api, tenant: Tenant, other_tenant: Tenant) -> None:
    status, body = await api.call("GET", "/api/workspaces")
    assert status == 200
    assert {tenant.id, other_tenant.id} <= {item["id"] for item in body["items"]}
    assert (await tenant.api.call("GET", "/api/workspaces"))[0] == 403
