"""`/monitoring`, `/monitoring/cleanup` and `/metrics` over HTTP, on the real app."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId
from syncjobs.shared.alerts import Alert
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.webhooks import open_alert

from tests.integration.monitoring_helpers import insert_runs
from tests.integration.test_api_helpers import (
    START,
    Api,
    Tenant,
    make_job,
)

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_monitoring_reports_stats_alerts_and_recent_runs_per_job(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    job = await db.syncjobs.find_one({"_id": ObjectId(setup.job["id"])})
    assert job is not None
    await insert_runs(
        db, job, ["succeeded", "failed", "failed", "timed_out"], START - timedelta(hours=2), duration_ms=1500
    )
    await insert_runs(db, job, ["failed"] * 5, START - timedelta(hours=30))  # outside the default 24 h

    status, body = await tenant.api.call("GET", tenant.path("/monitoring"))
    assert status == 200, body
    assert body["timeRange"] == {"hours": 24, "since": (START - timedelta(hours=24)).isoformat()}
    [stats] = body["stats"]
    assert stats == {
        "jobId": setup.job["id"],
        "jobName": "orders-hourly",
        "totalExecutions": 4,
        "successCount": 1,
        "failureCount": 3,
        "skippedCount": 0,
        "missedCount": 0,
        "successRate": 0.25,
        "averageDurationMs": 1500.0,
        "lastExecution": (START - timedelta(hours=2) + timedelta(minutes=15)).isoformat(),
        "lastStatus": "timed_out",
        "consecutiveFailures": 3,
    }
    assert [(a["jobId"], a["kind"]) for a in body["alerts"]] == [(setup.job["id"], "consecutive_failures")]
    assert body["alerts"][0]["since"] == (START - timedelta(hours=2) + timedelta(minutes=5)).isoformat()
    recent = body["recentExecutions"][setup.job["id"]]
    assert [run["status"] for run in recent] == ["timed_out", "failed", "failed", "succeeded"]
    assert "_id" not in recent[0] and recent[0]["jobId"] == setup.job["id"]

    status, week = await tenant.api.call("GET", tenant.path("/monitoring?timeRange=168"))
    assert status == 200 and week["stats"][0]["totalExecutions"] == 9
    assert {a["kind"] for a in week["alerts"]} == {"consecutive_failures", "high_failure_rate"}


async def test_time_range_outside_1_to_168_hours_is_a_422_naming_it(tenant: Tenant) -> None:
    for bad in ("0", "169", "abc", "-5", "2.5"):
        status, body = await tenant.api.call("GET", tenant.path(f"/monitoring?timeRange={bad}"))
        assert status == 422, (bad, body)
        assert body["error"]["details"][0]["field"] == "timeRange"


async def test_another_workspace_sees_neither_the_report_nor_the_cleanup(tenant: Tenant, other_tenant: Tenant) -> None:
    assert (await other_tenant.api.call("GET", tenant.path("/monitoring")))[0] == 404
    status, _ = await other_tenant.api.call("POST", tenant.path("/monitoring/cleanup"), json={"retentionDays": 1})
    assert status == 404


async def test_cleanup_deletes_this_workspaces_older_runs_and_says_how_many(
    tenant: Tenant, other_tenant: Tenant, db: Database
) -> None:
    ours = await db.syncjobs.find_one({"_id": ObjectId((await make_job(tenant)).job["id"])})
    theirs = await db.syncjobs.find_one({"_id": ObjectId((await make_job(other_tenant)).job["id"])})
    assert ours is not None and theirs is not None
    await insert_runs(db, ours, ["succeeded", "failed", "missed"], START - timedelta(days=10))
    await insert_runs(db, ours, ["succeeded"], START - timedelta(days=2))
    await insert_runs(db, theirs, ["succeeded"], START - timedelta(days=10))

    status, body = await tenant.api.call("POST", tenant.path("/monitoring/cleanup"), json={"retentionDays": 7})
    assert status == 200, body
    assert body == {"deletedCount": 3, "retentionDays": 7, "before": (START - timedelta(days=7)).isoformat()}
    assert await db.job_runs.count_documents({"jobId": ours["_id"]}) == 1
    assert await db.job_runs.count_documents({"jobId": theirs["_id"]}) == 1

    status, body = await tenant.api.call("POST", tenant.path("/monitoring/cleanup"), json={"retentionDays": 0})
    assert status == 422 and body["error"]["details"][0]["field"] == "retentionDays"


WORKER_ONLY_SERIES = (
    "syncjobs_lease_held",
    "syncjobs_executors_running",
    "syncjobs_runs_total",
    "syncjobs_run_duration_seconds",
    "syncjobs_fire_lag_seconds",
    "syncjobs_change_stream_reconnects",
    "syncjobs_webhook_deliveries",
    "syncjobs_clock_offset_seconds",
)


async def test_metrics_are_open_and_count_stored_runs_and_open_alerts_without_job_names(
    api: Api, tenant: Tenant, db: Database
) -> None:
    job = await db.syncjobs.find_one({"_id": ObjectId((await make_job(tenant)).job["id"])})
    assert job is not None
    await insert_runs(db, job, ["failed", "failed", "succeeded"], START - timedelta(hours=1))
    await open_alert(db, job["workspaceId"], Alert(str(job["_id"]), "missed_runs", "1 fire not run", START), START)

    status, text = await api.call("GET", "/metrics", token=None)
    assert status == 200
    assert 'syncjobs_stored_runs{status="failed"} 2.0' in text
    assert 'syncjobs_stored_runs{status="succeeded"} 1.0' in text
    assert 'syncjobs_stored_runs{status="missed"} 0.0' in text
    assert 'syncjobs_open_alerts{kind="missed_runs"} 1.0' in text
    assert 'syncjobs_open_alerts{kind="consecutive_failures"} 0.0' in text
    assert "process_resident_memory_bytes" in text
    assert "orders-hourly" not in text and job["name"] not in text and tenant.id not in text
    assert str(job["_id"]) not in text


async def test_the_api_metrics_show_no_worker_series(api: Api) -> None:
    """An api holds no lease and runs no executor: it must not report `syncjobs_lease_held 0`."""
    status, text = await api.call("GET", "/metrics", token=None)
    assert status == 200 and "syncjobs_stored_runs" in text
    assert [name for name in WORKER_ONLY_SERIES if name in text] == []
