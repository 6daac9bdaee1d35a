"""Every write the scheduler's guarantees rest on is sent with w:"majority", j:true, and the lease and the
lost-run reads with readConcern majority: seen on the wire by a command listener, one operation at a time.
A replica set with arbiters is refused at start unless SYNCJOBS_ALLOW_ARBITERS says otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from bson import ObjectId
from syncjobs.shared.errors import ArbitersRefused
from syncjobs.shared.models import RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document, check_replica_set, connect, ensure_indexes, refuse_arbiters
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import job_runs, sync_jobs, worker_locks
from syncjobs.shared.store.job_runs import Claimant

from tests.fixtures.command_log import CommandLog, SentCommand
from tests.fixtures.worker_harness import T0
from tests.fixtures.worker_jobs import make_job

DURABLE = {"w": "majority", "j": True}
MAJORITY = {"level": "majority"}
WRITES = {"insert", "update", "findAndModify", "delete"}
ME = Claimant("w1", "instance-1", lease_seconds=30)


@pytest.fixture
async def watched(mongo_uri: str, db_name: str) -> AsyncIterator[tuple[Database, CommandLog]]:
    commands = CommandLog(db_name)
    client = connect(mongo_uri, event_listeners=[commands])
    database = client[db_name]
    await ensure_indexes(database)
    try:
        yield database, commands
    finally:
        await client.drop_database(db_name)
        await client.close()


def _durable_writes(sent: list[SentCommand]) -> None:
    writes = [each.command for each in sent if each.name in WRITES]
    assert writes, f"no write among {[each.name for each in sent]}"
    for command in writes:
        assert command.get("writeConcern") == DURABLE, command


def _majority_reads(sent: list[SentCommand]) -> None:
    reads = [each.command for each in sent if each.name == "find"]
    assert reads
    for command in reads:
        assert command.get("readConcern") == MAJORITY, command


async def test_the_lease_is_written_durably_and_read_from_a_majority(watched: tuple[Database, CommandLog]) -> None:
    db, commands = watched
    take = worker_locks.take_or_renew(db, "scheduler", owner="a", instance="i", ttl_seconds=5)
    _durable_writes(await commands.of(take))
    renew = worker_locks.take_or_renew(db, "scheduler", owner="a", instance="i", ttl_seconds=5)
    _durable_writes(await commands.of(renew))
    _majority_reads(await commands.of(worker_locks.current(db)))
    _durable_writes(await commands.of(worker_locks.release(db, "scheduler", owner="a", instance="i")))


async def test_fires_claims_outcomes_and_run_leases_are_written_durably(watched: tuple[Database, CommandLog]) -> None:
    db, commands = watched
    job_doc = await make_job(db, "concerns", "* * * * *", T0)
    job = from_document(SyncJob, job_doc)
    job_id = ObjectId(job.id)

    def fire(seconds: int, token: int | None = 1) -> Document:
        at = T0 + timedelta(seconds=seconds)
        return job_runs.fire_document(
            job, trigger="schedule", scheduled_for=at, attempt=1, status="pending", worker_id="l", token=token, now=at
        )

    first, second, third, fourth = fire(1), fire(2), fire(3), fire(4)
    _durable_writes(await commands.of(job_runs.insert_fires(db, [first, second, third, fourth])))
    later = T0 + timedelta(seconds=4)
    retry = job_runs.insert_fire(
        db,
        job_doc,
        trigger="retry",
        scheduled_for=later,
        attempt=2,
        status="pending",
        worker_id="l",
        token=None,
        now=later,
    )
    _durable_writes(await commands.of(retry))
    _durable_writes(await commands.of(job_runs.create_manual_run(db, job, T0)))
    _durable_writes(await commands.of(job_runs.claim_run(db, ME, first, now=T0 + timedelta(seconds=5))))
    # one run still held, one not: the renewal's write, then the read telling which is no longer ours
    _durable_writes(await commands.of(job_runs.renew_run_leases(db, ME, [first["_id"]])))
    renew_both = await commands.of(job_runs.renew_run_leases(db, ME, [first["_id"], second["_id"]]))
    _durable_writes(renew_both)
    _majority_reads(renew_both)
    finish = job_runs.finish_claimed_runs(db, ME, [job_runs.FinishedRun(first["_id"], "succeeded", T0, {})])
    _durable_writes(await commands.of(finish))
    _durable_writes(await commands.of(job_runs.claim_run(db, ME, second, now=T0 + timedelta(seconds=5))))
    # one outcome no longer ours among two: the batch's write, then the read telling which landed
    finish_both = job_runs.finish_claimed_runs(
        db, ME, [job_runs.FinishedRun(run_id, "succeeded", T0, {}) for run_id in (first["_id"], second["_id"])]
    )
    sent = await commands.of(finish_both)
    _durable_writes(sent)
    _majority_reads(sent)
    _durable_writes(await commands.of(job_runs.claim_run(db, ME, third, now=T0 + timedelta(seconds=5))))
    _majority_reads(await commands.of(job_runs.runs_with_lapsed_lease(db, T0 + timedelta(days=1))))
    third_run = await db.job_runs.find_one({"_id": third["_id"]})
    assert third_run is not None
    _durable_writes(await commands.of(job_runs.mark_lost(db, third_run, token=1, now=T0, duration_ms=5)))
    _durable_writes(await commands.of(job_runs.skip_pending_runs(db, [fourth["_id"]], now=T0, error="skipped")))
    moves = [sync_jobs.NextRun(job_id, job.version, T0 + timedelta(minutes=1))]
    _durable_writes(await commands.of(sync_jobs.advance_next_runs(db, moves, 1)))
    outcome = sync_jobs.record_run_outcome(db, job_id, 1, status="succeeded", finished_at=T0, error=None, duration_ms=5)
    _durable_writes(await commands.of(outcome))
    claimers = sync_jobs.JobOutcome(job_id, RunStatus.SUCCEEDED, T0, None, 5)
    _durable_writes(await commands.of(sync_jobs.record_run_outcomes(db, [claimers])))


async def test_a_replica_set_with_arbiters_is_refused_unless_allowed(mongo_uri: str) -> None:
    client = connect(mongo_uri)
    try:
        await check_replica_set(client, allow_arbiters=False)  # SecantusDB: one member, no arbiter
    finally:
        await client.close()
    with_arbiter = {"setName": "rs0", "hosts": ["a:27017", "b:27017"], "arbiters": ["c:27017"]}
    with pytest.raises(ArbitersRefused, match=r"arbiters \(c:27017\).*SYNCJOBS_ALLOW_ARBITERS=1"):
        refuse_arbiters(with_arbiter, allow_arbiters=False)
    refuse_arbiters(with_arbiter, allow_arbiters=True)  # allowed: a warning only
    refuse_arbiters({"setName": "rs0", "hosts": ["a:27017"]}, allow_arbiters=False)
    assert Settings.from_env({"SYNCJOBS_ALLOW_ARBITERS": "1"}).allow_arbiters
    assert not Settings.from_env({}).allow_arbiters


async def test_a_claim_round_is_written_durably_and_what_it_won_read_from_a_majority(
    watched: tuple[Database, CommandLog],
) -> None:
    db, commands = watched
    job = from_document(SyncJob, await make_job(db, "concerns", "* * * * *", T0))
    first = await job_runs.create_manual_run(db, job, T0)
    second = await job_runs.create_manual_run(db, job, T0 + timedelta(seconds=1))
    pending = [{"_id": ObjectId(run.id), "jobId": ObjectId(job.id)} for run in (first, second)]
    # two runs of one job: the second stops at the job's lock, so the round reads what it won
    sent = await commands.of(job_runs.claim_runs(db, ME, pending, now=T0 + timedelta(seconds=5), token=ObjectId()))
    _durable_writes(sent)
    _majority_reads(sent)
