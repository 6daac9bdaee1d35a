"""A changeStream job over the API: only for mongodb sources, its resume point's age in the status and in
`/metrics`, and `reset-state` clearing cursors and resume point, recorded in the run history."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId, Timestamp
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.api_tokens import create_token
from syncjobs.shared.store.sync_state import CHANGE_STREAM_KEY, save_cursor

from tests.integration.test_api_helpers import START, Api, Tenant, create, job_body, make_job

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_change_stream_needs_a_mongodb_source(tenant: Tenant) -> None:
    setup = await make_job(tenant)
    http = await create(
        tenant.api,
        tenant.path("/data-sources"),
        {"name": "api", "kind": "http", "config": {"baseUrl": "https://example.com/", "entities": {"a": {}}}},
    )
    body = job_body(http["id"], setup.destination["id"], name="cs", syncMode="changeStream")
    status, error = await tenant.api.call("POST", tenant.path("/sync-jobs"), json=body)
    assert status == 422
    assert error["error"]["details"] == [{"field": "syncMode", "message": "changeStream needs a mongodb data source"}]
    ok = job_body(setup.source["id"], setup.destination["id"], name="cs", syncMode="changeStream")
    job = await create(tenant.api, tenant.path("/sync-jobs"), ok)
    assert (job["syncMode"], job["onHistoryLost"]) == ("changeStream", "fail")


async def test_status_and_metrics_show_the_lag_and_reset_state_clears_it(
    api: Api, tenant: Tenant, db: Database
) -> None:
    job = (await make_job(tenant, syncMode="changeStream")).job
    job_id = ObjectId(job["id"])
    resume_at = START - timedelta(seconds=90)
    await save_cursor(
        db, job_id, CHANGE_STREAM_KEY, {"token": {"_data": "x"}, "clusterTime": Timestamp(resume_at, 1)}, START
    )
    await save_cursor(db, job_id, "orders", {"field": "updatedAt", "value": None, "id": 1}, START)
    item = tenant.path(f"/sync-jobs/{job['id']}")

    status, body = await tenant.api.call("GET", item + "/status")
    assert status == 200
    assert (body["changeStreamResumeAt"], body["changeStreamLagSeconds"]) == ("2026-01-15T11:58:30Z", 90.0)
    status, text = await api.call("GET", "/metrics", token=None)
    assert f'syncjobs_change_stream_lag_seconds{{job_id="{job["id"]}"}} 90.0' in text

    read_only = await create_token(db, ObjectId(tenant.id), "reader", scope="read")
    assert (await tenant.api.as_token(read_only).call("POST", item + "/reset-state"))[0] == 403
    assert await db.sync_state.count_documents({}) == 2

    status, run = await tenant.api.call("POST", item + "/reset-state")
    assert status == 200, run
    assert (run["trigger"], run["status"], run["stats"]) == ("reset", "reset", {"statesCleared": 2})
    assert await db.sync_state.count_documents({}) == 0
    status, body = await tenant.api.call("GET", item + "/status")
    assert (body["changeStreamResumeAt"], body["changeStreamLagSeconds"]) == (None, None)
    assert [r["id"] for r in body["recentRuns"]] == [run["id"]]
    status, text = await api.call("GET", "/metrics", token=None)
    assert "syncjobs_change_stream_lag_seconds{" not in text

    await db.job_runs.update_one({"_id": ObjectId(run["id"])}, {"$set": {"status": "running"}})
    assert (await tenant.api.call("POST", item + "/reset-state"))[0] == 409


async def test_deleting_a_job_forgets_its_state(tenant: Tenant, db: Database) -> None:
    job = (await make_job(tenant, syncMode="changeStream")).job
    await save_cursor(
        db, ObjectId(job["id"]), CHANGE_STREAM_KEY, {"token": {}, "clusterTime": Timestamp(START, 1)}, START
    )
    assert (await tenant.api.call("DELETE", tenant.path(f"/sync-jobs/{job['id']}")))[0] == 204
    assert await db.sync_state.count_documents({}) == 0
