"""`syncjobs up` runs a job every 5 seconds, with the real executor, and its runs show in its status."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import MongoClient

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack

pytestmark = pytest.mark.slow


def test_a_job_every_five_seconds_runs_and_shows_in_status(stack: UpStack) -> None:
    with MongoClient(stack.database_uri) as mongo:
        mongo.crm.customers.insert_many([{"_id": i, "name": f"customer {i}"} for i in range(3)])
    ws = f"/api/workspaces/{stack.workspace_id}"
    source, destination = stack.crm_to_warehouse()
    job = stack.call(
        "POST",
        f"{ws}/sync-jobs",
        {
            "name": "every-5s",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "*/5 * * * * *", "timezone": "Europe/Paris"},
        },
    )

    def two_succeeded() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        status = stack.call("GET", f"{ws}/sync-jobs/{job['id']}/status")
        finished = [run for run in status["recentRuns"] if run["status"] == "succeeded"]
        return (status, finished) if len(finished) >= 2 else None

    status, finished = eventually_blocking(two_succeeded, "two succeeded runs", within=90, every=0.5)
    assert status["lastStatus"] == "succeeded"
    scheduled = [run["scheduledFor"] for run in finished]
    assert len(set(scheduled)) == len(scheduled)
    assert all(run["trigger"] == "schedule" and run["stats"] for run in finished)
    with MongoClient(stack.database_uri) as mongo:
        assert mongo.warehouse.customers.count_documents({}) == 3
