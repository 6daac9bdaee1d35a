"""Concurrent edits: versions as ETags, If-Match on PUT / PATCH / DELETE / toggle (412, nothing written),
GET-edit-PUT with the read-only fields a GET returned, and JSON merge patch."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from syncjobs.shared.models import SyncJobInput
from syncjobs.shared.mongo import Database

from tests.integration.test_api_helpers import SOURCE_URI, Tenant, create, make_job, snapshot

pytest_plugins = ["tests.integration.test_api_helpers"]


async def _raw(tenant: Tenant, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any, str | None]:
    """(status, JSON body, ETag) of one call, checked against the OpenAPI document like every call."""
    client: TestClient[web.Request, web.Application] = tenant.api.client
    all_headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json", **headers}
    data = json.dumps(body) if body is not None else None
    async with client.request(method, path, data=data, headers=all_headers) as resp:
        raw = await resp.read()
        parsed = json.loads(raw) if raw and resp.content_type == "application/json" else None
        (await tenant.api.contract()).check(method, path, resp.status, parsed, is_json=parsed is not None)
        return resp.status, parsed, resp.headers.get("ETag")


async def _refused(
    tenant: Tenant, db: Database, method: str, path: str, status: int, body: Any = None, **headers: str
) -> dict[str, Any]:
    before = await snapshot(db)
    answer, error, _ = await _raw(tenant, method, path, body, **headers)
    assert answer == status, error
    assert await snapshot(db) == before  # nothing written
    return error  # type: ignore[no-any-return]


async def test_a_stale_if_match_is_412_and_writes_nothing(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    status, job, tag = await _raw(tenant, "GET", item)
    assert (status, tag, job["version"]) == (200, '"1"', 1)
    edited = {**job, "name": "renamed"}
    status, job, tag = await _raw(tenant, "PUT", item, edited, **{"If-Match": '"1"'})
    assert (status, tag, job["name"]) == (200, '"2"', "renamed")
    for method, path, body, headers in (
        ("PUT", item, {**job, "name": "stale", "version": 2}, {"If-Match": '"1"'}),
        ("PUT", item, {**job, "name": "stale", "version": 1}, {}),  # the body's version is a precondition too
        ("PATCH", item, {"name": "stale"}, {"If-Match": '"1"', "Content-Type": "application/merge-patch+json"}),
        ("POST", item + "/toggle", None, {"If-Match": '"1"'}),
        ("DELETE", item, None, {"If-Match": 'W/"1"'}),
    ):
        error = await _refused(tenant, db, method, path, 412, body, **headers)
        assert error["error"]["code"] == "precondition_failed", (method, error)
    status, toggled, tag = await _raw(tenant, "POST", item + "/toggle", None, **{"If-Match": '"2"'})
    assert (status, toggled["enabled"], tag) == (200, False, '"3"')
    await _refused(tenant, db, "DELETE", item, 412, None, **{"If-Match": "not-an-etag"})
    assert (await _raw(tenant, "DELETE", item, None, **{"If-Match": '"3"'}))[0] == 204


async def test_get_edit_put_sends_back_what_get_returned(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    _, job, _ = await _raw(tenant, "GET", item)
    editable = {field.alias or name for name, field in SyncJobInput.model_fields.items()}
    not_editable = set(job) - editable
    assert len(not_editable) == 15, not_editable  # the 11, and paused, pausedUntil, pauseNote, skipCount
    status, replaced, _ = await _raw(tenant, "PUT", item, {**job, "timeoutSeconds": 60, "nextRunAt": None})
    assert status == 200, replaced
    assert (replaced["timeoutSeconds"], replaced["nextRunAt"], replaced["version"]) == (60, job["nextRunAt"], 2)
    assert replaced["retry"] == job["retry"]
    for field, value in (("id", "0" * 24), ("workspaceId", "0" * 24), ("createdAt", "2020-01-01T00:00:00Z")):
        error = await _refused(tenant, db, "PUT", item, 422, {**replaced, field: value})
        assert error["error"]["details"][0]["field"] == field


async def test_patch_merges_and_null_resets_to_the_default(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    merge = {"Content-Type": "application/merge-patch+json"}
    status, job, tag = await _raw(tenant, "PATCH", item, {"retry": {"maxAttempts": 5}, "enabled": False}, **merge)
    assert status == 200, job
    assert (job["retry"], job["enabled"], job["nextRunAt"], tag) == (
        {"maxAttempts": 5, "backoffSeconds": 10},
        False,
        None,
        '"2"',
    )
    assert job["name"] == setup.job["name"] and job["entities"] == setup.job["entities"]
    status, job, _ = await _raw(tenant, "PATCH", item, {"entities": None, "timeoutSeconds": None}, **merge)
    assert (status, job["entities"], job["timeoutSeconds"]) == (200, {"include": None, "exclude": []}, 3600)
    error = await _refused(tenant, db, "PATCH", item, 422, {"name": None}, **merge)
    assert error["error"]["details"][0]["field"] == "name"
    error = await _refused(tenant, db, "PATCH", item, 422, {"id": "0" * 24}, **merge)
    assert error["error"]["details"][0]["field"] == "id"
    await _refused(tenant, db, "PATCH", item, 415, {"name": "x"}, **{"Content-Type": "text/plain"})


async def test_sources_destinations_and_webhooks_carry_versions(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    for segment, made in (("data-sources", setup.source), ("destinations", setup.destination)):
        item = tenant.path(f"/{segment}/{made['id']}")
        status, doc, tag = await _raw(tenant, "GET", item)
        assert (status, tag, doc["version"]) == (200, '"1"', 1)
        status, doc, tag = await _raw(tenant, "PUT", item, {**doc, "name": f"{segment}-2"}, **{"If-Match": '"1"'})
        assert (status, doc["name"], tag) == (200, f"{segment}-2", '"2"'), doc
        await _refused(tenant, db, "PUT", item, 412, {**doc, "name": "stale"}, **{"If-Match": '"1"'})
        status, doc, tag = await _raw(
            tenant, "PATCH", item, {"name": f"{segment}-3"}, **{"Content-Type": "application/merge-patch+json"}
        )
        assert (status, doc["name"], doc["config"]["uri"], tag) == (200, f"{segment}-3", "********", '"3"'), doc
    stored = await db.data_sources.find_one({})
    assert stored is not None and SOURCE_URI not in str(stored)  # still sealed, and still the same secret
    hook = await create(tenant.api, tenant.path("/webhooks"), {"url": "https://hooks.example.com/x"})
    assert hook["version"] == 1
    hook_path = tenant.path(f"/webhooks/{hook['id']}")
    await _refused(tenant, db, "DELETE", hook_path, 412, None, **{"If-Match": '"7"'})
    assert (await _raw(tenant, "DELETE", hook_path, None, **{"If-Match": '"1"'}))[0] == 204
