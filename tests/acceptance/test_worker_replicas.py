"""Every replica executes: real `syncjobs worker` processes share a burst of due jobs, a job's overlap
policy holds across replicas, and a replica SIGKILLed mid-run loses only its own run, which the leader
fails as `worker lost` and retries on another replica."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from syncjobs.shared.models import SyncJob, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.store import job_runs

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_jobs import make_job, runs_of
from tests.fixtures.worker_processes import Workers

pytestmark = pytest.mark.slow
ONE_SLOT = {"SYNCJOBS_MAX_CONCURRENT_RUNS": "1"}


async def _lease(db: Database) -> Document | None:
    return await db.worker_locks.find_one({"_id": "scheduler"})


async def _logged(workers: Workers, worker_id: str, event: str) -> bool:
    return event in workers.log(worker_id)


async def _start_three(workers: Workers, db: Database, **settings: str) -> None:
    """w1 leads, w2 and w3 stand by (and claim)."""
    workers.start("w1", **settings)
    await eventually(lambda: _lease(db))
    for worker_id in ("w2", "w3"):
        workers.start(worker_id, **settings)
        await eventually(lambda worker_id=worker_id: _logged(workers, worker_id, "standing_by"))  # type: ignore[misc]


def _cron_at(instant: datetime) -> str:
    return f"{instant.second} {instant.minute} {instant.hour} {instant.day} {instant.month} *"


async def test_thirty_jobs_due_at_once_run_on_several_replicas_and_none_twice(workers: Workers, db: Database) -> None:
    await _start_three(workers, db)
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    jobs = [(await make_job(db, f"sleep:0.5{i:02d}", _cron_at(due), datetime.now(UTC)))["_id"] for i in range(30)]
    assert await eventually(lambda: _count(db, {"status": "succeeded"}, 30), within=90)
    runs = await db.job_runs.find({}).to_list()
    assert len(runs) == 30, [run["status"] for run in runs]
    assert Counter(run["jobId"] for run in runs) == Counter(jobs)  # one run per job: none lost, none twice
    assert {run["scheduledFor"] for run in runs} == {due}
    assert {run["trigger"] for run in runs} == {"schedule"}
    by_replica = Counter(run["workerId"] for run in runs)
    assert len(by_replica) >= 2, by_replica
    assert (await _lease(db) or {})["owner"] == "w1"


async def _count(db: Database, query: Document, expected: int) -> bool:
    return await db.job_runs.count_documents(query) >= expected


async def test_overlap_skip_skips_a_fire_claimed_by_another_replica(
    workers: Workers, db: Database, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await _start_three(workers, db, **ONE_SLOT)
    job = await make_job(db, f"wait:{release}", "*/2 * * * * *", datetime.now(UTC))
    [first] = await eventually(lambda: runs_of(db, job["_id"], status="running"))
    await eventually(lambda: _count(db, {"jobId": job["_id"], "status": "skipped"}, 2), within=30)
    others = [worker_id for worker_id in ("w1", "w2", "w3") if worker_id != first["workerId"]]
    assert any("fire_skipped" in workers.log(worker_id) for worker_id in others)  # the runner's slot is full
    assert [run["_id"] for run in await runs_of(db, job["_id"], status="running")] == [first["_id"]]
    skipped = await runs_of(db, job["_id"], status="skipped")
    assert all(run["scheduledFor"] > first["scheduledFor"] for run in skipped)
    assert {run["error"] for run in skipped} == {"skipped: the previous run is still going"}
    release.touch()
    done = await eventually(lambda: db.job_runs.find_one({"_id": first["_id"], "status": "succeeded"}))
    assert done["workerId"] == first["workerId"]


async def test_sigkill_of_a_standby_fails_its_run_as_lost_and_retries_it_elsewhere(
    workers: Workers, db: Database, tmp_path: Path
) -> None:
    keep_going, victim_gate = tmp_path / "keep-going", tmp_path / "victim"
    workers.start("w1", **ONE_SLOT)
    lease = await eventually(lambda: _lease(db))
    bystander = await _manual_run(db, await make_job(db, f"wait:{keep_going}", "0 0 1 1 *", datetime.now(UTC)))
    await eventually(lambda: db.job_runs.find_one({"_id": bystander, "status": "running", "workerId": "w1"}))
    workers.start("w2", **ONE_SLOT)
    await eventually(lambda: _logged(workers, "w2", "standing_by"))
    retry = {"maxAttempts": 2, "backoffSeconds": 0}
    victim_job = await make_job(db, f"wait:{victim_gate}", "0 0 1 1 *", datetime.now(UTC), retry=retry)
    victim = await _manual_run(db, victim_job)
    await eventually(lambda: db.job_runs.find_one({"_id": victim, "status": "running", "workerId": "w2"}))
    workers.start("w3", **ONE_SLOT)
    await eventually(lambda: _logged(workers, "w3", "standing_by"))

    workers.processes["w2"].send_signal(signal.SIGKILL)
    workers.processes["w2"].wait()
    lost = await eventually(lambda: db.job_runs.find_one({"_id": victim, "status": "failed"}), within=20)
    assert lost["error"] == "worker lost"
    again = await eventually(lambda: _running_retry(db, victim_job["_id"]), within=20)
    assert (again["attempt"], again["workerId"]) == (2, "w3")

    still = await db.job_runs.find_one({"_id": bystander})
    assert still is not None and (still["status"], still["workerId"]) == ("running", "w1")
    now_lease = await _lease(db) or {}
    assert (now_lease["owner"], now_lease["fencingToken"]) == ("w1", lease["fencingToken"])
    victim_gate.touch()
    keep_going.touch()
    assert await eventually(lambda: _count(db, {"status": "succeeded"}, 2))
    statuses = sorted((run["trigger"], run["status"]) for run in await db.job_runs.find({}).to_list())
    assert statuses == [("manual", "failed"), ("manual", "succeeded"), ("retry", "succeeded")]


async def _manual_run(db: Database, job: Document) -> ObjectId:
    run = await job_runs.create_manual_run(db, from_document(SyncJob, job), datetime.now(UTC))
    return ObjectId(run.id)


async def _running_retry(db: Database, job_id: ObjectId) -> Document | None:
    return await db.job_runs.find_one({"jobId": job_id, "trigger": "retry", "status": "running"})
