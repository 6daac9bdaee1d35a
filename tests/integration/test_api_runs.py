"""Runs over REST: one run (under its job and under its workspace), cancel, and the filtered run list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from syncjobs.shared.mongo import Database, connect
from syncjobs.shared.paging import PageRequest
from syncjobs.shared.store import run_history
from syncjobs.shared.store.api_tokens import create_token
from syncjobs.shared.store.job_runs import new_run_document
from syncjobs.shared.store.run_history import RunFilter

from tests.fixtures.command_log import CommandLog
from tests.fixtures.fake_clock import FakeClock
from tests.integration.test_api_helpers import JobSetup, Tenant, make_job, snapshot

pytest_plugins = ["tests.integration.test_api_helpers"]


async def _manual_run(tenant: Tenant, job_id: str) -> str:
    status, accepted = await tenant.api.call("POST", tenant.path(f"/sync-jobs/{job_id}/run"))
    assert status == 202, accepted
    return str(accepted["runId"])


async def _stored_run(db: Database, setup: JobSetup, **fields: Any) -> ObjectId:
    """A run as the worker writes it (scheduled, running, ended...), straight into the database."""
    job = await db.syncjobs.find_one({"_id": ObjectId(setup.job["id"])})
    assert job is not None
    doc = new_run_document(
        job,
        trigger=fields.pop("trigger", "schedule"),
        scheduled_for=fields.pop("scheduled_for"),
        now=fields.pop("now", datetime(2026, 1, 15, 12, tzinfo=UTC)),
    )
    doc.update(fields)
    await db.job_runs.insert_one(doc)
    return ObjectId(doc["_id"])


async def test_a_run_is_read_under_its_job_and_its_workspace_only(tenant: Tenant, other_tenant: Tenant) -> None:
    setup = await make_job(tenant)
    run_id = await _manual_run(tenant, setup.job["id"])
    by_job = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}/runs/{run_id}"))
    by_workspace = await tenant.api.call("GET", tenant.path(f"/runs/{run_id}"))
    assert by_job == by_workspace
    status, run = by_job
    assert status == 200
    assert (run["id"], run["jobId"], run["status"], run["trigger"]) == (run_id, setup.job["id"], "pending", "manual")
    assert run["cancelRequested"] is False
    for path in (other_tenant.path(f"/runs/{run_id}"), other_tenant.path(f"/runs/{run_id}/cancel")):
        method = "POST" if path.endswith("cancel") else "GET"
        assert (await other_tenant.api.call(method, path))[0] == 404
    other_job = await make_job(other_tenant)
    foreign = other_tenant.path(f"/sync-jobs/{other_job.job['id']}/runs/{run_id}")
    assert (await other_tenant.api.call("GET", foreign))[0] == 404
    assert (await tenant.api.call("GET", tenant.path(f"/runs/{ObjectId()}")))[0] == 404


async def test_cancel_of_a_pending_run_ends_it_at_once_and_an_ended_run_is_409(
    tenant: Tenant, db: Database, clock: FakeClock
) -> None:
    setup = await make_job(tenant)
    run_id = await _manual_run(tenant, setup.job["id"])
    clock.advance(timedelta(seconds=3))
    status, run = await tenant.api.call("POST", tenant.path(f"/sync-jobs/{setup.job['id']}/runs/{run_id}/cancel"))
    assert status == 200, run
    assert (run["status"], run["finishedAt"], run["error"]) == (
        "cancelled",
        "2026-01-15T12:00:03Z",
        "cancelled on request",
    )
    before = await snapshot(db)
    status, error = await tenant.api.call("POST", tenant.path(f"/runs/{run_id}/cancel"))
    assert status == 409, error
    assert error["error"]["details"] == [{"field": "status", "message": "already cancelled"}]
    assert await snapshot(db) == before
    job = await db.syncjobs.find_one({"_id": ObjectId(setup.job["id"])})
    assert job is not None and job["nextRunAt"] == datetime(2026, 1, 15, 13, tzinfo=UTC)  # cadence unchanged
    assert await db.job_runs.count_documents({}) == 1  # nothing retried


async def test_cancel_of_a_running_run_asks_its_replica(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    running = await _stored_run(db, setup, scheduled_for=datetime(2026, 1, 15, 12, tzinfo=UTC), status="running")
    status, run = await tenant.api.call("POST", tenant.path(f"/runs/{running}/cancel"))
    assert status == 200, run
    assert (run["status"], run["cancelRequested"]) == ("running", True)
    stored = await db.job_runs.find_one({"_id": running})
    assert stored is not None and (stored["status"], stored["cancelRequested"]) == ("running", True)


async def test_a_read_token_may_read_a_run_but_not_cancel_it(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    run_id = await _manual_run(tenant, setup.job["id"])
    reader = tenant.api.as_token(await create_token(db, ObjectId(tenant.id), "reader", scope="read"))
    assert (await reader.call("GET", tenant.path(f"/runs/{run_id}")))[0] == 200
    status, error = await reader.call("POST", tenant.path(f"/runs/{run_id}/cancel"))
    assert (status, error["error"]["code"]) == (403, "forbidden")
    assert (await db.job_runs.find_one({"_id": ObjectId(run_id)}) or {})["status"] == "pending"


async def _listed(tenant: Tenant, job_id: str, query: str) -> list[str]:
    """Every run id the filtered list gives, following `next` as `after` two at a time."""
    seen: list[str] = []
    after = ""
    while True:
        status, page = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{job_id}/runs?limit=2&{query}{after}"))
        assert status == 200, page
        seen += [run["id"] for run in page["runs"]]
        if page["next"] is None:
            return seen
        after = f"&after={page['next']}"


async def test_the_run_list_filters_by_status_trigger_and_scheduled_time(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    night = datetime(2026, 1, 14, tzinfo=UTC)
    made = {}
    for hour, outcome, trigger in (
        (1, "failed", "schedule"),
        (2, "succeeded", "schedule"),
        (3, "failed", "retry"),
        (4, "timed_out", "schedule"),
        (5, "failed", "schedule"),
        (9, "failed", "manual"),
    ):
        made[hour] = str(
            await _stored_run(
                db,
                setup,
                scheduled_for=night + timedelta(hours=hour),
                status=outcome,
                trigger=trigger,
                now=night + timedelta(hours=hour),
            )
        )
    job_id = setup.job["id"]
    # "The failed runs of last night", newest first, in pages of two.
    query = "status=failed&status=timed_out&from=2026-01-14T00:00:00Z&to=2026-01-14T06:00:00%2B00:00"
    assert await _listed(tenant, job_id, query) == [made[5], made[4], made[3], made[1]]
    assert await _listed(tenant, job_id, "trigger=schedule&status=failed") == [made[5], made[1]]
    assert await _listed(tenant, job_id, "trigger=manual&trigger=retry") == [made[9], made[3]]
    assert await _listed(tenant, job_id, "") == [made[h] for h in (9, 5, 4, 3, 2, 1)]
    for query, field in (
        ("status=exploded", "status"),
        ("trigger=cron", "trigger"),
        ("from=yesterday", "from"),
        ("to=2026-01-14T06:00:00", "to"),  # no offset
        ("from=2026-01-15T00:00:00Z&to=2026-01-14T00:00:00Z", "to"),
        ("limit=501", "limit"),
        ("limit=0", "limit"),
    ):
        status, error = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{job_id}/runs?{query}"))
        assert (status, error["error"]["details"][0]["field"]) == (422, field), query


async def _plan(db: Database, query: dict[str, Any]) -> str:
    """The winning plan of the run list's query on the test server, as text."""
    explained = await db.command(
        {
            "explain": {"find": "job_runs", "filter": query, "sort": {"createdAt": -1, "_id": -1}},
            "verbosity": "queryPlanner",
        }
    )
    return str(explained["queryPlanner"]["winningPlan"])


