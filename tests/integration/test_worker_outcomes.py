"""The outcomes of runs that end together are written together (issue 22): one write on `job_runs` and one
on `syncjobs` for the batch, each outcome still guarded by its run's lease. A run the leader took back
records nothing while its batch neighbours land; a write whose answer was lost is retried and lands once;
through an outage each outcome is retried only while its run's lease is trusted."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.models import JobRun, RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document, bounded_waits, connect
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import job_runs
from syncjobs.shared.store.job_runs import Claimant, FinishedRun
from syncjobs.shared.store.sync_jobs import JobOutcome
from syncjobs.worker.claimed_run import ClaimedRun, RunContext
from syncjobs.worker.executor_process import ExecutorSpec
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.outcome_writer import OutcomeWriter, Recorded
from syncjobs.worker.run_leases import trusted_seconds

from tests.fixtures.command_log import CommandLog
from tests.fixtures.eventually import eventually
from tests.fixtures.fake_clock import FakeClock
from tests.fixtures.tcp_proxy import TcpProxy, proxy

__all__ = ["proxy"]  # the fixture, shared
from tests.fixtures.worker_harness import T0
from tests.fixtures.worker_jobs import make_job

ME = Claimant("w1", "instance-1", lease_seconds=30)
LANDED = Recorded(run=True, job=True)


@dataclass
class _Replica:
    """A claimer's side: its client to the database (watched, maybe through a proxy) and its writer."""

    db: Database
    writer: OutcomeWriter
    context: RunContext
    commands: CommandLog

    async def claim(self, db: Database, *, trusted_for: float | None = None) -> ClaimedRun:
        """A manual run of a new job, claimed by this replica; trusted for its whole lease unless said."""
        job = await make_job(db, f"ok-{ObjectId()}", "0 0 1 1 *", T0)
        run = await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)
        pending = await db.job_runs.find_one({"_id": ObjectId(run.id)})
        assert pending is not None
        claimed = await job_runs.claim_run(db, self.context.claimant, pending, now=T0)
        assert claimed is not None
        lease = trusted_seconds(self.context.claimant.lease_seconds)
        claimed_at = time.monotonic() - (lease - trusted_for if trusted_for is not None else 0)
        return ClaimedRun(self.context, from_document(JobRun, claimed), claimed_at, slot_freed=lambda: None)

    async def record(self, claimed: ClaimedRun) -> Recorded:
        """Its outcome, a success, as `ClaimedRun` records it."""
        finished = FinishedRun(claimed.run_id, RunStatus.SUCCEEDED, T0, {"durationMs": 5})
        job = JobOutcome(ObjectId(claimed.run.job_id), RunStatus.SUCCEEDED, T0, None, 5)
        claimed.recording = True
        return await self.writer.record(claimed, finished, job)

    def sent(self) -> list[tuple[str, Any, int]]:
        """What its client sent to the test's database: (name, collection, statements carried by an update)."""
        return [(each.name, each.target, len(each.command.get("updates", ()))) for each in self.commands.sent]


@asynccontextmanager
async def _replica(uri: str, db_name: str, settings: Settings, **client: object) -> AsyncIterator[_Replica]:
    commands = CommandLog(db_name)
    mongo = connect(uri, event_listeners=[commands], **client)
    db, health = mongo[db_name], DatabaseHealth()
    writer = OutcomeWriter(db, ME, health)
    context = RunContext(
        db, FakeClock(T0), ME, health, ExecutorSpec.from_settings(settings), None, random.random, writer
    )
    try:
        yield _Replica(db, writer, context, commands)
    finally:
        await writer.stop()
        await mongo.close()


@pytest.fixture
async def replica(mongo_uri: str, db: Database, settings: Settings) -> AsyncIterator[_Replica]:
    async with _replica(mongo_uri, db.name, settings) as running:
        yield running


@pytest.fixture
async def proxied(proxy: TcpProxy, db: Database, settings: Settings) -> AsyncIterator[_Replica]:
    # The writer's own retries only: a driver's retry of a write whose answer was lost could be answered
    # from the server's record of it, and the test would not see the writer learn what landed.
    options = {**bounded_waits(3), "serverSelectionTimeoutMS": 1000, "retryWrites": False}
    async with _replica(proxy.uri(), db.name, settings, **options) as running:
        yield running


async def _run(db: Database, claimed: ClaimedRun) -> Document:
    run = await db.job_runs.find_one({"_id": claimed.run_id})
    assert run is not None
    return run


async def _job(db: Database, claimed: ClaimedRun) -> Document | None:
    return await db.syncjobs.find_one({"_id": ObjectId(claimed.run.job_id)})


