"""The active worker against a real server, with the fake executor and a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect, OperationFailure
from syncjobs.shared.models import SyncJob, SyncJobInput, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import job_runs, sync_jobs
from syncjobs.shared.store.job_runs import Claimant

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_harness import ONCE_AT_T0_PLUS_5S, T0, Harness, leadership_harness, overlapping_fires
from tests.fixtures.worker_jobs import make_job, process_gone, runs_of


@pytest.fixture
async def harness(db: Database, settings: Settings) -> AsyncIterator[Harness]:
    async with leadership_harness(db, settings) as running:
        yield running


async def test_a_due_job_fires_once_and_its_outcome_lands_on_run_and_job(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "*/5 * * * * *", T0)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    run = await eventually(lambda: harness.run_with(job["_id"], status="succeeded"))
    assert run["scheduledFor"] == T0 + timedelta(seconds=5)
    assert (run["trigger"], run["attempt"], run["exitCode"]) == ("schedule", 1, 0)
    assert run["stats"] == {"read": 1}
    assert run["details"] == [{"entity": "users"}]
    assert run["fencingToken"] == harness.lease.fencing_token
    assert run["workerId"] == "test-worker"
    stored = await eventually(lambda: _job_if_last(db, job["_id"], "succeeded"))
    assert stored["lastError"] is None
    assert stored["lastDurationMs"] == run["durationMs"]
    assert stored["averageDurationMs"] == run["durationMs"]
    assert stored["nextRunAt"] == T0 + timedelta(seconds=10)
    assert len(await runs_of(db, job["_id"])) == 1


async def _job_if_last(db: Database, job_id: ObjectId, status: str) -> Document | None:
    """The job once its lastStatus is `status`: the job is written just after the run."""
    job = await sync_jobs.get_job_doc(db, job_id)
    return job if job["lastStatus"] == status else None


async def test_concurrent_claims_of_one_fire_create_one_run(db: Database) -> None:
    job = await make_job(db, "ok", "* * * * *", T0)
    claims = await asyncio.gather(
        *(
            job_runs.insert_fire(
                db,
                job,
                trigger="schedule",
                scheduled_for=T0,
                attempt=1,
                status="pending",
                worker_id=f"w{i}",
                token=1,
                now=T0,
            )
            for i in range(5)
        )
    )
    assert sum(claim is not None for claim in claims) == 1
    assert len(await runs_of(db, job["_id"])) == 1


async def test_a_stale_leader_cannot_write_a_run_a_newer_leader_touched(db: Database) -> None:
    job = await make_job(db, "ok", "* * * * *", T0)
    run = await job_runs.insert_fire(
        db, job, trigger="schedule", scheduled_for=T0, attempt=1, status="pending", worker_id="new", token=5, now=T0
    )
    assert run is not None
    assert await job_runs.claim_run(db, Claimant("claimer", "instance", 30.0), run, now=T0) is not None
    claimed = await db.job_runs.find_one({"_id": run["_id"]})  # as the leader reads it: its lease as stored
    assert claimed is not None
    assert not await job_runs.mark_lost(db, claimed, token=4, now=T0, duration_ms=None)
    assert await job_runs.mark_lost(db, claimed, token=6, now=T0, duration_ms=None)
    assert (await job_runs.get_run(db, run["_id"])).fencing_token == 6
    await sync_jobs.record_run_outcome(db, job["_id"], 6, status="failed", finished_at=T0, error="x", duration_ms=10)
    await sync_jobs.record_run_outcome(db, job["_id"], 5, status="succeeded", finished_at=T0, error=None, duration_ms=1)
    assert (await sync_jobs.get_job_doc(db, job["_id"]))["lastStatus"] == "failed"


async def test_a_new_leader_fails_lost_runs_and_catches_up_the_last_missed_fire(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "*/5 * * * * *", T0)
    await db.syncjobs.update_one({"_id": job["_id"]}, {"$set": {"nextRunAt": T0 - timedelta(seconds=50)}})
    lost = job_runs.new_run_document(job, trigger="schedule", scheduled_for=T0 - timedelta(hours=1), now=T0)
    lost |= {"status": "running", "fencingToken": 0, "startedAt": T0 - timedelta(hours=1)}
    await db.job_runs.insert_one(lost)
    await harness.start()
    assert (await eventually(lambda: harness.run_with(job["_id"], status="succeeded")))["scheduledFor"] == T0
    failed = await job_runs.get_run(db, lost["_id"])
    assert (failed.status, failed.error) == ("failed", "worker lost")
    missed = await runs_of(db, job["_id"], status="missed")
    assert [run["scheduledFor"] for run in missed] == [T0 - timedelta(seconds=s) for s in range(50, 0, -5)]


async def test_overlap_skip_records_a_skipped_fire_while_the_previous_run_goes(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job = await overlapping_fires(harness, release)
    skipped = await eventually(lambda: harness.run_with(job["_id"], status="skipped"))
    assert skipped["scheduledFor"] == T0 + timedelta(seconds=10)
    release.touch()
    done = await eventually(lambda: harness.run_with(job["_id"], status="succeeded"))
    assert done["scheduledFor"] == T0 + timedelta(seconds=5)


async def test_overlap_queue_keeps_one_fire_waiting_and_runs_it_next(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job = await overlapping_fires(harness, release, overlap="queue")
    await eventually(lambda: harness.run_with(job["_id"], status="pending"))
    harness.clock.set(T0 + timedelta(seconds=15))
    skipped = await eventually(lambda: harness.run_with(job["_id"], status="skipped"))
    assert skipped["scheduledFor"] == T0 + timedelta(seconds=15)
    release.touch()
    await eventually(lambda: _statuses_are(db, job["_id"], ["succeeded", "succeeded", "skipped"]))


async def _statuses_are(db: Database, job_id: ObjectId, expected: list[str]) -> bool:
    return [run["status"] for run in await runs_of(db, job_id)] == expected


async def test_timeout_kills_the_executor_process_group(harness: Harness, db: Database, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    job = await make_job(db, f"hang:{pids_file}", ONCE_AT_T0_PLUS_5S, T0, timeoutSeconds=1)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    run = await eventually(lambda: harness.run_with(job["_id"], status="timed_out"))
    assert run["error"] == "timed out after 1s"
    executor_pid, grandchild_pid = (int(pid) for pid in pids_file.read_text().split())
    await eventually(lambda: process_gone(executor_pid))
    await eventually(lambda: process_gone(grandchild_pid))
    assert await eventually(lambda: _job_if_last(db, job["_id"], "timed_out"))


async def test_a_failure_keeps_the_stderr_tail_and_retries_after_backoff(harness: Harness, db: Database) -> None:
    job = await make_job(db, "fail-once", ONCE_AT_T0_PLUS_5S, T0, retry={"maxAttempts": 2, "backoffSeconds": 10})
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    failed = await eventually(lambda: harness.run_with(job["_id"], status="failed"))
    assert failed["error"] == "source refused: boom"
    assert "connecting to source" in failed["stderrTail"]
    assert "source refused: boom" in ((await job_runs.get_run(db, failed["_id"])).stderr_tail or "")
    retry = await eventually(lambda: harness.run_with(job["_id"], trigger="retry"))
    assert (retry["status"], retry["attempt"], retry["scheduledFor"]) == ("pending", 2, failed["scheduledFor"])
    assert retry["dueAt"] == T0 + timedelta(seconds=10)  # half of 10 s with zero jitter
    assert await eventually(lambda: _sleeps_until(harness, retry["dueAt"]))
    harness.clock.set(retry["dueAt"])
    await eventually(lambda: harness.run_with(job["_id"], trigger="retry", status="succeeded"))
    assert await eventually(lambda: _job_if_last(db, job["_id"], "succeeded"))


async def _sleeps_until(harness: Harness, instant: datetime) -> bool:
    return instant in harness.clock.sleeping_until


async def test_an_edit_moves_the_next_fire_without_a_restart(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "0 * * * *", T0)
    await harness.start()
    assert await harness.planned_at(job["_id"], T0 + timedelta(hours=1))
    edited = SyncJobInput.model_validate({**_editable(job), "schedule": {"cron": "*/5 * * * * *", "timezone": "UTC"}})
    await sync_jobs.replace_job(db, job["workspaceId"], job["_id"], edited, T0)
    assert await eventually(lambda: harness.planned_at(job["_id"], T0 + timedelta(seconds=5)))
    harness.clock.set(T0 + timedelta(seconds=5))
    await eventually(lambda: harness.run_with(job["_id"], status="succeeded"))
    await sync_jobs.set_enabled(db, job["workspaceId"], job["_id"], False, T0)
    assert await eventually(lambda: harness.planned_at(job["_id"], None))


def _editable(job: Document) -> dict[str, object]:
    model: SyncJob = from_document(SyncJob, job)
    return model.model_dump(by_alias=True, include=set(SyncJobInput.model_fields))


async def test_a_deleted_job_leaves_the_plan(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "0 * * * *", T0)
    await harness.start()
    await sync_jobs.delete_job(db, job["workspaceId"], job["_id"])
    assert await eventually(lambda: harness.planned_at(job["_id"], None))


async def test_a_manual_run_is_picked_up_at_once(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "0 0 1 1 *", T0)
    await harness.start()
    run = await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)
    done = await eventually(lambda: harness.run_with(job["_id"], status="succeeded"))
    assert (done["_id"], done["trigger"]) == (ObjectId(run.id), "manual")


async def test_without_change_streams_the_worker_polls(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_change_streams(*args: object, **kwargs: object) -> None:
        raise OperationFailure("The $changeStream stage is only supported on replica sets", 40573)

    monkeypatch.setattr(type(db), "watch", no_change_streams)
    job = await make_job(db, "ok", "0 * * * *", T0)
    await harness.start(poll_seconds=0.1)
    assert harness.feed.polling
    await sync_jobs.set_enabled(db, job["workspaceId"], job["_id"], False, T0)
    assert await eventually(lambda: harness.planned_at(job["_id"], None))
    await sync_jobs.set_enabled(db, job["workspaceId"], job["_id"], True, T0)
    assert await eventually(lambda: harness.planned_at(job["_id"], T0 + timedelta(hours=1)))


async def test_end_of_term_kills_what_outlives_the_grace_as_cancelled(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    job = await make_job(db, f"wait:{tmp_path / 'never'}", ONCE_AT_T0_PLUS_5S, T0)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    await eventually(lambda: harness.run_with(job["_id"], status="running"))
    await harness.dispatcher.finish(grace_seconds=0.2)
    run = await harness.run_with(job["_id"])
    assert run is not None
    assert (run["status"], run["error"]) == ("cancelled", "cancelled")


def _fail_once(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
    """The first call of module.name raises as if the database had gone away."""
    real = getattr(module, name)
    calls = []

    async def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise AutoReconnect("connection reset")
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


async def test_a_fire_that_cannot_be_written_is_tried_again(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await make_job(db, "ok", ONCE_AT_T0_PLUS_5S, T0)
    _fail_once(monkeypatch, job_runs, "insert_fires")
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    assert await eventually(lambda: harness.planned_at(job["_id"], T0 + timedelta(seconds=6)))
    harness.clock.set(T0 + timedelta(seconds=6))
    run = await eventually(lambda: harness.run_with(job["_id"], status="succeeded"))
    assert run["scheduledFor"] == T0 + timedelta(seconds=5)


async def test_a_run_whose_lock_cannot_be_taken_is_tried_again(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await make_job(db, "ok", "0 0 1 1 *", T0)
    _fail_once(monkeypatch, job_runs, "claim_runs")  # the claim is the job's lock
    await harness.start()
    await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)
    await eventually(lambda: harness.run_with(job["_id"], status="succeeded"))


async def test_the_loop_fires_a_gap_time_once_at_the_end_of_the_gap(db: Database, settings: Settings) -> None:
    """02:30 New York does not exist on 2027-03-14: the worker fires at 03:00 EDT (07:00Z), then 02:30 EDT."""
    before = datetime(2027, 3, 13, 12, tzinfo=UTC)
    running = Harness(db, settings)
    running.clock.set(before)
    job = await make_job(
        db, "ok", "30 2 * * *", before, schedule={"cron": "30 2 * * *", "timezone": "America/New_York"}
    )
    assert job["nextRunAt"] == datetime(2027, 3, 14, 7, tzinfo=UTC)
    try:
        await running.start()
        running.clock.set(datetime(2027, 3, 14, 7, tzinfo=UTC))
        run = await eventually(lambda: running.run_with(job["_id"], status="succeeded"))
        assert run["scheduledFor"] == datetime(2027, 3, 14, 7, tzinfo=UTC)
        assert await eventually(lambda: running.planned_at(job["_id"], datetime(2027, 3, 15, 6, 30, tzinfo=UTC)))
    finally:
        await running.stop()


async def test_a_manual_run_waits_for_the_running_one_and_is_never_skipped(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job = await make_job(db, f"wait:{release}", ONCE_AT_T0_PLUS_5S, T0)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    await eventually(lambda: harness.run_with(job["_id"], status="running"))
    manual = await job_runs.create_manual_run(db, from_document(SyncJob, job), T0 + timedelta(seconds=5))
    await eventually(lambda: _waiting(harness, job["_id"]))
    assert (await job_runs.get_run(db, ObjectId(manual.id))).status == "pending"
    release.touch()
    await eventually(lambda: _statuses_are(db, job["_id"], ["succeeded", "succeeded"]))


async def _waiting(harness: Harness, job_id: ObjectId) -> bool:
    return harness.dispatcher.waits_for_lock(job_id)