async def test_every_run_filter_is_served_by_an_index(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    job_id = ObjectId(setup.job["id"])
    hour = datetime(2026, 1, 14, tzinfo=UTC)
    for query in (
        {"jobId": job_id},
        {"jobId": job_id, "status": {"$in": ["failed", "timed_out"]}},
        {"jobId": job_id, "trigger": {"$in": ["manual"]}},
        {"jobId": job_id, "scheduledFor": {"$gte": hour, "$lt": hour + timedelta(hours=6)}},
    ):
        plan = await _plan(db, query)
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, (query, plan)


async def test_runs_of_one_millisecond_page_by_id_and_a_later_page_is_read_on_an_index(
    tenant: Tenant, db: Database, mongo_uri: str
) -> None:
    """Runs stored in the same millisecond (a leader's catch-up fires) page by id. A page after the first
    reads the anchor's millisecond, then the older runs: never a top-level `$or`, which SecantusDB answers
    with a scan of the whole collection; unfiltered, each read is planned on an index."""
    setup = await make_job(tenant)
    night = datetime(2026, 1, 14, tzinfo=UTC)
    older = [await _stored_run(db, setup, scheduled_for=night + timedelta(hours=h), now=night) for h in (1, 2)]
    same = [
        await _stored_run(db, setup, scheduled_for=night + timedelta(hours=h), now=night + timedelta(hours=5))
        for h in (3, 4, 5, 6, 7)
    ]
    expected = [str(run) for run in sorted(same, reverse=True) + sorted(older, reverse=True)]
    assert await _listed(tenant, setup.job["id"], "") == expected
    assert await _listed(tenant, setup.job["id"], "trigger=schedule") == expected
    log = CommandLog()
    client = connect(mongo_uri, event_listeners=[log])
    try:
        watched = client[db.name]
        job_id = ObjectId(setup.job["id"])
        for filters in (RunFilter(), RunFilter(triggers=("schedule",))):
            first = await run_history.list_runs(watched, job_id, PageRequest(limit=3), filters)
            log.clear()
            await run_history.list_runs(watched, job_id, PageRequest(limit=3, after=first.next), filters)
            finds = [sent.command for sent in log.sent if sent.name == "find"]
            reads = [find for find in finds if "_id" not in find["filter"]]  # the anchor's is by _id
            assert len(reads) == 2 and not any(key.startswith("$") for find in reads for key in find["filter"])
            for find in reads if not filters.triggers else []:
                query = {"find": "job_runs", "filter": find["filter"], "sort": find.get("sort")}
                explained = await db.command({"explain": query, "verbosity": "queryPlanner"})
                plan = str(explained["queryPlanner"]["winningPlan"])
                assert "IXSCAN" in plan and "COLLSCAN" not in plan, (find, plan)
    finally:
        await client.close()
