"""Fires are decided on the database server's clock: a leader whose own clock is 30 s off either way
fires each job within a second of its true due time, and says its clock is off (a warning, a gauge)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs
from syncjobs.shared import metrics
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import Settings
from syncjobs.worker.main import run_worker

from tests.fixtures.fake_clock import SkewedClock
from tests.fixtures.worker_jobs import FAKE_EXECUTOR, make_job

FIRES = 3


async def _next_fires(db: Database, count: int) -> list[tuple[datetime, Document]]:
    """The next `count` scheduled fires inserted, each with the true time (this machine's, the server's
    too) at which it arrived."""
    arrived: list[tuple[datetime, Document]] = []
    pipeline: list[Document] = [{"$match": {"operationType": "insert", "fullDocument.trigger": "schedule"}}]
    async with await db.job_runs.watch(pipeline) as stream:
        async for change in stream:
            arrived.append((datetime.now(UTC), change["fullDocument"]))
            if len(arrived) == count:
                return arrived
    raise AssertionError("the change stream ended")


@pytest.mark.parametrize("skew_seconds", [30, -30])
async def test_a_leader_whose_clock_is_off_fires_on_the_servers_time(
    db: Database, settings: Settings, skew_seconds: int
) -> None:
    await make_job(db, "ok", "*/2 * * * * *", datetime.now(UTC))
    watching = asyncio.create_task(_next_fires(db, FIRES))
    stop = asyncio.Event()
    skewed = SkewedClock(timedelta(seconds=skew_seconds))
    worker_settings = settings.with_overrides(worker_id=f"skewed{skew_seconds}", executor_command=FAKE_EXECUTOR)
    with capture_logs() as logs:
        worker = asyncio.create_task(run_worker(worker_settings, clock=skewed, stop=stop))
        try:
            fires = await asyncio.wait_for(watching, timeout=30)
        finally:
            stop.set()
            await worker
    for arrived, run in fires:
        assert run["status"] == RunStatus.PENDING, run
        assert abs((arrived - run["scheduledFor"]).total_seconds()) < 1.0, (arrived, run["scheduledFor"])
    warnings = [event for event in logs if event["event"] == "clock_offset_large"]
    assert warnings  # once per measurement: at start, then every MEASURE_EVERY_SECONDS
    for warning in warnings:
        assert warning["log_level"] == "warning"
        assert abs(warning["offset_seconds"] + skew_seconds) < 0.5
    gauge = metrics.WORKER_REGISTRY.get_sample_value("syncjobs_clock_offset_seconds")
    assert gauge is not None and abs(gauge + skew_seconds) < 0.5
