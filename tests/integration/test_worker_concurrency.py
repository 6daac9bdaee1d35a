"""Runs side by side: overlap `allow` runs a job's fires together, and SYNCJOBS_MAX_CONCURRENT_RUNS caps
how many executors the leader runs at once, the rest starting as slots free."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import Settings

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_harness import ONCE_AT_T0_PLUS_5S, T0, Harness, leadership_harness, overlapping_fires
from tests.fixtures.worker_jobs import file_written, make_job, runs_of


@pytest.fixture
async def harness(db: Database, settings: Settings) -> AsyncIterator[Harness]:
    async with leadership_harness(db, settings) as running:
        yield running


async def test_overlap_allow_runs_two_fires_of_one_job_at_once(harness: Harness, db: Database, tmp_path: Path) -> None:
    release = tmp_path / "release"
    job = await overlapping_fires(harness, release, overlap="allow")
    both = await eventually(lambda: _runs_if(db, job["_id"], ["running", "running"]))
    assert [run["scheduledFor"] for run in both] == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=10)]
    release.touch()
    done = await eventually(lambda: _runs_if(db, job["_id"], ["succeeded", "succeeded"]))
    assert [run["trigger"] for run in done] == ["schedule", "schedule"]


async def _runs_if(db: Database, job_id: ObjectId, statuses: list[str]) -> list[Document] | None:
    runs = await runs_of(db, job_id)
    return runs if [run["status"] for run in runs] == statuses else None


async def test_at_most_max_concurrent_runs_executors_run_and_the_rest_start_as_slots_free(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    gates = {(await make_job(db, f"gate:{tmp_path / str(i)}", ONCE_AT_T0_PLUS_5S, T0))["_id"]: i for i in range(5)}
    harness.settings = harness.settings.with_overrides(max_concurrent_runs=2)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    for finished in range(5):
        running = min(2, 5 - finished)
        expected = {"succeeded": finished, "running": running, "pending": 5 - finished - running}
        runs = await eventually(lambda expected=expected: _runs_by_status(db, expected))  # type: ignore[misc]
        gated = [tmp_path / str(gates[run["jobId"]]) for run in runs if run["status"] == "running"]
        await eventually(lambda gated=gated: _all_written([path.with_suffix(".seen") for path in gated]))
        gated[0].with_suffix(".release").touch()
    done = await eventually(lambda: _runs_by_status(db, {"succeeded": 5}))
    assert Counter(run["jobId"] for run in done) == Counter(gates.keys())  # one run per job: none lost, none doubled
    alive_at_start = [int((tmp_path / f"{i}.seen").read_text()) for i in range(5)]
    assert max(alive_at_start) == 2, alive_at_start


async def _all_written(paths: list[Path]) -> bool:
    """Each running run's executor has passed into its gate (so they are alive together)."""
    return all([await file_written(path) for path in paths])


async def _runs_by_status(db: Database, expected: dict[str, int]) -> list[Document] | None:
    """All runs, once their statuses count as `expected` (statuses not named count 0)."""
    runs = await db.job_runs.find({}).sort("_id", 1).to_list()
    counts = Counter(run["status"] for run in runs)
    return runs if counts == Counter({k: v for k, v in expected.items() if v}) else None
