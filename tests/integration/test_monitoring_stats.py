"""Per-job run statistics computed by the database, and the alerts they raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.shared.alerts import evaluate
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import AlertThresholds
from syncjobs.shared.store.run_stats import (
    count_runs_by_status,
    delete_runs_before,
    job_run_stats,
    streak_pipeline,
    summary_pipeline,
)

from tests.integration.monitoring_helpers import insert_job, insert_runs

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY_AGO = NOW - timedelta(hours=24)


async def test_stats_count_each_status_and_the_current_failure_streak(db: Database) -> None:
    ws = ObjectId()
    job = await insert_job(db, ws, "orders")
    start = NOW - timedelta(hours=2)
    await insert_runs(
        db,
        job,
        ["succeeded", "failed", "succeeded", "skipped", "missed", "failed", "timed_out", "failed"],
        start,
        duration_ms=2000,
    )
    [stats] = await job_run_stats(db, ws, DAY_AGO)

    assert stats.job_id == str(job["_id"]) and stats.job_name == "orders"
    assert (stats.total_executions, stats.success_count, stats.failure_count) == (6, 2, 4)
    assert (stats.skipped_count, stats.missed_count) == (1, 1)
    assert stats.success_rate == round(2 / 6, 4)
    assert stats.average_duration_ms == 2000
    assert stats.consecutive_failures == 3  # failed, timed_out, failed after the last success
    assert stats.failure_streak_since == start + timedelta(minutes=25)
    assert stats.last_status == "failed" and stats.last_execution == start + timedelta(minutes=35)
    assert [run.status for run in stats.recent_runs][:3] == ["failed", "timed_out", "failed"]
    assert len(stats.recent_runs) == 8


async def test_one_jobs_streak_is_the_workspace_lists_and_is_read_without_an_or(db: Database) -> None:
    """A job's own statistics (what each alert evaluation reads) count its streak as the workspace's list does,
    with a success in the range and without; its streak read has no top-level `$or` (a collection scan on
    SecantusDB)."""
    ws = ObjectId()
    recovered = await insert_job(db, ws, "recovered")
    failing = await insert_job(db, ws, "failing")
    await insert_runs(db, recovered, ["failed", "succeeded", "failed", "timed_out"], NOW - timedelta(hours=2))
    await insert_runs(db, failing, ["failed", "failed"], NOW - timedelta(hours=2))
    listed = {entry.job_id: entry for entry in await job_run_stats(db, ws, DAY_AGO)}
    for job, streak in ((recovered, 2), (failing, 2)):
        [own] = await job_run_stats(db, ws, DAY_AGO, job["_id"])
        assert (own.consecutive_failures, own.failure_streak_since) == (
            streak,
            listed[str(job["_id"])].failure_streak_since,
        )
        [summary] = [doc async for doc in await db.job_runs.aggregate(summary_pipeline(ws, DAY_AGO, job["_id"]))]
        streak_read = streak_pipeline(ws, DAY_AGO, [summary], job["_id"])
        assert streak_read is not None and "$or" not in streak_read[0]["$match"]


async def test_stats_cover_only_the_time_range_and_only_this_workspace(db: Database) -> None:
    ws, other_ws = ObjectId(), ObjectId()
    job = await insert_job(db, ws, "orders")
    idle = await insert_job(db, ws, "archive")
    foreign = await insert_job(db, other_ws, "theirs")
    await insert_runs(db, job, ["failed"] * 3, NOW - timedelta(hours=30))  # before the range
    await insert_runs(db, job, ["succeeded"] * 12, NOW - timedelta(hours=3))
    await insert_runs(db, foreign, ["failed"], NOW - timedelta(hours=1))

    stats = await job_run_stats(db, ws, DAY_AGO)
    assert [s.job_name for s in stats] == ["archive", "orders"]
    archive, orders = stats
    assert archive.job_id == str(idle["_id"])
    assert (archive.total_executions, archive.success_rate, archive.last_status) == (0, None, None)
    assert (orders.total_executions, orders.failure_count, orders.consecutive_failures) == (12, 0, 0)
    assert len(orders.recent_runs) == 10
    assert orders.recent_runs[0].created_at == NOW - timedelta(hours=3) + timedelta(minutes=55)


async def test_alerts_follow_the_thresholds(db: Database) -> None:
    ws = ObjectId()
    flaky = await insert_job(db, ws, "flaky")
    slow = await insert_job(db, ws, "slow")
    healthy = await insert_job(db, ws, "healthy")
    start = NOW - timedelta(hours=5)
    await insert_runs(db, flaky, ["failed", "succeeded", "failed", "failed", "failed", "missed"], start)
    await insert_runs(db, slow, ["succeeded"] * 2, start, duration_ms=6 * 60 * 1000)
    await insert_runs(db, healthy, ["succeeded", "failed", "succeeded", "succeeded", "succeeded"], start)

    alerts = evaluate(await job_run_stats(db, ws, DAY_AGO), AlertThresholds(), NOW)
    by_job = {(a.job_id, a.kind) for a in alerts}
    assert by_job == {
        (str(flaky["_id"]), "high_failure_rate"),  # 4 of 5 executions
        (str(flaky["_id"]), "consecutive_failures"),
        (str(flaky["_id"]), "missed_runs"),
        (str(slow["_id"]), "long_duration"),
    }
    streak = next(a for a in alerts if a.kind == "consecutive_failures")
    assert streak.since == start + timedelta(minutes=10)

    stricter = AlertThresholds(consecutive_failures=4, failure_rate=0.9, long_duration_ms=7 * 60 * 1000)
    kinds = {a.kind for a in evaluate(await job_run_stats(db, ws, DAY_AGO), stricter, NOW)}
    assert kinds == {"missed_runs"}


async def test_cleanup_deletes_only_old_finished_runs_of_the_workspace(db: Database) -> None:
    ws, other_ws = ObjectId(), ObjectId()
    job = await insert_job(db, ws, "orders")
    foreign = await insert_job(db, other_ws, "theirs")
    await insert_runs(db, job, ["succeeded", "failed"], NOW - timedelta(days=40))
    await insert_runs(db, job, ["running"], NOW - timedelta(days=40, minutes=-20))
    await insert_runs(db, job, ["succeeded"], NOW - timedelta(days=1))
    await insert_runs(db, foreign, ["succeeded"], NOW - timedelta(days=40))

    assert await delete_runs_before(db, ws, NOW - timedelta(days=30)) == 2
    assert await count_runs_by_status(db) == {"running": 1, "succeeded": 2}
