"""Backfill over REST: the scheduled fires of a past range become pending `backfill` runs, oldest first; a
fire that already ran is not run again; at most 1,000 fires a call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.api_tokens import create_token
from syncjobs.shared.store.job_runs import new_run_document

from tests.integration.test_api_helpers import Tenant, make_job, snapshot

pytest_plugins = ["tests.integration.test_api_helpers"]

NIGHT = datetime(2026, 1, 15, 0, tzinfo=UTC)  # the test clock is at 12:00 that day


async def test_backfill_of_a_half_ran_range_creates_only_the_other_half(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)  # hourly
    job = await db.syncjobs.find_one({"_id": ObjectId(setup.job["id"])})
    assert job is not None
    # 00:00-03:00 ran (one failed: it ran all the same); 04:00 was skipped; 05:00 missed while no one led.
    for hour, status in (
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "failed"),
        (3, "succeeded"),
        (4, "skipped"),
        (5, "missed"),
    ):
        fire = NIGHT + timedelta(hours=hour)
        await db.job_runs.insert_one(
            new_run_document(job, trigger="schedule", scheduled_for=fire, status=status, now=fire)
        )
    backfill = tenant.path(f"/sync-jobs/{setup.job['id']}/backfill")
    status, result = await tenant.api.call(
        "POST", backfill, json={"from": "2026-01-15T00:00:00Z", "to": "2026-01-15T08:00:00+00:00"}
    )
    assert (status, result) == (202, {"fires": 8, "created": 4, "skipped": 4})
    made = await db.job_runs.find({"trigger": "backfill"}).sort("createdAt", 1).to_list()
    assert [run["scheduledFor"].hour for run in made] == [4, 5, 6, 7]  # in creation order: oldest first
    assert {(run["status"], run["exclusive"], run["attempt"]) for run in made} == {("pending", True, 1)}
    before = await snapshot(db)
    again = await tenant.api.call("POST", backfill, json={"from": "2026-01-15T00:00:00Z", "to": "2026-01-15T08:00:00Z"})
    assert again == (202, {"fires": 8, "created": 0, "skipped": 8})
    assert await snapshot(db) == before
    status, page = await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}/runs?trigger=backfill"))
    assert (status, len(page["runs"])) == (200, 4)
    status, side_by_side = await tenant.api.call(
        "POST", backfill, json={"from": "2026-01-15T08:00:00Z", "to": "2026-01-15T10:00:00Z", "overlap": "allow"}
    )
    assert side_by_side == {"fires": 2, "created": 2, "skipped": 0}
    assert await db.job_runs.count_documents({"trigger": "backfill", "exclusive": False}) == 2


async def test_bad_backfills_are_refused_and_write_nothing(tenant: Tenant, other_tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant, schedule={"cron": "* * * * *", "timezone": "UTC"})  # every minute
    backfill = tenant.path(f"/sync-jobs/{setup.job['id']}/backfill")
    reader = tenant.api.as_token(await create_token(db, ObjectId(tenant.id), "reader", scope="read"))
    before = await snapshot(db)
    for body, field, words in (
        ({"from": "2026-01-14T00:00:00Z", "to": "2026-01-15T00:00:00Z"}, "to", "1440 fires"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-15T00:00:00Z"}, "to", "more than 10000 fires"),
        ({"from": "2026-01-15T01:00:00Z", "to": "2026-01-15T00:00:00Z"}, "to", "after"),
        ({"from": "2026-01-15T11:00:00Z", "to": "2026-01-15T13:00:00Z"}, "to", "future"),
        ({"from": "2026-01-15T00:00:00", "to": "2026-01-15T01:00:00Z"}, "from", ""),
        ({"from": "2026-01-15T00:00:00Z"}, "to", ""),
        ({"from": "2026-01-15T00:00:00Z", "to": "2026-01-15T01:00:00Z", "overlap": "never"}, "overlap", ""),
    ):
        status, error = await tenant.api.call("POST", backfill, json=body)
        assert (status, error["error"]["details"][0]["field"]) == (422, field), (body, error)
        assert words in error["error"]["message"], error
    ok = {"from": "2026-01-15T00:00:00Z", "to": "2026-01-15T01:00:00Z"}
    assert (await reader.call("POST", backfill, json=ok))[0] == 403
    foreign = other_tenant.path(f"/sync-jobs/{setup.job['id']}/backfill")
    assert (await other_tenant.api.call("POST", foreign, json=ok))[0] == 404
    assert await snapshot(db) == before
