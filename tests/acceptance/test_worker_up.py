"""`syncjobs up` runs a job every 5 seconds, with the real executor, and its runs show in its status."""

from __future__ import annotations

import time

import pytest
from pymongo import MongoClient

from tests.acceptance.test_up import RunningStack, stack  # noqa: F401 - the `syncjobs up` fixture

pytestmark = pytest.mark.slow


def test_a_job_every_five_seconds_runs_and_shows_in_status(stack: RunningStack) -> None:  # noqa: F811
    with MongoClient(stack.database_uri) as mongo:
        mongo.crm.customers.insert_many([{"_id": i, "name": f"customer {i}"} for i in range(3)])
    ws = f"/api/workspaces/{stack.workspace_id}"
    _, source = stack.request(
        "POST",
        f"{ws}/data-sources",
        {"name": "crm", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "crm"}},
    )
    _, destination = stack.request(
        "POST",
        f"{ws}/destinations",
        {"name": "warehouse", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "warehouse"}},
    )
    _, job = stack.request(
        "POST",
        f"{ws}/sync-jobs",
        {
            "name": "every-5s",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "*/5 * * * * *", "timezone": "Europe/Paris"},
        },
    )

    deadline = time.monotonic() + 90
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        _, status = stack.request("GET", f"{ws}/sync-jobs/{job['id']}/status")
        finished = [run for run in status["recentRuns"] if run["status"] == "succeeded"]  # type: ignore[union-attr]
        if len(finished) >= 2:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"fewer than two succeeded runs within 90 s: {status}")
    assert status["lastStatus"] == "succeeded"
    scheduled = [run["scheduledFor"] for run in finished]
    assert len(set(scheduled)) == len(scheduled)
    assert all(run["trigger"] == "schedule" and run["stats"] for run in finished)
    with MongoClient(stack.database_uri) as mongo:
        assert mongo.warehouse.customers.count_documents({}) == 3
