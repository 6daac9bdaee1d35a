"""The attacks of issue 8 through the REST API with a workspace token, under the production policy (no
extra networks, no other database on the control server): each is a clear 4xx and writes nothing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings

from tests.fixtures.security import LOOPBACK, production_policy
from tests.integration.test_api_helpers import ADMIN_TOKEN, Api, Tenant, create, snapshot

pytest_plugins = ["tests.integration.test_api_helpers"]

INTERNAL_URLS = [
    "http://127.0.0.1:8080/api",
    "http://localhost/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://0.0.0.0/",
]


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return production_policy(settings).with_overrides(admin_token=ADMIN_TOKEN)


async def refused(
    tenant: Tenant, db: Database, path: str, body: Any, status: int, field: str, method: str = "POST"
) -> dict[str, Any]:
    """The call is answered `status` naming `field`, and the database is exactly as it was."""
    before = await snapshot(db)
    answer_status, answer = await tenant.api.call(method, tenant.path(path), json=body)
    assert answer_status == status, answer
    assert field in [detail.get("field") for detail in answer["error"]["details"]], answer
    assert await snapshot(db) == before
    return answer["error"]


async def test_a_workspace_token_cannot_give_a_command_source_a_raw_argv(tenant: Tenant, db: Database) -> None:
    body = {"name": "pwn", "kind": "command", "config": {"command": ["sh", "-c", "id > /tmp/x"]}}
    error = await refused(tenant, db, "/data-sources", body, 403, "config.command")
    assert "admin" in error["message"]


async def test_a_command_source_names_an_installed_tap_or_is_422(tenant: Tenant, db: Database) -> None:
    body = {"name": "gh", "kind": "command", "config": {"tap": "tap-github", "config": {}}}
    error = await refused(tenant, db, "/data-sources", body, 422, "config.tap")
    assert "tap-github" in error["message"] and "singer-test" in error["message"]
    created = await create(tenant.api, tenant.path("/data-sources"), {**body, "config": {"tap": "singer-test"}})
    assert created["config"] == {"tap": "singer-test"}


async def test_a_raw_argv_replaced_by_a_workspace_token_is_refused(api: Api, tenant: Tenant, db: Database) -> None:
    raw = {"name": "raw", "kind": "command", "config": {"command": ["tap-x"]}}
    status, made = await api.call("POST", tenant.path("/data-sources"), json=raw)
    assert status == 201, made
    assert (await db.data_sources.find_one({}) or {}).get("rawCommandByAdmin") is True
    await refused(tenant, db, f"/data-sources/{made['id']}", raw, 403, "config.command", method="PUT")


@pytest.mark.parametrize("path", ["/data-sources", "/destinations"])
async def test_the_control_server_is_out_of_reach(tenant: Tenant, db: Database, mongo_uri: str, path: str) -> None:
    for database in (db.name, "syncjobs", "admin", "anything"):
        body = {"name": "x", "kind": "mongodb", "config": {"uri": mongo_uri, "database": database}}
        error = await refused(tenant, db, path, body, 422, "config.uri")
        assert "127.0.0.1" in error["message"]


@pytest.mark.parametrize("url", INTERNAL_URLS)
async def test_http_sources_may_not_name_internal_hosts(tenant: Tenant, db: Database, url: str) -> None:
    body = {"name": "h", "kind": "http", "config": {"baseUrl": url, "entities": {"a": {"path": "/a"}}}}
    error = await refused(tenant, db, "/data-sources", body, 422, "config.baseUrl")
    assert "egress policy" in error["message"]


@pytest.mark.parametrize("url", INTERNAL_URLS)
async def test_webhooks_may_not_name_internal_hosts(tenant: Tenant, db: Database, url: str) -> None:
    error = await refused(tenant, db, "/webhooks", {"url": url}, 422, "url")
    assert "egress policy" in error["message"]


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x\r\nX-Injected: 1", "https://hooks.example.com/\nHost: evil", "http://a\tb/"]
)
async def test_header_injection_in_webhook_urls_is_422(tenant: Tenant, db: Database, url: str) -> None:
    await refused(tenant, db, "/webhooks", {"url": url}, 422, "url")


async def test_header_injection_in_http_source_headers_is_422(tenant: Tenant, db: Database) -> None:
    config = {
        "baseUrl": "https://crm.example/api",
        "headers": {"X-Api-Key": "k\r\nX-Injected: 1"},
        "entities": {"a": {"path": "/a"}},
    }
    await refused(
        tenant, db, "/data-sources", {"name": "h", "kind": "http", "config": config}, 422, "config.headers.X-Api-Key"
    )


async def test_nosql_operators_as_ids_names_and_tokens_are_refused(tenant: Tenant, db: Database) -> None:
    operator = {"$gt": ""}
    before = await snapshot(db)
    for body, field in [
        ({"name": operator, "kind": "mongodb", "config": {"uri": "mongodb://h.example/", "database": "d"}}, "name"),
        ({"name": "s", "kind": "mongodb", "config": {"uri": operator, "database": "d"}}, "config.uri"),
    ]:
        status, answer = await tenant.api.call("POST", tenant.path("/data-sources"), json=body)
        assert status == 422 and field in json.dumps(answer), answer
    job = {"name": "j", "dataSourceId": operator, "destinationDatabaseId": operator, "schedule": {"cron": "* * * * *"}}
    status, answer = await tenant.api.call("POST", tenant.path("/sync-jobs"), json=job)
    assert status == 422 and "dataSourceId" in json.dumps(answer), answer
    for path in ['/data-sources/{"$gt":""}', "/data-sources/%7B%22%24gt%22%3A%22%22%7D", "/sync-jobs/$gt"]:
        assert (await tenant.api.call("GET", tenant.path(path)))[0] == 404
    assert (await tenant.api.call("GET", '/api/workspaces/{"$ne":null}'))[0] == 404
    assert (await tenant.api.call("GET", tenant.path("/data-sources"), token='{"$gt": ""}'))[0] == 401
    assert await snapshot(db) == before


async def test_oversized_and_deeply_nested_bodies_are_4xx(tenant: Tenant, db: Database) -> None:
    before = await snapshot(db)
    big = {
        "name": "big",
        "kind": "mongodb",
        "config": {"uri": "mongodb://h.example/", "database": "d", "x": "y" * 2_000_000},
    }
    oversized = io.BytesIO(json.dumps(big).encode())
    assert (await tenant.api.call("POST", tenant.path("/data-sources"), data=oversized))[0] == 413
    for depth in (40, 100_000):
        nested = "[" * depth + "]" * depth
        body = '{"name": "deep", "kind": "mongodb", "config": {"uri": "mongodb://h.example/", "database": "d", "x": '
        status, answer = await tenant.api.call("POST", tenant.path("/data-sources"), data=body + nested + "}}")
        assert status == 400 and "nests deeper" in answer["error"]["message"], answer
    assert await snapshot(db) == before


@pytest.fixture
def loopback_settings(settings: Settings) -> Settings:
    return production_policy(settings).with_overrides(admin_token=ADMIN_TOKEN, allowed_networks=LOOPBACK)


async def test_with_loopback_allowed_the_control_server_is_still_refused(
    aiohttp_client: Any, loopback_settings: Settings, db: Database, mongo_uri: str
) -> None:
    from syncjobs.api.app import create_app

    from tests.integration.test_api_helpers import make_tenant

    api = Api(await aiohttp_client(create_app(loopback_settings)))
    tenant = await make_tenant(api, db, "loopback")
    body = {"name": "x", "kind": "mongodb", "config": {"uri": mongo_uri, "database": "other"}}
    error = await refused(tenant, db, "/destinations", body, 422, "config.uri")
    assert "control database's server" in error["message"]
    both = loopback_settings.with_overrides(control_cluster_databases=("tenant_data",))
    api = Api(await aiohttp_client(create_app(both)))
    tenant = await make_tenant(api, db, "allowed")
    for database in (db.name, db.name.upper(), "admin", "other"):
        error = await refused(
            tenant,
            db,
            "/destinations",
            {**body, "config": {"uri": mongo_uri, "database": database}},
            422,
            "config.database",
        )
    assert (
        await tenant.api.call(
            "POST", tenant.path("/destinations"), json={**body, "config": {"uri": mongo_uri, "database": "tenant_data"}}
        )
    )[0] == 201


async def test_a_put_that_keeps_the_redacted_uri_is_checked_with_it(
    aiohttp_client: Any, loopback_settings: Settings, db: Database, mongo_uri: str
) -> None:
    from syncjobs.api.app import create_app

    from tests.integration.test_api_helpers import make_tenant

    settings = loopback_settings.with_overrides(control_cluster_databases=("tenant_data",))
    tenant = await make_tenant(Api(await aiohttp_client(create_app(settings))), db, "put")
    body = {"name": "dw", "kind": "mongodb", "config": {"uri": mongo_uri, "database": "tenant_data"}}
    created = await create(tenant.api, tenant.path("/destinations"), body)
    edit = {"name": "dw", "kind": "mongodb", "config": {"uri": "********", "database": db.name}}
    await refused(tenant, db, f"/destinations/{created['id']}", edit, 422, "config.database", method="PUT")
