"""The executor's definition of done, as a user sees it: `syncjobs up`, a job made through the API, runs
started with `POST .../run`, and the counts read back from the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from syncjobs.shared.models import FINISHED_STATUSES

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack

pytestmark = pytest.mark.slow

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def run_to_end(stack: UpStack, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """POST .../run, then follow the job's runs until that one has finished (a real worker in another process:
    nothing to await but its writes)."""
    run_id = stack.call("POST", stack.ws(f"/sync-jobs/{job_id}/run"))["runId"]

    def finished() -> dict[str, Any] | None:
        runs = {run["id"]: run for run in stack.call("GET", stack.ws(f"/sync-jobs/{job_id}/runs?limit=10"))["runs"]}
        run = runs.get(run_id, {})
        return run if run.get("status") in FINISHED_STATUSES else None

    return eventually_blocking(finished, f"run {run_id} to finish", within=timeout, every=0.2)


def counts(run: dict[str, Any], entity: str) -> tuple[int, ...]:
    stats = run["stats"]["entities"][entity]
    return tuple(stats[k] for k in ("read", "inserted", "updated", "deleted", "unchanged", "failed"))


def test_a_job_made_through_the_api_syncs_and_resyncs_exactly_the_edits(stack: UpStack) -> None:
    suffix = uuid.uuid4().hex[:8]
    crm, full_dest, incr_dest = f"crm_{suffix}", f"warehouse_{suffix}", f"lake_{suffix}"
    with MongoClient(stack.database_uri) as client:
        source = client[crm]
        source.customers.insert_many(
            [{"_id": i, "name": f"c{i}", "updatedAt": T0 + timedelta(minutes=i)} for i in range(20)]
        )
        source.orders.insert_many([{"_id": i, "customer": i % 5, "updatedAt": T0} for i in range(10)])
        source.notes.insert_many([{"_id": i} for i in range(5)])

        data_source = stack.call(
            "POST",
            stack.ws("/data-sources"),
            {"name": "crm", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": crm}},
        )
        jobs = {}
        for mode, dest_name in (("full", full_dest), ("incremental", incr_dest)):
            destination = stack.call(
                "POST",
                stack.ws("/destinations"),
                {"name": dest_name, "kind": "mongodb", "config": {"uri": stack.database_uri, "database": dest_name}},
            )
            jobs[mode] = stack.call(
                "POST",
                stack.ws("/sync-jobs"),
                {
                    "name": f"crm-{mode}",
                    "dataSourceId": data_source["id"],
                    "destinationDatabaseId": destination["id"],
                    "schedule": {"cron": "0 0 1 1 *"},
                    "syncMode": mode,
                    "entities": {"include": ["customers", "orders"]},
                },
            )["id"]

        first = run_to_end(stack, jobs["full"])
        assert first["status"] == "succeeded", first
        assert counts(first, "customers") == (20, 20, 0, 0, 0, 0)
        assert counts(first, "orders") == (10, 10, 0, 0, 0, 0)
        assert sorted(first["stats"]["entities"]) == ["customers", "orders"]
        status = stack.call("GET", stack.ws(f"/sync-jobs/{jobs['full']}/status"))
        assert status["lastStatus"] == "succeeded"
        assert status["recentRuns"][0]["stats"]["totals"]["inserted"] == 30
        assert sorted(client[full_dest].list_collection_names()) == ["customers", "orders"]
        assert run_to_end(stack, jobs["incremental"])["stats"]["totals"]["inserted"] == 30

        later = T0 + timedelta(days=1)
        source.customers.update_many({"_id": {"$in": [3, 4]}}, {"$set": {"name": "edited", "updatedAt": later}})
        source.customers.insert_one({"_id": 100, "name": "new", "updatedAt": later})
        source.orders.delete_one({"_id": 7})

        second = run_to_end(stack, jobs["full"])
        assert second["status"] == "succeeded", second
        assert counts(second, "customers") == (21, 1, 2, 0, 18, 0)
        assert counts(second, "orders") == (9, 0, 0, 1, 9, 0)
        assert {d["entity"]: d["status"] for d in second["details"]} == {"customers": "updated", "orders": "updated"}
        synced = {doc["_id"]: doc for doc in client[full_dest].customers.find()}
        assert synced[3]["name"] == synced[4]["name"] == "edited" and 100 in synced
        assert client[full_dest].orders.count_documents({}) == 9

        incremental = run_to_end(stack, jobs["incremental"])
        assert incremental["status"] == "succeeded", incremental
        assert counts(incremental, "customers") == (3, 1, 2, 0, 0, 0)
        assert counts(incremental, "orders") == (0, 0, 0, 0, 0, 0)
        assert {d["entity"]: d["status"] for d in incremental["details"]} == {
            "customers": "updated",
            "orders": "unchanged",
        }
