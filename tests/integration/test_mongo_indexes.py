from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database, ensure_indexes, index_plan


async def test_fire_key_is_unique(db: Database) -> None:
    run = {"jobId": ObjectId(), "scheduledFor": datetime(2026, 1, 1, tzinfo=UTC), "trigger": "schedule", "attempt": 1}
    await db.job_runs.insert_one(dict(run))
    with pytest.raises(DuplicateKeyError):
        await db.job_runs.insert_one(dict(run))


async def test_ensure_indexes_is_idempotent_and_applies_a_new_retention(db: Database) -> None:
    await ensure_indexes(db, run_retention_days=7)
    indexes = await db.job_runs.index_information()
    assert indexes["retention_ttl"]["expireAfterSeconds"] == 7 * 86400
    assert indexes["fire_key"]["unique"] is True


async def test_ensure_indexes_trims_an_older_index_set_and_leaves_other_indexes_alone(db: Database) -> None:
    """A database made before issue 22 carries a job_runs index the plan retired: it is dropped by name, once,
    and an index someone added by hand stays."""
    await db.job_runs.create_index([("workspaceId", 1), ("jobId", 1), ("startedAt", -1)], name="workspace_job_started")
    await db.job_runs.create_index([("details.source", 1)], name="mine")
    [plan] = [plan for plan in index_plan() if plan.collection == "job_runs"]
    planned = {str(index.document["name"]) for index in plan.indexes}
    await ensure_indexes(db)
    await ensure_indexes(db)
    assert set(await db.job_runs.index_information()) == planned | {"_id_", "mine"}


async def test_the_workers_scans_of_active_runs_are_served_by_an_index(db: Database) -> None:
    """The pending runs a claimer reads; the running runs of the lost-run sweep and of the per-workspace cap."""
    for query in ({"status": RunStatus.PENDING}, {"status": RunStatus.RUNNING}):
        explained = await db.command({"explain": {"find": "job_runs", "filter": query}, "verbosity": "queryPlanner"})
        plan = str(explained["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, (query, plan)


async def test_a_retired_index_the_user_may_not_drop_is_kept_and_the_start_goes_on(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await db.job_runs.create_index([("workspaceId", 1), ("jobId", 1), ("startedAt", -1)], name="workspace_job_started")

    async def refused(self: AsyncCollection[Any], name: str) -> None:
        raise OperationFailure("not authorized on t to execute command { dropIndexes: ... }", code=13)

    monkeypatch.setattr(AsyncCollection, "drop_index", refused)
    await ensure_indexes(db)
    assert "workspace_job_started" in await db.job_runs.index_information()
