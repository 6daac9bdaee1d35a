"""GET .../fires: every fire of a range with what became of it (audit) or that it is upcoming, with DST notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.job_runs import new_run_document

from tests.integration.test_api_helpers import Tenant, create, job_body, make_job

pytest_plugins = ["tests.integration.test_api_helpers"]

NIGHT = datetime(2026, 1, 15, 0, tzinfo=UTC)  # the test clock is at 12:00 that day


async def test_fires_say_what_became_of_each_and_what_is_upcoming(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)  # hourly, next at 13:00
    job = await db.syncjobs.find_one({"_id": ObjectId(setup.job["id"])})
    assert job is not None
    made: dict[tuple[int, str], ObjectId] = {}
    for hour, trigger, status, attempt in (
        (0, "schedule", "succeeded", 1),
        (1, "schedule", "failed", 1),
        (1, "retry", "succeeded", 2),
        (2, "schedule", "skipped", 1),
        (3, "schedule", "missed", 1),
        (4, "schedule", "skipped", 1),
        (4, "backfill", "running", 1),
    ):
        fire = NIGHT + timedelta(hours=hour)
        doc = new_run_document(
            job,
            trigger=trigger,
            scheduled_for=fire,
            attempt=attempt,
            status=status,
            now=fire + timedelta(minutes=attempt),
        )
        await db.job_runs.insert_one(doc)
        made[(hour, trigger)] = doc["_id"]
    status, page = await tenant.api.call(
        "GET", tenant.path(f"/sync-jobs/{setup.job['id']}/fires?from=2026-01-15T00:00:00Z&to=2026-01-15T15:00:00Z")
    )
    assert status == 200, page
    assert page["next"] is None
    by_hour = {datetime.fromisoformat(item["scheduledFor"]).hour: item for item in page["items"]}
    assert sorted(by_hour) == list(range(15))

    def outcome(hour: int) -> tuple[Any, ...]:
        item = by_hour[hour]
        return item["outcome"], item["reason"], item["runId"]

    assert outcome(0) == ("succeeded", None, str(made[(0, "schedule")]))
    assert outcome(1) == ("succeeded", None, str(made[(1, "retry")]))  # the retry is what became of it
    assert outcome(2) == ("skipped", "overlap", str(made[(2, "schedule")]))
    assert outcome(3) == ("missed", "no_leader", str(made[(3, "schedule")]))
    assert outcome(4) == ("running", None, str(made[(4, "backfill")]))
    assert outcome(5) == ("missed", "not_recorded", None)
    assert [by_hour[hour]["outcome"] for hour in (12, 13, 14)] == ["missed", "upcoming", "upcoming"]
    assert by_hour[13]["wallTime"] == "2026-01-15T13:00:00+00:00"
    assert all(item["dst"] is None for item in page["items"])


async def test_future_fires_carry_dst_notes(tenant: Tenant) -> None:
    setup = await make_job(tenant)
    notes = {}
    for name, cron in (("spring", "30 2 * * *"), ("autumn", "30 1 * * *")):
        body = job_body(
            setup.source["id"],
            setup.destination["id"],
            name=name,
            schedule={"cron": cron, "timezone": "America/New_York"},
        )
        job = await create(tenant.api, tenant.path("/sync-jobs"), body)
        status, page = await tenant.api.call(
            "GET",
            tenant.path(f"/sync-jobs/{job['id']}/fires?from=2026-03-07T00:00:00-05:00&to=2026-11-03T00:00:00-05:00"),
        )
        assert status == 200, page
        notes[name] = {item["wallTime"]: item["dst"] for item in page["items"] if item["dst"]}
        assert all(item["outcome"] == "upcoming" for item in page["items"])
    # 02:30 does not exist on 8 March in New York: the fire moves to 03:00 EDT, the end of the gap.
    assert notes["spring"] == {"2026-03-08T03:00:00-04:00": "gap_shifted"}
    # 01:30 happens twice on 1 November: it fires once, at the first (EDT), marked as a repeated hour.
    assert notes["autumn"] == {"2026-11-01T01:30:00-04:00": "repeated_hour"}


async def test_long_ranges_page_and_bad_ranges_are_422(tenant: Tenant, other_tenant: Tenant) -> None:
    setup = await make_job(tenant, schedule={"cron": "* * * * *", "timezone": "UTC"})
    fires = tenant.path(f"/sync-jobs/{setup.job['id']}/fires")
    query = "?from=2026-01-15T12:00:00Z&to=2026-01-16T00:00:00Z"  # 720 minutes
    status, first = await tenant.api.call("GET", fires + "?from=2026-01-15T00:00:00Z&to=2026-01-16T00:00:00Z")
    assert (status, len(first["items"])) == (200, 1000)
    status, rest = await tenant.api.call(
        "GET", fires + f"?from=2026-01-15T00:00:00Z&to=2026-01-16T00:00:00Z&after={first['next']}"
    )
    assert (status, len(rest["items"]), rest["next"]) == (200, 440, None)
    assert rest["items"][0]["scheduledFor"] == "2026-01-15T16:40:00Z"
    assert (await tenant.api.call("GET", fires + query))[0] == 200
    for bad, field in (
        ("?from=2026-01-15T12:00:00Z", "to"),
        ("?to=2026-01-15T12:00:00Z&from=2026-01-16T00:00:00Z", "to"),
        ("?from=x&to=y", "from"),
    ):
        status, error = await tenant.api.call("GET", fires + bad)
        assert (status, error["error"]["details"][0]["field"]) == (422, field), bad
    foreign = other_tenant.path(f"/sync-jobs/{setup.job['id']}/fires{query}")
    assert (await other_tenant.api.call("GET", foreign))[0] == 404
