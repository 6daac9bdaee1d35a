"""Every list pages (`limit`, `next` passed back as `after`); the job list filters, each filter on an index."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.api_tokens import create_token

from tests.integration.test_api_helpers import (
    Api,
    Tenant,
    create,
    destination_body,
    job_body,
    make_job,
    source_body,
)

pytest_plugins = ["tests.integration.test_api_helpers"]


async def _all_pages(api: Api, path: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following `next`; and how many pages it took."""
    items: list[dict[str, Any]] = []
    pages, after = 0, ""
    while True:
        joiner = "&" if "?" in path else "?"
        status, page = await api.call("GET", f"{path}{joiner}limit={limit}{after}")
        assert status == 200, page
        assert len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        if page["next"] is None:
            return items, pages
        after = f"&after={page['next']}"


async def test_every_list_pages_with_an_opaque_cursor(api: Api, tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    for index in range(4):
        await create(tenant.api, tenant.path("/data-sources"), source_body(f"src-{index}"))
        await create(tenant.api, tenant.path("/destinations"), destination_body(f"dst-{index}"))
        body = job_body(setup.source["id"], setup.destination["id"], name=f"job-{index}")
        await create(tenant.api, tenant.path("/sync-jobs"), body)
        await create(tenant.api, tenant.path("/webhooks"), {"url": f"https://hooks.example.com/{index}"})
        await create_token(db, ObjectId(tenant.id), f"token-{index}")
    for segment, expected in (("data-sources", 5), ("destinations", 5), ("sync-jobs", 5), ("webhooks", 4)):
        items, pages = await _all_pages(tenant.api, tenant.path(f"/{segment}"), 2)
        assert (len(items), pages) == (expected, -(-expected // 2)), segment
        assert len({item["id"] for item in items}) == expected, segment
        if segment != "webhooks":
            names = [item["name"] for item in items]
            assert names == sorted(names), segment
    tokens, _ = await _all_pages(tenant.api, tenant.path("/tokens"), 2)
    assert [token["name"] for token in tokens] == ["acme token", *(f"token-{index}" for index in range(4))]
    workspaces, _ = await _all_pages(api, "/api/workspaces", 1)
    assert tenant.id in {workspace["id"] for workspace in workspaces}
    status, first = await tenant.api.call("GET", tenant.path("/sync-jobs"))
    assert (status, len(first["items"]), first["next"]) == (200, 5, None)  # default limit 100


async def test_bad_limits_and_cursors_are_422_naming_the_parameter(tenant: Tenant) -> None:
    for query, field in (
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("after=not-a-cursor", "after"),
        ("after=eyJ4IjoxfQ", "after"),  # base64 JSON, but not one of ours
        ("enabled=yes", "enabled"),
        ("dataSourceId=nope", "dataSourceId"),
        ("destinationDatabaseId=1", "destinationDatabaseId"),
    ):
        status, error = await tenant.api.call("GET", tenant.path(f"/sync-jobs?{query}"))
        assert (status, error["error"]["details"][0]["field"]) == (422, field), query
    status, error = await tenant.api.call("GET", tenant.path("/webhooks?limit=501"))
    assert (status, error["error"]["details"][0]["field"]) == (422, "limit")


async def test_the_job_list_filters(tenant: Tenant) -> None:
    first = await make_job(tenant, name="orders-hourly")
    other_source = await create(tenant.api, tenant.path("/data-sources"), source_body("crm"))
    other_destination = await create(tenant.api, tenant.path("/destinations"), destination_body("lake"))
    src, dst = first.source["id"], first.destination["id"]
    for name, source, destination, enabled in (
        ("orders-daily", src, dst, False),
        ("customers", other_source["id"], dst, True),
        ("order", src, other_destination["id"], True),
        ("refunds", other_source["id"], other_destination["id"], False),
    ):
        await create(tenant.api, tenant.path("/sync-jobs"), job_body(source, destination, name=name, enabled=enabled))

    async def names(query: str) -> list[str]:
        items, _ = await _all_pages(tenant.api, tenant.path(f"/sync-jobs?{query}"), 2)
        return [item["name"] for item in items]

    assert await names("enabled=false") == ["orders-daily", "refunds"]
    assert await names("enabled=true") == ["customers", "order", "orders-hourly"]
    assert await names(f"dataSourceId={other_source['id']}") == ["customers", "refunds"]
    assert await names(f"destinationDatabaseId={other_destination['id']}") == ["order", "refunds"]
    assert await names("q=order") == ["order", "orders-daily", "orders-hourly"]
    assert await names("q=orders-") == ["orders-daily", "orders-hourly"]
    assert await names(f"q=order&enabled=true&dataSourceId={src}") == ["order", "orders-hourly"]
    assert await names("q=zzz") == []


async def _plan(db: Database, collection: str, query: dict[str, Any], sort: dict[str, int]) -> str:
    explained = await db.command(
        {"explain": {"find": collection, "filter": query, "sort": sort}, "verbosity": "queryPlanner"}
    )
    return str(explained["queryPlanner"]["winningPlan"])


async def test_every_list_filter_is_served_by_an_index(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    ws = ObjectId(tenant.id)
    by_name = {"name": 1}
    for collection, query, sort in (
        ("syncjobs", {"workspaceId": ws}, by_name),
        ("syncjobs", {"workspaceId": ws, "name": {"$gt": "m"}}, by_name),
        ("syncjobs", {"workspaceId": ws, "enabled": True}, by_name),
        ("syncjobs", {"workspaceId": ws, "dataSourceId": ObjectId(setup.source["id"])}, by_name),
        ("syncjobs", {"workspaceId": ws, "destinationDatabaseId": ObjectId(setup.destination["id"])}, by_name),
        ("syncjobs", {"workspaceId": ws, "name": {"$gte": "ord", "$lt": "ord\U0010ffff"}}, by_name),
        ("data_sources", {"workspaceId": ws}, by_name),
        ("destinations", {"workspaceId": ws}, by_name),
        ("webhooks", {"workspaceId": ws, "_id": {"$gt": ObjectId()}}, {"_id": 1}),
        ("api_tokens", {"workspaceId": ws}, {"tokenId": 1}),
        ("webhook_deliveries", {"webhookId": ObjectId()}, {"_id": -1}),
    ):
        plan = await _plan(db, collection, query, sort)
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, (collection, query, plan)
