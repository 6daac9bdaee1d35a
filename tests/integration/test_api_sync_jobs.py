"""Sync jobs: CRUD, nextRunAt in the job's timezone, toggle, manual run, status and run history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.job_runs import new_run_document

from tests.fixtures.fake_clock import FakeClock
from tests.integration.test_api_helpers import (
    Api,
    Tenant,
    job_body,
    make_job,
)

pytest_plugins = ["tests.integration.test_api_helpers"]

NEW_YORK_9AM = {"cron": "0 9 * * *", "timezone": "America/New_York"}


async def test_create_get_list_delete(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    job = setup.job
    assert ObjectId.is_valid(job["id"])
    assert "_id" not in job
    assert job["workspaceId"] == tenant.id
    assert job["dataSourceId"] == setup.source["id"]
    assert job["destinationDatabaseId"] == setup.destination["id"]
    assert job["schedule"] == {"cron": "0 * * * *", "timezone": "UTC"}
    assert (job["syncMode"], job["overlap"], job["timeoutSeconds"]) == ("incremental", "skip", 600)
    assert job["entities"] == {"include": ["orders"], "exclude": []}
    assert job["retry"] == {"maxAttempts": 3, "backoffSeconds": 10}
    assert job["enabled"] is True
    assert job["nextRunAt"] == "2026-01-15T13:00:00Z"  # hourly, from the clock's 12:00 UTC
    assert job["createdAt"] == job["updatedAt"] == "2026-01-15T12:00:00Z"
    for field in ("lastRunAt", "lastStatus", "lastError", "averageDurationMs"):
        assert job[field] is None
    item = tenant.path(f"/sync-jobs/{job['id']}")
    assert await tenant.api.call("GET", item) == (200, job)
    assert await tenant.api.call("GET", tenant.path("/sync-jobs")) == (200, {"items": [job], "next": None})
    assert await tenant.api.call("DELETE", item) == (204, None)
    assert (await tenant.api.call("GET", item))[0] == 404
    assert await db.syncjobs.count_documents({}) == 0


async def test_defaults_fill_optional_fields(tenant: Tenant) -> None:
    setup = await make_job(tenant)
    body = {
        "name": "minimal",
        "dataSourceId": setup.source["id"],
        "destinationDatabaseId": setup.destination["id"],
        "schedule": {"cron": "@daily"},
    }
    status, job = await tenant.api.call("POST", tenant.path("/sync-jobs"), json=body)
    assert status == 201, job
    assert job["schedule"] == {"cron": "@daily", "timezone": "UTC"}
    assert (job["syncMode"], job["overlap"], job["enabled"]) == ("full", "skip", True)
    assert job["nextRunAt"] == "2026-01-16T00:00:00Z"


async def test_next_run_at_follows_the_job_timezone(tenant: Tenant) -> None:
    # 12:00 UTC on 15 January is 07:00 in New York (EST, -05:00): the next 09:00 there is 14:00 UTC.
    setup = await make_job(tenant, schedule=NEW_YORK_9AM)
    assert setup.job["nextRunAt"] == "2026-01-15T14:00:00Z"
    _, status = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}/status"))
    assert status["nextRuns"] == [f"2026-01-{day}T09:00:00-05:00" for day in (15, 16, 17, 18, 19)]


async def test_next_runs_carry_the_offset_across_a_dst_change(tenant: Tenant, clock: FakeClock) -> None:
    clock.set(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))  # New York springs forward on 8 March 2026
    setup = await make_job(tenant, schedule=NEW_YORK_9AM)
    _, status = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}/status"))
    assert status["nextRuns"] == [
        "2026-03-06T09:00:00-05:00",
        "2026-03-07T09:00:00-05:00",
        "2026-03-08T09:00:00-04:00",
        "2026-03-09T09:00:00-04:00",
        "2026-03-10T09:00:00-04:00",
    ]
    assert status["nextRunAt"] == "2026-03-06T14:00:00Z"


async def test_put_replaces_fields_and_a_new_schedule_recomputes_next_run(tenant: Tenant, clock: FakeClock) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    clock.advance(timedelta(hours=2, minutes=30))  # 14:30 UTC
    body = job_body(
        setup.source["id"],
        setup.destination["id"],
        name="renamed",
        schedule={"cron": "0 9 * * *", "timezone": "Europe/Paris"},
        syncMode="full",
        overlap="queue",
        timeoutSeconds=60,
        entities={"exclude": ["audit"]},
    )
    status, job = await tenant.api.call("PUT", item, json=body)
    assert status == 200, job
    assert job["name"] == "renamed"
    assert (job["syncMode"], job["overlap"], job["timeoutSeconds"]) == ("full", "queue", 60)
    assert job["entities"] == {"include": None, "exclude": ["audit"]}
    assert job["nextRunAt"] == "2026-01-16T08:00:00Z"  # 09:00 in Paris (+01:00), the day after
    assert job["updatedAt"] == "2026-01-15T14:30:00Z"
    assert job["createdAt"] == setup.job["createdAt"]
    assert await tenant.api.call("GET", item) == (200, job)


async def test_put_that_keeps_the_schedule_keeps_a_due_fire(tenant: Tenant, clock: FakeClock) -> None:
    setup = await make_job(tenant)
    assert setup.job["nextRunAt"] == "2026-01-15T13:00:00Z"
    clock.advance(timedelta(hours=1, seconds=1))  # the 13:00 fire is due, the worker has not taken it yet
    body = job_body(setup.source["id"], setup.destination["id"], name="renamed")
    status, job = await tenant.api.call("PUT", tenant.path(f"/sync-jobs/{setup.job['id']}"), json=body)
    assert status == 200, job
    assert (job["name"], job["nextRunAt"]) == ("renamed", "2026-01-15T13:00:00Z")


async def test_loosely_typed_values_are_refused_naming_the_field(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    for field, value in (("enabled", "off"), ("timeoutSeconds", "600")):
        body = job_body(setup.source["id"], setup.destination["id"], name=f"loose-{field}", **{field: value})
        status, error = await tenant.api.call("POST", tenant.path("/sync-jobs"), json=body)
        assert status == 422, error
        assert error["error"]["details"][0]["field"] == field
    assert await db.syncjobs.count_documents({}) == 1


async def test_toggle_flips_and_sets_enabled(tenant: Tenant, clock: FakeClock) -> None:
    setup = await make_job(tenant)
    toggle = tenant.path(f"/sync-jobs/{setup.job['id']}/toggle")
    status, job = await tenant.api.call("POST", toggle)
    assert (status, job["enabled"], job["nextRunAt"]) == (200, False, None)
    clock.advance(timedelta(hours=5))
    status, job = await tenant.api.call("POST", toggle)
    assert (status, job["enabled"], job["nextRunAt"]) == (200, True, "2026-01-15T18:00:00Z")
    for _ in range(2):
        status, job = await tenant.api.call("POST", toggle, json={"enabled": False})
        assert (status, job["enabled"]) == (200, False)
    status, job = await tenant.api.call("POST", toggle, json={"enabled": True})
    assert (status, job["enabled"]) == (200, True)
    assert await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}")) == (200, job)


async def test_run_records_a_pending_manual_run(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    status, accepted = await tenant.api.call("POST", tenant.path(f"/sync-jobs/{setup.job['id']}/run"))
    assert status == 202
    assert accepted == {"runId": accepted["runId"], "status": "pending"}
    run = await db.job_runs.find_one({"_id": ObjectId(accepted["runId"])})
    assert run is not None
    assert (run["jobId"], run["workspaceId"]) == (ObjectId(setup.job["id"]), ObjectId(tenant.id))
    assert (run["trigger"], run["status"], run["attempt"]) == ("manual", "pending", 1)


async def test_status(tenant: Tenant, db: Database, clock: FakeClock) -> None:
    setup = await make_job(tenant)
    job_id = setup.job["id"]
    status_path = tenant.path(f"/sync-jobs/{job_id}/status")
    status, idle = await tenant.api.call("GET", status_path)
    assert status == 200
    assert idle == {
        "jobId": job_id,
        "enabled": True,
        "running": False,
        "lastRunAt": None,
        "lastStatus": None,
        "lastError": None,
        "nextRunAt": "2026-01-15T13:00:00Z",
        "nextRuns": [f"2026-01-15T{hour}:00:00+00:00" for hour in (13, 14, 15, 16, 17)],
        "averageDurationMs": None,
        "recentRuns": [],
        "paused": False,
        "pausedUntil": None,
        "pauseNote": None,
        "skipCount": 0,
        "changeStreamResumeAt": None,  # an incremental job: no resume point
        "changeStreamLagSeconds": None,
    }
    run_ids = []
    for _ in range(6):
        clock.advance(timedelta(seconds=1))
        run_ids.append((await tenant.api.call("POST", tenant.path(f"/sync-jobs/{job_id}/run")))[1]["runId"])
    job_doc = await db.syncjobs.find_one({"_id": ObjectId(job_id)})
    running = new_run_document(
        job_doc, trigger="schedule", scheduled_for=clock.now(), status="running", now=clock.now() + timedelta(seconds=1)
    )
    await db.job_runs.insert_one(running)
    _, busy = await tenant.api.call("GET", status_path)
    assert busy["running"] is True
    assert [run["id"] for run in busy["recentRuns"]] == [str(running["_id"]), *reversed(run_ids[-4:])]
    await tenant.api.call("POST", tenant.path(f"/sync-jobs/{job_id}/toggle"), json={"enabled": False})
    _, disabled = await tenant.api.call("GET", status_path)
    assert (disabled["enabled"], disabled["nextRunAt"], disabled["nextRuns"]) == (False, None, [])


async def test_runs_are_paginated_newest_first(tenant: Tenant, clock: FakeClock) -> None:
    setup = await make_job(tenant)
    job_path = tenant.path(f"/sync-jobs/{setup.job['id']}")
    created = []
    for _ in range(7):
        clock.advance(timedelta(seconds=1))
        created.append((await tenant.api.call("POST", job_path + "/run"))[1]["runId"])
    seen: list[str] = []
    query = "?limit=3"
    pages = 0
    while True:
        status, page = await tenant.api.call("GET", job_path + "/runs" + query)
        assert status == 200, page
        pages += 1
        assert len(page["runs"]) <= 3
        seen += [run["id"] for run in page["runs"]]
        if page["next"] is None:
            break
        query = f"?limit=3&before={page['next']}"
    assert pages == 3
    assert seen == list(reversed(created))
    status, default_page = await tenant.api.call("GET", job_path + "/runs")
    assert (status, len(default_page["runs"]), default_page["next"]) == (200, 7, None)
    run = default_page["runs"][0]
    assert (run["jobId"], run["trigger"], run["status"]) == (setup.job["id"], "manual", "pending")
    assert run["scheduledFor"] == "2026-01-15T12:00:07Z"


async def test_runs_of_another_job_are_not_a_cursor(tenant: Tenant, api: Api) -> None:
    first = await make_job(tenant)
    _, second = await tenant.api.call(
        "POST", tenant.path("/sync-jobs"), json=job_body(first.source["id"], first.destination["id"], name="second")
    )
    _, accepted = await tenant.api.call("POST", tenant.path(f"/sync-jobs/{second['id']}/run"))
    status, body = await tenant.api.call(
        "GET", tenant.path(f"/sync-jobs/{first.job['id']}/runs?before={accepted['runId']}")
    )
    assert status == 404
    assert body["error"]["code"] == "not_found"
    _, first_runs = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{first.job['id']}/runs"))
    assert first_runs == {"runs": [], "next": None}


async def test_two_runs_asked_in_the_same_millisecond_are_two_runs(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    answers = [await tenant.api.call("POST", tenant.path(f"/sync-jobs/{setup.job['id']}/run")) for _ in range(3)]
    assert [status for status, _ in answers] == [202, 202, 202]
    assert len({body["runId"] for _, body in answers}) == 3
    assert await db.job_runs.count_documents({"jobId": ObjectId(setup.job["id"]), "trigger": "manual"}) == 3
