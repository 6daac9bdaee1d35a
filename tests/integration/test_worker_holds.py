"""Pause, skip and resume in the leader's fire logic, on the injected clock: held fires are recorded
`skipped` with their reason, and a pause with `until` ends by itself once, also across a failover."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import sync_jobs
from syncjobs.worker.fire_plan import hold_fires

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_harness import T0, leadership_harness
from tests.fixtures.worker_jobs import make_job, runs_of

EVERY_MINUTE = "0 * * * * *"
MINUTE = timedelta(minutes=1)


def test_hold_fires_is_pure_pause_then_skip() -> None:
    fires = [T0 + MINUTE * n for n in range(1, 6)]
    held = hold_fires(True, T0 + 3 * MINUTE, 1, fires, [])
    assert held.skipped == [(fires[0], "paused"), (fires[1], "paused"), (fires[2], "skip")]
    assert (held.run, held.missed, held.skips_used, held.resumed) == (fires[3:], [], 1, True)
    assert hold_fires(True, None, 0, fires, []).run == []  # paused with no end: every fire held
    assert hold_fires(False, None, 0, fires, []).run == fires


def test_hold_fires_records_a_missed_fire_the_pause_held_as_skipped() -> None:
    missed, due = [T0 + MINUTE * n for n in range(1, 5)], [T0 + 5 * MINUTE]
    held = hold_fires(True, T0 + 3 * MINUTE, 1, due, missed)
    assert held.skipped == [(missed[0], "paused"), (missed[1], "paused"), (due[0], "skip")]
    assert (held.run, held.missed, held.skips_used, held.resumed) == ([], missed[2:], 1, True)
    assert hold_fires(True, None, 0, due, missed).missed == []  # paused with no end: no fire missed
    assert hold_fires(False, None, 0, due, missed).missed == missed


async def _statuses(db: Database, job_id: ObjectId) -> list[tuple[int, str, str | None]]:
    return [
        (int((run["scheduledFor"] - T0) / MINUTE), run["status"], run["error"]) for run in await runs_of(db, job_id)
    ]


async def test_a_pause_with_until_resumes_once_across_a_failover(db: Database, settings: Settings) -> None:
    job = await make_job(db, "ok", EVERY_MINUTE, T0)
    paused = {"paused": True, "pausedUntil": T0 + 3 * MINUTE, "pauseNote": "vendor maintenance"}
    await sync_jobs.set_hold(db, job["workspaceId"], job["_id"], paused, T0)
    async with leadership_harness(db, settings) as first:
        await first.start()
        for minute in (1, 2):
            first.clock.set(T0 + minute * MINUTE)
            await eventually(lambda minute=minute: _count(db, job["_id"], minute))  # type: ignore[misc]
        await first.stop()
        await first.lease.release()
    async with leadership_harness(db, settings) as second:  # a new leader, a new term
        second.clock.set(T0 + 2 * MINUTE)
        await second.start()
        for minute in (3, 4):  # each run ends before the next fire (overlap `skip` would skip it)
            second.clock.set(T0 + minute * MINUTE)
            done = minute - 2
            await eventually(
                lambda minute=minute, done=done: _count(db, job["_id"], minute, status="succeeded", at_least=done)
            )  # type: ignore[misc]
    assert await _statuses(db, job["_id"]) == [
        (1, "skipped", "skipped: paused"),
        (2, "skipped", "skipped: paused"),
        (3, "succeeded", None),
        (4, "succeeded", None),
    ]
    stored = await db.syncjobs.find_one({"_id": job["_id"]})
    assert stored is not None and (stored["paused"], stored["pausedUntil"], stored["pauseNote"]) == (False, None, None)
    resumes = await db.job_changes.find({"jobId": job["_id"], "action": "resume"}).to_list()
    assert [entry["actor"]["name"] for entry in resumes] == ["scheduler"]  # exactly once


async def test_fires_of_a_pause_due_while_no_replica_led_are_skipped_not_missed(
    db: Database, settings: Settings
) -> None:
    """Fires 1-4 are due at once when the leader comes at minute 5: 1-3 fell in the pause (skipped, no
    `run.missed` alert for them), 4 is past `until` (missed: it would have run), 5 runs and ends the pause."""
    job = await make_job(db, "ok", EVERY_MINUTE, T0)
    paused = {"paused": True, "pausedUntil": T0 + 4 * MINUTE, "pauseNote": "vendor maintenance"}
    await sync_jobs.set_hold(db, job["workspaceId"], job["_id"], paused, T0)
    async with leadership_harness(db, settings) as harness:
        harness.clock.set(T0 + 5 * MINUTE)
        await harness.start()
        await eventually(lambda: _count(db, job["_id"], 5, status="succeeded", at_least=1))
    assert await _statuses(db, job["_id"]) == [
        (1, "skipped", "skipped: paused"),
        (2, "skipped", "skipped: paused"),
        (3, "skipped", "skipped: paused"),
        (4, "missed", "missed: no worker could fire it in time"),
        (5, "succeeded", None),
    ]
    stored = await db.syncjobs.find_one({"_id": job["_id"]})
    assert stored is not None and stored["paused"] is False
    assert await db.job_changes.count_documents({"jobId": job["_id"], "action": "resume"}) == 1


async def test_skip_holds_the_next_fires_that_would_run(db: Database, settings: Settings) -> None:
    job = await make_job(db, "ok", EVERY_MINUTE, T0)
    await sync_jobs.set_hold(db, job["workspaceId"], job["_id"], {"skipCount": 2}, T0)
    async with leadership_harness(db, settings) as harness:
        await harness.start()
        for minute in (1, 2, 3):
            harness.clock.set(T0 + minute * MINUTE)
            await eventually(lambda minute=minute: _count(db, job["_id"], minute))  # type: ignore[misc]
        await eventually(lambda: _count(db, job["_id"], 3, status="succeeded", at_least=1))
    assert await _statuses(db, job["_id"]) == [
        (1, "skipped", "skipped: skip"),
        (2, "skipped", "skipped: skip"),
        (3, "succeeded", None),
    ]
    stored = await db.syncjobs.find_one({"_id": job["_id"]})
    assert stored is not None and stored["skipCount"] == 0


async def _count(db: Database, job_id: ObjectId, total: int, *, status: str | None = None, at_least: int = 0) -> bool:
    runs = await runs_of(db, job_id)
    matching = [run for run in runs if status is None or run["status"] == status]
    return len(runs) >= total and len(matching) >= at_least
