"""Idempotency-Key on the creating POSTs and on run: a retry whose first answer was lost gets that answer
again and writes nothing; the key with another request is a 422; a key in flight is a 409."""

from __future__ import annotations

from datetime import datetime

from bson import ObjectId
from syncjobs.shared.mongo import IDEMPOTENCY_KEY_SECONDS, Database
from syncjobs.shared.store import idempotency_keys

from tests.integration.test_api_helpers import (
    Tenant,
    destination_body,
    job_body,
    make_job,
    snapshot,
    source_body,
)

pytest_plugins = ["tests.integration.test_api_helpers"]


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_a_retried_run_answers_the_same_run_and_starts_no_second(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    run = tenant.path(f"/sync-jobs/{setup.job['id']}/run")
    first = await tenant.api.call("POST", run, headers=_key("retry-me-1"))
    assert first[0] == 202, first
    before = await snapshot(db)
    again = await tenant.api.call("POST", run, headers=_key("retry-me-1"))  # the first answer was lost
    assert again == first
    assert await snapshot(db) == before  # nothing written
    assert await db.job_runs.count_documents({}) == 1
    other = await tenant.api.call("POST", run, headers=_key("retry-me-2"))
    assert other[0] == 202 and other[1]["runId"] != first[1]["runId"]


async def test_every_creating_post_replays_its_first_answer(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    for path, body in (
        ("/data-sources", source_body("src-2")),
        ("/destinations", destination_body("dst-2")),
        ("/sync-jobs", job_body(setup.source["id"], setup.destination["id"], name="job-2")),
        ("/webhooks", {"url": "https://hooks.example.com/a"}),
        ("/tokens", {"name": "ci"}),
    ):
        first = await tenant.api.call("POST", tenant.path(path), json=body, headers=_key(f"create{path}"))
        assert first[0] == 201, first
        before = await snapshot(db)
        assert await tenant.api.call("POST", tenant.path(path), json=body, headers=_key(f"create{path}")) == first
        assert await snapshot(db) == before, path
    stored = str(await db.idempotency_keys.find({}).to_list())
    assert "sjt_" not in stored and "hooks.example.com" not in stored  # answers are kept sealed


async def test_the_key_with_another_request_is_422_and_writes_nothing(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    body = job_body(setup.source["id"], setup.destination["id"], name="job-2")
    assert (await tenant.api.call("POST", tenant.path("/sync-jobs"), json=body, headers=_key("k")))[0] == 201
    before = await snapshot(db)
    for path, other in (
        ("/sync-jobs", {**body, "name": "job-3"}),  # another body
        (f"/sync-jobs/{setup.job['id']}/run", None),  # another route
    ):
        status, error = await tenant.api.call("POST", tenant.path(path), json=other, headers=_key("k"))
        assert (status, error["error"]["details"][0]["field"]) == (422, "Idempotency-Key"), error
    for bad in ("", "has space", "x" * 256):
        status, error = await tenant.api.call("POST", tenant.path("/sync-jobs"), json=body, headers=_key(bad))
        assert (status, error["error"]["details"][0]["field"]) == (422, "Idempotency-Key"), bad
    assert await snapshot(db) == before


async def test_keys_are_per_workspace_and_a_refused_request_frees_its_key(
    tenant: Tenant, other_tenant: Tenant, db: Database
) -> None:
    mine, theirs = await make_job(tenant), await make_job(other_tenant)
    status, refused = await tenant.api.call(
        "POST", tenant.path("/sync-jobs"), json={"name": "half"}, headers=_key("shared-key")
    )
    assert status == 422, refused
    assert await db.idempotency_keys.count_documents({}) == 0
    body = job_body(mine.source["id"], mine.destination["id"], name="job-2")
    assert (await tenant.api.call("POST", tenant.path("/sync-jobs"), json=body, headers=_key("shared-key")))[0] == 201
    theirs_body = job_body(theirs.source["id"], theirs.destination["id"], name="job-2")
    status, made = await other_tenant.api.call(
        "POST", other_tenant.path("/sync-jobs"), json=theirs_body, headers=_key("shared-key")
    )
    assert (status, made["workspaceId"]) == (201, other_tenant.id)


async def test_a_key_in_flight_is_409(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    run = tenant.path(f"/sync-jobs/{setup.job['id']}/run")
    # Another request with this key is going on (taken by the store as the api takes it).
    await idempotency_keys.begin(db, ObjectId(tenant.id), "busy", "its-hash", datetime.now().astimezone())
    status, error = await tenant.api.call("POST", run, headers=_key("busy"))
    assert (status, error["error"]["code"]) == (409, "conflict")
    assert await db.job_runs.count_documents({}) == 0


async def test_keys_are_kept_a_day(tenant: Tenant, db: Database) -> None:
    await make_job(tenant)
    indexes = await db.idempotency_keys.index_information()
    assert indexes["keep_ttl"]["expireAfterSeconds"] == IDEMPOTENCY_KEY_SECONDS == 86400
