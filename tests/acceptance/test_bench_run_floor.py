"""bench/run_floor.py does what its figures claim, so it cannot rot: a syncjobs pass leaves every job's
fire succeeded, recorded on the run and on the job, and its document copied; an APScheduler pass writes
each job's state and copies the same document."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from syncjobs.shared.mongo import Database, ensure_indexes

from bench.run_floor import apscheduler_pass, syncjobs_pass
from bench.worker_support import job_docs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
JOBS = 6


async def test_a_floor_pass_writes_a_whole_run_life_per_job_and_the_peers_pass_its_writes(db: Database) -> None:
    await ensure_indexes(db)
    started = datetime.now(UTC)
    jobs = job_docs(JOBS, "0 * * * *", started)
    await db.syncjobs.insert_many(jobs)
    await db.source.insert_many([{"_id": i, "name": f"item {i}"} for i in range(JOBS)])

    await syncjobs_pass(db, jobs, slots=4)

    runs = await db.job_runs.find({}, {"jobId": 1, "status": 1, "claimedBy": 1}).to_list()
    assert sorted(run["jobId"] for run in runs) == sorted(job["_id"] for job in jobs)
    assert {run["status"] for run in runs} == {"succeeded"}
    for job in await db.syncjobs.find().to_list():
        assert (job["runCount"], job["lastStatus"]) == (1, "succeeded")
        assert job["nextRunAt"] > started
    for i in range(JOBS):
        assert await db[f"dest_{i}"].find_one() == {"_id": i, "name": f"item {i}"}

    await db.apscheduler_jobs.insert_many([{"_id": f"job-{i}", "next_run_time": 0.0} for i in range(JOBS)])
    await apscheduler_pass(db, jobs, threads=4)

    assert (
        await db.apscheduler_jobs.count_documents({"next_run_time": {"$gt": 0.0}, "job_state": {"$exists": True}})
        == JOBS
    )