async def test_outcomes_that_end_together_are_one_write_on_the_runs_and_one_on_the_jobs(
    replica: _Replica, db: Database
) -> None:
    runs = [await replica.claim(db) for _ in range(4)]
    replica.commands.clear()
    assert await asyncio.gather(*(replica.record(run) for run in runs)) == [LANDED] * 4
    assert replica.sent() == [("update", "job_runs", 4), ("update", "syncjobs", 4)]
    for claimed in runs:
        run, job = await _run(db, claimed), await _job(db, claimed)
        assert (run["status"], run["durationMs"], "leaseUntil" in run) == ("succeeded", 5, False)
        assert job is not None and (job["lastStatus"], job["runCount"]) == ("succeeded", 1)

    later = await replica.claim(db)  # alone: a flush never waits for company
    replica.commands.clear()
    assert await replica.record(later) == LANDED
    assert replica.sent() == [("update", "job_runs", 1), ("update", "syncjobs", 1)]


async def test_a_run_lost_meanwhile_records_nothing_while_its_batch_neighbours_land(
    replica: _Replica, db: Database
) -> None:
    lost, orphan, *landing = [await replica.claim(db) for _ in range(4)]
    assert await job_runs.mark_lost(db, await _run(db, lost), token=2, now=T0, duration_ms=None)  # the leader's
    await db.syncjobs.delete_one({"_id": ObjectId(orphan.run.job_id)})  # a job deleted while its run went
    replica.commands.clear()
    recorded = await asyncio.gather(*(replica.record(run) for run in (lost, orphan, *landing)))
    assert recorded == [Recorded(run=False, job=False), Recorded(run=True, job=False), LANDED, LANDED]
    # the batch's write, the read telling which outcomes landed; the jobs' write, the read of which exist
    assert replica.sent() == [
        ("update", "job_runs", 4),
        ("find", "job_runs", 0),
        ("update", "syncjobs", 3),
        ("find", "syncjobs", 0),
    ]
    stored = await _run(db, lost)
    assert (stored["status"], stored["error"], stored["fencingToken"]) == ("failed", "worker lost", 2)
    lost_job = await _job(db, lost)
    assert lost_job is not None and lost_job["lastStatus"] is None
    assert (await _run(db, orphan))["status"] == "succeeded"
    for claimed in landing:
        job = await _job(db, claimed)
        assert job is not None and job["lastStatus"] == "succeeded"


async def test_a_flush_whose_answer_was_lost_is_retried_and_lands_once(
    proxied: _Replica, proxy: TcpProxy, db: Database
) -> None:
    runs = [await proxied.claim(db) for _ in range(3)]
    proxy.cut(write_replies_only=True)  # the outcomes land; the writer is not told
    recording = asyncio.gather(*(proxied.record(run) for run in runs))
    await eventually(lambda: _all_finished(db, runs))
    await eventually(lambda: _unavailable(proxied.context.health))
    proxy.heal()
    assert await recording == [LANDED] * 3
    for claimed in runs:
        job = await _job(db, claimed)
        assert job is not None and (job["lastStatus"], job["runCount"]) == ("succeeded", 1)  # written once
    # retried until answered: nothing changed, the read tells all three landed; then the jobs, once
    sent = [(name, collection) for name, collection, _ in proxied.sent() if name in ("update", "find")]
    assert sent[-3:] == [("update", "job_runs"), ("find", "job_runs"), ("update", "syncjobs")], sent
    assert sent.count(("update", "syncjobs")) == 1, sent


async def test_through_an_outage_an_outcome_is_retried_only_while_its_runs_lease_is_trusted(
    proxied: _Replica, proxy: TcpProxy, db: Database
) -> None:
    trusted = await proxied.claim(db)
    lapsing = await proxied.claim(db, trusted_for=0.5)
    proxy.cut()
    first = asyncio.create_task(proxied.record(trusted))
    second = asyncio.create_task(proxied.record(lapsing))
    assert await second == Recorded(run=False, job=False)  # given up: the leader fails it as lost
    assert not first.done()
    proxy.heal()
    assert await first == LANDED
    assert ((await _run(db, lapsing))["status"], (await _run(db, trusted))["status"]) == ("running", "succeeded")


async def _all_finished(db: Database, runs: list[ClaimedRun]) -> bool:
    finished = {"_id": {"$in": [run.run_id for run in runs]}, "status": "succeeded"}
    return await db.job_runs.count_documents(finished) == len(runs)


async def _unavailable(health: DatabaseHealth) -> bool:
    return not health.available
