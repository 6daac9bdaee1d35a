"""Tokens: 401 without one, admin versus workspace grants, and 404 (with nothing leaked) across workspaces."""

from __future__ import annotations

import json

import pytest
from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.api_tokens import hash_token
from syncjobs.shared.tap_isolation import isolation

from tests.integration.test_api_helpers import (
    ADMIN_TOKEN,
    SOURCE_URI,
    Api,
    Tenant,
    destination_body,
    job_body,
    make_job,
    snapshot,
    source_body,
)

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_healthz_needs_no_token(api: Api) -> None:
    expected = {"status": "ok", "details": {"tapIsolation": isolation()}}
    assert await api.call("GET", "/healthz", token=None) == (200, expected)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer sjt_not-a-token"},
        {"Authorization": ADMIN_TOKEN},
    ],
)
async def test_missing_or_wrong_token_is_401_on_every_api_route(
    api: Api, tenant: Tenant, headers: dict[str, str]
) -> None:
    setup = await make_job(tenant)
    job_path = tenant.path(f"/sync-jobs/{setup.job['id']}")
    for method, path in [
        ("GET", "/api/openapi.json"),
        ("POST", "/api/workspaces"),
        ("GET", tenant.path()),
        ("GET", tenant.path("/data-sources")),
        ("GET", tenant.path(f"/data-sources/{setup.source['id']}")),
        ("DELETE", tenant.path(f"/destinations/{setup.destination['id']}")),
        ("PUT", job_path),
        ("POST", job_path + "/run"),
        ("GET", job_path + "/runs"),
        ("GET", "/api/no-such-route"),
    ]:
        status, body = await api.call(method, path, token=None, headers=headers, json={})
        assert status == 401, (method, path, body)
        assert body["error"]["code"] == "unauthorized"
        assert setup.job["name"] not in json.dumps(body)


async def test_tokens_are_stored_hashed(api: Api, tenant: Tenant, db: Database) -> None:
    stored = await db.api_tokens.find().to_list()
    assert {doc["_id"] for doc in stored} >= {hash_token(ADMIN_TOKEN), hash_token(tenant.token)}
    assert tenant.token not in json.dumps([{k: str(v) for k, v in doc.items()} for doc in stored])


async def test_only_an_admin_token_creates_workspaces(api: Api, tenant: Tenant, db: Database) -> None:
    before = await snapshot(db)
    status, body = await tenant.api.call("POST", "/api/workspaces", json={"name": "mine"})
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert await snapshot(db) == before


async def test_workspace_token_reads_its_own_workspace(tenant: Tenant) -> None:
    status, body = await tenant.api.call("GET", tenant.path())
    assert status == 200
    assert body["id"] == tenant.id
    assert body["name"] == "acme"
    assert "_id" not in body


async def test_admin_token_acts_in_any_workspace(api: Api, tenant: Tenant, other_tenant: Tenant) -> None:
    for ws in (tenant, other_tenant):
        status, created = await api.call(
            "POST",
            ws.path("/destinations"),
            json={"name": "dw", "kind": "mongodb", "config": {"uri": "mongodb://h/", "database": "dw"}},
        )
        assert status == 201
        assert created["workspaceId"] == ws.id
        assert (await ws.api.call("GET", ws.path(f"/destinations/{created['id']}")))[0] == 200


async def test_admin_token_on_unknown_workspace_is_404(api: Api, db: Database) -> None:
    unknown = f"/api/workspaces/{ObjectId()}"
    before = await snapshot(db)
    status, body = await api.call(
        "POST",
        unknown + "/data-sources",
        json={"name": "x", "kind": "mongodb", "config": {"uri": "mongodb://h/", "database": "d"}},
    )
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert await snapshot(db) == before
    assert (await api.call("GET", unknown))[0] == 404


async def test_another_workspace_is_404_and_leaks_nothing(tenant: Tenant, other_tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    await tenant.api.call("POST", tenant.path(f"/sync-jobs/{setup.job['id']}/run"))
    own = await make_job(other_tenant, name="own-job")
    secrets = [setup.job["name"], setup.source["name"], setup.destination["name"], SOURCE_URI, "acme"]
    source, destination, job = (
        f"/data-sources/{setup.source['id']}",
        f"/destinations/{setup.destination['id']}",
        f"/sync-jobs/{setup.job['id']}",
    )
    # Valid bodies, so that only the object's ownership can decide the answer.
    bodies = {
        source: source_body("stolen"),
        destination: destination_body("stolen"),
        job: job_body(own.source["id"], own.destination["id"], name="stolen"),
    }
    attempts = [
        ("GET", ""),
        ("GET", "/data-sources"),
        ("GET", source),
        ("PUT", source),
        ("DELETE", source),
        ("GET", destination),
        ("PUT", destination),
        ("DELETE", destination),
        ("GET", "/sync-jobs"),
        ("GET", job),
        ("PUT", job),
        ("DELETE", job),
        ("POST", job + "/toggle"),
        ("POST", job + "/run"),
        ("GET", job + "/status"),
        ("GET", job + "/runs"),
    ]
    # The other token on this workspace's paths; then on its own workspace's paths with this workspace's ids.
    targets = [(method, tenant.path(tail), tail) for method, tail in attempts]
    targets += [(method, other_tenant.path(tail), tail) for method, tail in attempts if tail.count("/") >= 2]
    before = await snapshot(db)
    for method, path, tail in targets:
        status, body = await other_tenant.api.call(method, path, json=bodies.get(tail) if method == "PUT" else None)
        assert status == 404, (method, path, body)
        assert body["error"]["code"] == "not_found"
        assert not [s for s in secrets if s in json.dumps(body)], (method, path, body)
    assert await snapshot(db) == before


async def test_lists_show_only_the_own_workspace(tenant: Tenant, other_tenant: Tenant) -> None:
    await make_job(tenant)
    for tail in ("/data-sources", "/destinations", "/sync-jobs"):
        assert (await other_tenant.api.call("GET", other_tenant.path(tail))) == (200, {"items": [], "next": None})
        status, body = await tenant.api.call("GET", tenant.path(tail))
        assert status == 200
        assert len(body["items"]) == 1


async def test_metrics_and_the_dashboard_page_need_no_token(api: Api) -> None:
    for path in ("/metrics", "/dashboard/"):
        status, _ = await api.call("GET", path, token=None)
        assert status == 200, path
    status, body = await api.call("GET", "/dashboard-but-not-really", token=None)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
