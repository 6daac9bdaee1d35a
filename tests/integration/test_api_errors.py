"""Every rejection of the issue (400, 404, 405, 409, 413, 422), its JSON shape, and that nothing is written."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.mongo import Database

from tests.integration.test_api_helpers import (
    Api,
    JobSetup,
    Tenant,
    destination_body,
    job_body,
    make_job,
    snapshot,
    source_body,
)

pytest_plugins = ["tests.integration.test_api_helpers"]

MIB = 1024 * 1024


@pytest.fixture
async def setup(tenant: Tenant) -> JobSetup:
    return await make_job(tenant)


def assert_error(status: int, body: Any, expected_status: int, code: str) -> dict[str, Any]:
    assert status == expected_status, body
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)
    return error


async def rejected(
    tenant: Tenant, db: Database, method: str, path: str, expected_status: int, code: str, **request: Any
) -> dict[str, Any]:
    """Make the request, check the error answer, and check that the database did not change."""
    before = await snapshot(db)
    status, body = await tenant.api.call(method, tenant.path(path) if path.startswith("/") else path, **request)
    error = assert_error(status, body, expected_status, code)
    assert await snapshot(db) == before
    return error


def job(setup: JobSetup, **overrides: Any) -> dict[str, Any]:
    return job_body(setup.source["id"], setup.destination["id"], **{"name": "another", **overrides})


@pytest.mark.parametrize("path_kind", ["workspaces", "data-sources", "destinations", "sync-jobs", "put", "toggle"])
@pytest.mark.parametrize("data", ["{", '{"name": "x",}', "not json", "", "\xff"])
async def test_malformed_json_is_400(
    tenant: Tenant, setup: JobSetup, db: Database, api: Api, path_kind: str, data: str
) -> None:
    paths = {
        "data-sources": "/data-sources",
        "destinations": "/destinations",
        "sync-jobs": "/sync-jobs",
        "put": f"/sync-jobs/{setup.job['id']}",
        "toggle": f"/sync-jobs/{setup.job['id']}/toggle",
    }
    if data == "" and path_kind == "toggle":
        return  # an empty body is how a toggle without a body is sent
    if path_kind == "workspaces":
        before = await snapshot(db)
        status, body = await api.call("POST", "/api/workspaces", data=data)
        assert_error(status, body, 400, "malformed_json")
        assert await snapshot(db) == before
        return
    method = "PUT" if path_kind == "put" else "POST"
    await rejected(tenant, db, method, paths[path_kind], 400, "malformed_json", data=data.encode("latin-1"))


def field_of(error: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in error["details"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"schedule": {"cron": "0 * * * *", "timezone": "UTC", "every": 5}}, "schedule.every"),
        ({"retry": {"maxAttempts": 0}}, "retry.maxAttempts"),
        ({"syncMode": "mirror"}, "syncMode"),
        ({"overlap": "never"}, "overlap"),
        ({"timeoutSeconds": "soon"}, "timeoutSeconds"),
        ({"enabled": "yes please"}, "enabled"),
        ({"entities": {"include": [""]}}, "entities.include.0"),
        ({"name": ""}, "name"),
        ({"schedule": {"cron": "*/5 * * *"}}, "schedule.cron"),
        ({"schedule": {"cron": "61 * * * *"}}, "schedule.cron"),
        ({"schedule": {"cron": "0 0 0 9 * * *"}}, "schedule.cron"),
        ({"schedule": {"cron": "@fortnightly"}}, "schedule.cron"),
        ({"schedule": {"cron": "every day"}}, "schedule.cron"),
        ({"schedule": {"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}}, "schedule.timezone"),
        ({"schedule": {"cron": "0 9 * * *", "timezone": "EST+5"}}, "schedule.timezone"),
        ({"dataSourceId": "not-an-id"}, "dataSourceId"),
        ({"dataSourceId": str(ObjectId())}, "dataSourceId"),
        ({"destinationDatabaseId": str(ObjectId())}, "destinationDatabaseId"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_invalid_job_fields_are_422_naming_the_field(
    tenant: Tenant, setup: JobSetup, db: Database, method: str, change: dict[str, Any], field: str
) -> None:
    path = "/sync-jobs" if method == "POST" else f"/sync-jobs/{setup.job['id']}"
    error = await rejected(tenant, db, method, path, 422, "validation_error", json=job(setup, **change))
    assert field in field_of(error)
    assert field in error["message"]


@pytest.mark.parametrize("missing", ["name", "dataSourceId", "destinationDatabaseId", "schedule"])
async def test_missing_job_fields_are_422(tenant: Tenant, setup: JobSetup, db: Database, missing: str) -> None:
    body = job(setup)
    del body[missing]
    error = await rejected(tenant, db, "POST", "/sync-jobs", 422, "validation_error", json=body)
    assert field_of(error) == [missing]


async def test_references_to_another_workspace_are_422(
    tenant: Tenant, other_tenant: Tenant, setup: JobSetup, db: Database
) -> None:
    foreign = await make_job(other_tenant)
    for field, value in [("dataSourceId", foreign.source["id"]), ("destinationDatabaseId", foreign.destination["id"])]:
        error = await rejected(
            tenant, db, "POST", "/sync-jobs", 422, "validation_error", json=job(setup, **{field: value})
        )
        assert field_of(error) == [field]


@pytest.mark.parametrize("cron", ["*/15 * * * *", "30 0 9 * * 1-5", "@hourly", "@daily", "0 0 1 1 *"])
async def test_accepted_cron_forms(tenant: Tenant, setup: JobSetup, cron: str) -> None:
    status, created = await tenant.api.call(
        "POST", tenant.path("/sync-jobs"), json=job(setup, schedule={"cron": cron, "timezone": "Asia/Tokyo"})
    )
    assert status == 201, created
    assert created["schedule"]["cron"] == cron


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "s", "kind": "ftp", "config": {}}, "kind"),
        ({"name": "s", "kind": "mongodb", "config": {"uri": "mongodb://h/"}}, "config.database"),
        ({"name": "s", "kind": "http", "config": {"baseUrl": "ftp://h", "entities": {"a": {}}}}, "config.baseUrl"),
        ({"name": "s", "kind": "command", "config": {"command": []}}, "config.command"),
        ({"kind": "mongodb", "config": {"uri": "mongodb://h/", "database": "d"}}, "name"),
        ({**source_body(), "secret": "x"}, "secret"),
    ],
)
async def test_invalid_data_sources_are_422(tenant: Tenant, db: Database, body: dict[str, Any], field: str) -> None:
    error = await rejected(tenant, db, "POST", "/data-sources", 422, "validation_error", json=body)
    assert field in field_of(error)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "d", "kind": "http", "config": {"uri": "mongodb://h/", "database": "d"}}, "kind"),
        ({"name": "d", "config": {"uri": "mongodb://h/", "database": "d", "extra": 1}}, "config.extra"),
        ({"name": "d", "config": {"uri": "mongodb://h/", "database": "a.b"}}, "config.database"),
        ({"name": "d", "config": {"database": "d"}}, "config.uri"),
    ],
)
async def test_invalid_destinations_are_422(tenant: Tenant, db: Database, body: dict[str, Any], field: str) -> None:
    error = await rejected(tenant, db, "POST", "/destinations", 422, "validation_error", json=body)
    assert field in field_of(error)


async def test_a_json_body_that_is_not_an_object_is_422(tenant: Tenant, db: Database) -> None:
    error = await rejected(tenant, db, "POST", "/data-sources", 422, "validation_error", json=[source_body()])
    assert field_of(error) == ["body"]


async def test_toggle_body_is_validated(tenant: Tenant, setup: JobSetup, db: Database) -> None:
    toggle = f"/sync-jobs/{setup.job['id']}/toggle"
    assert field_of(await rejected(tenant, db, "POST", toggle, 422, "validation_error", json={"enabled": "maybe"})) == [
        "enabled"
    ]
    assert field_of(await rejected(tenant, db, "POST", toggle, 422, "validation_error", json={"on": True})) == ["on"]


async def test_duplicate_names_are_409(tenant: Tenant, setup: JobSetup, db: Database) -> None:
    await rejected(tenant, db, "POST", "/data-sources", 409, "conflict", json=source_body())
    await rejected(tenant, db, "POST", "/destinations", 409, "conflict", json=destination_body())
    await rejected(tenant, db, "POST", "/sync-jobs", 409, "conflict", json=job(setup, name=setup.job["name"]))
    # A rename onto a taken name, by PUT.
    other_source = (await tenant.api.call("POST", tenant.path("/data-sources"), json=source_body("b")))[1]
    await rejected(tenant, db, "PUT", f"/data-sources/{other_source['id']}", 409, "conflict", json=source_body())
    other_job = (await tenant.api.call("POST", tenant.path("/sync-jobs"), json=job(setup)))[1]
    await rejected(
        tenant, db, "PUT", f"/sync-jobs/{other_job['id']}", 409, "conflict", json=job(setup, name=setup.job["name"])
    )


async def test_the_same_name_in_another_workspace_is_fine(
    tenant: Tenant, other_tenant: Tenant, setup: JobSetup
) -> None:
    assert (await make_job(other_tenant)).job["name"] == setup.job["name"]


@pytest.mark.parametrize("object_id", [str(ObjectId()), "nope", "123", "6b0278f5c0297bab26d2455z"])
async def test_unknown_or_malformed_ids_are_404(tenant: Tenant, setup: JobSetup, db: Database, object_id: str) -> None:
    bodies = {"data-sources": source_body("new"), "destinations": destination_body("new"), "sync-jobs": job(setup)}
    for collection, body in bodies.items():
        item = f"/{collection}/{object_id}"
        for method in ("GET", "PUT", "DELETE"):
            await rejected(tenant, db, method, item, 404, "not_found", json=body if method == "PUT" else None)
    for method, tail in [("POST", "/toggle"), ("POST", "/run"), ("GET", "/status"), ("GET", "/runs")]:
        await rejected(tenant, db, method, f"/sync-jobs/{object_id}{tail}", 404, "not_found")
    for ws in (object_id, "x"):
        await rejected(tenant, db, "GET", f"/api/workspaces/{ws}/sync-jobs", 404, "not_found")


async def test_a_bad_runs_cursor_is_404_and_a_bad_limit_422(tenant: Tenant, setup: JobSetup, db: Database) -> None:
    runs = f"/sync-jobs/{setup.job['id']}/runs"
    for before in ("garbage", str(ObjectId())):
        await rejected(tenant, db, "GET", f"{runs}?before={before}", 404, "not_found")
    for limit in ("0", "501", "-1", "ten", "2.5", ""):
        error = await rejected(tenant, db, "GET", f"{runs}?limit={limit}", 422, "validation_error")
        assert field_of(error) == ["limit"]


def padded_source(size: int) -> io.BytesIO:
    """A valid data source body of exactly `size` bytes (a stream: aiohttp warns on large raw bytes)."""
    empty = json.dumps(source_body(config={"uri": "mongodb://h/", "database": "d", "padding": ""})).encode()
    body = source_body(config={"uri": "mongodb://h/", "database": "d", "padding": "x" * (size - len(empty))})
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return io.BytesIO(raw)


async def test_a_body_over_one_mebibyte_is_413(tenant: Tenant, db: Database) -> None:
    await rejected(tenant, db, "POST", "/data-sources", 413, "payload_too_large", data=padded_source(MIB + 1))


async def test_a_body_of_one_mebibyte_is_read(tenant: Tenant) -> None:
    status, _ = await tenant.api.call("POST", tenant.path("/data-sources"), data=padded_source(MIB))
    assert status == 201


async def test_wrong_method_is_405_and_unknown_route_404(tenant: Tenant, setup: JobSetup, db: Database) -> None:
    error = await rejected(
        tenant, db, "POST", f"/sync-jobs/{setup.job['id']}", 405, "method_not_allowed", json={"enabled": False}
    )
    assert "PUT" in error["details"][0]["message"] and "PATCH" in error["details"][0]["message"]
    await rejected(tenant, db, "GET", "/api/nothing-here", 404, "not_found")
    await rejected(tenant, db, "GET", "/sync-jobs/x/y/z", 404, "not_found")


async def test_an_unexpected_failure_is_a_json_500_that_reveals_nothing(
    tenant: Tenant, setup: JobSetup, db: Database
) -> None:
    # A document the API cannot read (written by hand, bypassing validation) must not crash the server.
    await db.syncjobs.update_one({"_id": ObjectId(setup.job["id"])}, {"$set": {"syncMode": "s3cret-mode"}})
    status, body = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}"))
    assert_error(status, body, 500, "internal_error")
    assert "s3cret-mode" not in json.dumps(body)
    assert (await tenant.api.call("GET", tenant.path()))[0] == 200


@pytest.mark.parametrize("config", [{}, {"tap": "singer-test", "command": ["x"]}, {"other": {"nested": 1}}])
async def test_a_command_source_needs_exactly_one_of_tap_or_command(
    tenant: Tenant, db: Database, config: dict[str, Any]
) -> None:
    """Found by the fuzzer: a model-level error inside a source config was a 500, not a 422."""
    body = {"name": "cmd", "kind": "command", "config": config}
    error = await rejected(tenant, db, "POST", "/data-sources", 422, "validation_error", json=body)
    assert [detail["field"] for detail in error["details"]] == ["config"]
    assert "tap" in error["details"][0]["message"]
