"""Claims against a real server: a claim is the job's lock, a claimer's writes hold only while its run
lease does, the leader fails and retries a run whose lease lapsed, claims go round-robin across
workspaces under the per-workspace cap, and a run costs three writes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.connection_rules import ControlClusterCache
from syncjobs.shared.embedded import EmbeddedServer, start_embedded
from syncjobs.shared.models import DestinationInput, JobRun, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document, connect, ensure_indexes
from syncjobs.shared.run_spec import RunSpec
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import destinations, job_runs
from syncjobs.shared.store.job_runs import Claimant
from syncjobs.worker.dispatcher import RunDispatcher
from syncjobs.worker.executor_process import ExecutorSpec
from syncjobs.worker.health import DatabaseHealth

from tests.fixtures.command_log import CommandLog
from tests.fixtures.eventually import eventually
from tests.fixtures.fake_clock import FakeClock
from tests.fixtures.worker_harness import ONCE_AT_T0_PLUS_5S, T0, Harness, leadership_harness
from tests.fixtures.worker_jobs import FAKE_EXECUTOR, file_written, make_job, process_gone, runs_of

ME = Claimant("w1", "instance-1", lease_seconds=30)


@pytest.fixture
async def harness(db: Database, settings: Settings) -> AsyncIterator[Harness]:
    async with leadership_harness(db, settings) as running:
        yield running


async def _pending(db: Database, job: Document, seconds: int) -> Document:
    run = await job_runs.insert_fire(
        db,
        job,
        trigger="schedule",
        scheduled_for=T0 + timedelta(seconds=seconds),
        attempt=1,
        status="pending",
        worker_id="leader",
        token=1,
        now=T0 + timedelta(seconds=seconds),
    )
    assert run is not None
    return run


async def test_a_claim_is_the_jobs_lock_unless_its_overlap_is_allow(db: Database) -> None:
    exclusive = await make_job(db, "ok", "* * * * *", T0)
    first, second = await _pending(db, exclusive, 0), await _pending(db, exclusive, 60)
    claimed = await job_runs.claim_run(db, ME, first, now=T0)
    assert claimed is not None
    assert (claimed["status"], claimed["workerId"], claimed["claimedBy"]) == ("running", "w1", "instance-1")
    assert await job_runs.claim_run(db, ME, first, now=T0) is None  # claimed once only
    with pytest.raises(DuplicateKeyError):
        await job_runs.claim_run(db, ME, second, now=T0)
    assert (await job_runs.get_run(db, second["_id"])).status == "pending"
    assert await _finish(db, ME, first["_id"])
    assert await job_runs.claim_run(db, ME, second, now=T0) is not None

    side_by_side = await make_job(db, "ok-too", "* * * * *", T0, overlap="allow")
    for run in [await _pending(db, side_by_side, s) for s in (0, 60)]:
        # A claimer knows only PENDING_RUN_FIELDS of a run; the claim (one write) answers the run as stored.
        known = {name: run[name] for name in job_runs.PENDING_RUN_FIELDS if name in run}
        claimed = await job_runs.claim_run(db, ME, known, now=T0)
        assert claimed is not None
        stored = await db.job_runs.find_one({"_id": run["_id"]})
        assert from_document(JobRun, claimed) == from_document(JobRun, stored)
    assert [run["status"] for run in await runs_of(db, side_by_side["_id"])] == ["running", "running"]


async def test_a_claim_round_is_one_write_and_a_taken_lock_stops_it_where_it_stands(
    db: Database, mongo_uri: str
) -> None:
    sent = CommandLog()
    client: AsyncMongoClient[Document] = connect(mongo_uri, event_listeners=[sent])
    watched = client[db.name]
    try:
        jobs = [await make_job(db, f"ok-{i}", "* * * * *", T0) for i in range(4)]
        batch = [await _pending(db, job, 0) for job in jobs]
        sent.clear()
        claimed = await job_runs.claim_runs(watched, ME, batch, now=T0, token=ObjectId())
        assert sent.names == ["update"]  # all four won: one write, nothing read back
        assert ([run["_id"] for run in claimed.won], claimed.locked_job) == ([run["_id"] for run in batch], None)
        for run in claimed.won:
            stored = await db.job_runs.find_one({"_id": run["_id"]})
            assert from_document(JobRun, run) == from_document(JobRun, stored)
            assert (stored["status"], stored["claimedBy"]) == ("running", "instance-1")

        # the next fires, with the second job's still running: its run stops the write
        for run in claimed.won[:1] + claimed.won[2:]:
            assert await _finish(db, ME, run["_id"])
        later = [await _pending(db, job, 60) for job in jobs]
        sent.clear()
        stopped = await job_runs.claim_runs(watched, ME, later, now=T0, token=ObjectId())
        assert sent.names == ["update", "find"]  # fewer changed than sent: one read tells which are ours
        assert stopped.locked_job == jobs[1]["_id"]
        statuses = {run["_id"]: (await job_runs.get_run(db, run["_id"])).status for run in later}
        won = {run["_id"] for run in stopped.won}
        assert won == {run_id for run_id, status in statuses.items() if status == "running"}
        assert statuses[later[1]["_id"]] == "pending" and later[0]["_id"] in won  # in the server's order
        assert await job_runs.claim_runs(watched, ME, [later[1]], now=T0, token=ObjectId()) == job_runs.ClaimedBatch(
            [], jobs[1]["_id"]
        )
    finally:
        await client.close()


async def test_claimers_racing_for_one_round_win_each_run_once(db: Database) -> None:
    jobs = [await make_job(db, f"ok-{i}", "* * * * *", T0) for i in range(6)]
    batch = [await _pending(db, job, 0) for job in jobs]
    others = [Claimant(f"w{i}", f"instance-{i}", lease_seconds=30) for i in range(3)]
    rounds = await asyncio.gather(
        *(job_runs.claim_runs(db, claimant, batch, now=T0, token=ObjectId()) for claimant in others)
    )
    won = [run["_id"] for claimed in rounds for run in claimed.won]
    assert sorted(won) == sorted(run["_id"] for run in batch)  # every run once, whoever won it
    for claimant, claimed in zip(others, rounds, strict=True):
        for run in claimed.won:
            assert (await db.job_runs.find_one({"_id": run["_id"]}))["claimedBy"] == claimant.instance


async def test_a_run_is_claimed_only_once_due(db: Database) -> None:
    job = await make_job(db, "ok", "* * * * *", T0)
    retry = await job_runs.insert_fire(
        db,
        job,
        trigger="retry",
        scheduled_for=T0,
        attempt=2,
        status="pending",
        worker_id="w",
        token=None,
        now=T0,
        due_at=T0 + timedelta(seconds=10),
    )
    assert retry is not None
    assert await job_runs.claim_run(db, ME, retry, now=T0 + timedelta(seconds=9)) is None
    assert await job_runs.claim_run(db, ME, retry, now=T0 + timedelta(seconds=10)) is not None


async def test_a_claimers_writes_land_only_while_its_run_lease_holds(db: Database) -> None:
    job = await make_job(db, "ok", "* * * * *", T0)
    run = await _pending(db, job, 0)
    run_id = run["_id"]
    assert await job_runs.claim_run(db, ME, run, now=T0) is not None
    other = Claimant("w1", "another-process-same-worker-id", lease_seconds=30)
    assert await job_runs.renew_run_leases(db, other, [run_id]) == {run_id}
    assert not await _finish(db, other, run_id)

    seen = await db.job_runs.find_one({"_id": run_id})
    assert seen is not None
    await eventually(lambda: _renewed(db, run_id, seen["leaseUntil"]))
    assert not await job_runs.mark_lost(db, seen, token=2, now=T0, duration_ms=None)  # a heartbeat landed since

    current = await db.job_runs.find_one({"_id": run_id})
    assert current is not None
    assert await job_runs.mark_lost(db, current, token=2, now=T0, duration_ms=None)
    assert await job_runs.renew_run_leases(db, ME, [run_id]) == {run_id}
    assert not await _finish(db, ME, run_id)
    stored = await job_runs.get_run(db, run_id)
    assert (stored.status, stored.error, stored.fencing_token) == ("failed", "worker lost", 2)


async def _finish(db: Database, claimant: Claimant, run_id: ObjectId) -> bool:
    """The claimer's outcome write, for one run: whether it landed."""
    finished = job_runs.FinishedRun(run_id, "succeeded", T0, {})
    return await job_runs.finish_claimed_runs(db, claimant, [finished]) == {run_id}


async def _renewed(db: Database, run_id: ObjectId, before: object) -> bool:
    await job_runs.renew_run_leases(db, ME, [run_id])
    run = await db.job_runs.find_one({"_id": run_id})
    return run is not None and run["leaseUntil"] != before


async def test_the_leader_fails_a_run_whose_lease_lapsed_and_retries_it(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "0 0 1 1 *", T0, retry={"maxAttempts": 2, "backoffSeconds": 0})
    lost = job_runs.new_run_document(job, trigger="manual", scheduled_for=T0, now=T0)
    server_now = await job_runs.server_time(db)
    lost |= {"status": "running", "claimedBy": "dead", "workerId": "w9", "leaseUntil": server_now, "startedAt": T0}
    await db.job_runs.insert_one(lost)
    await harness.start()
    failed = await job_runs.get_run(db, lost["_id"])
    assert (failed.status, failed.error) == ("failed", "worker lost")
    retry = await eventually(lambda: harness.run_with(job["_id"], trigger="retry", status="succeeded"))
    assert (retry["attempt"], retry["scheduledFor"], retry["workerId"]) == (2, T0, "test-worker")


async def test_claims_alternate_between_workspaces(harness: Harness, db: Database, tmp_path: Path) -> None:
    """One slot; a workspace with five due runs and one with a single run: the single run is claimed first
    or second, never behind the five."""
    gates: dict[ObjectId, Path] = {}
    for i in range(5):
        job = await make_job(db, f"gate:{tmp_path / f'big{i}'}", ONCE_AT_T0_PLUS_5S, T0, workspace_name="big")
        gates[job["_id"]] = tmp_path / f"big{i}"
    small = await make_job(db, f"gate:{tmp_path / 'small'}", ONCE_AT_T0_PLUS_5S, T0, workspace_name="small")
    gates[small["_id"]] = tmp_path / "small"
    harness.settings = harness.settings.with_overrides(max_concurrent_runs=1)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    order: list[ObjectId] = []
    for _ in range(2):
        [running] = await eventually(lambda: runs_of_status(db, "running"))
        order.append(running["workspaceId"])
        await eventually(lambda running=running: file_written(gates[running["jobId"]].with_suffix(".seen")))  # type: ignore[misc]
        gates[running["jobId"]].with_suffix(".release").touch()
        await eventually(lambda running=running: _finished(db, running["_id"]))  # type: ignore[misc]
    assert small["workspaceId"] in order
    assert len(set(order)) == 2


async def runs_of_status(db: Database, status: str) -> list[Document]:
    return await db.job_runs.find({"status": status}).to_list()


async def _finished(db: Database, run_id: ObjectId) -> bool:
    return await db.job_runs.count_documents({"_id": run_id, "status": "succeeded"}) == 1


async def test_max_runs_per_workspace_caps_running_runs_across_the_workspace(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    for i in range(3):
        await make_job(db, f"gate:{tmp_path / str(i)}", ONCE_AT_T0_PLUS_5S, T0)
    harness.settings = harness.settings.with_overrides(max_concurrent_runs=4, max_runs_per_workspace=1)
    await harness.start()
    harness.clock.set(T0 + timedelta(seconds=5))
    for done in range(3):
        [running] = await eventually(lambda: runs_of_status(db, "running"))
        statuses = Counter(run["status"] for run in await db.job_runs.find({}).to_list())
        assert statuses == Counter({"running": 1, "pending": 2 - done, "succeeded": done}) - Counter()
        gate = Path((await db.syncjobs.find_one({"_id": running["jobId"]}) or {})["name"].partition(":")[2])
        await eventually(lambda gate=gate: file_written(gate.with_suffix(".seen")))  # type: ignore[misc]
        gate.with_suffix(".release").touch()
        await eventually(lambda running=running: _finished(db, running["_id"]))  # type: ignore[misc]


@dataclass
class _Writes:
    """The write commands a client sent, the writes (statements) they carried and the documents they wrote
    (inserted, modified, deleted), per (command, collection)."""

    commands: Counter[tuple[str, str]] = field(default_factory=Counter)
    statements: Counter[tuple[str, str]] = field(default_factory=Counter)
    documents: Counter[tuple[str, str]] = field(default_factory=Counter)


_WRITES = {"insert", "update", "delete", "findAndModify"}


def _writes(log: CommandLog) -> _Writes:
    counted = _Writes()
    for sent in log.sent:
        if sent.name in _WRITES:
            on = (sent.name, sent.target)
            counted.commands[on] += 1
            counted.statements[on] += sent.statements
            if sent.reply is not None:
                inserted_or_deleted: int = sent.reply.get("n", 0)
                counted.documents[on] += int(sent.reply.get("nModified", inserted_or_deleted))
    return counted


async def test_a_burst_costs_three_writes_per_run_and_two_per_burst(
    db: Database, settings: Settings, mongo_uri: str
) -> None:
    jobs = 8
    for i in range(jobs):
        await make_job(db, f"ok-{i}", ONCE_AT_T0_PLUS_5S, T0)
    log = CommandLog()
    client = connect(mongo_uri, event_listeners=[log])
    try:
        async with leadership_harness(client[db.name], settings) as harness:
            await harness.start()
            log.clear()
            harness.clock.set(T0 + timedelta(seconds=5))
            await eventually(lambda: _jobs_recorded(db, jobs))
            assert len(await runs_of_status(db, "succeeded")) == jobs
    finally:
        await client.close()
    counter = _writes(log)
    # one insert_many of the fires and one bulk_write of nextRunAt for the burst; per run a claim (lock and
    # start in one), its outcome on the run, its outcome on the job: the runs a claim round picks share one
    # statement, the outcomes of runs that end together one command per collection
    runs, syncjobs = ("update", "job_runs"), ("update", "syncjobs")
    assert counter.documents == Counter({("insert", "job_runs"): jobs, runs: 2 * jobs, syncjobs: 2 * jobs})
    assert counter.statements[("insert", "job_runs")] == jobs and counter.statements[syncjobs] == 2 * jobs
    assert jobs < counter.statements[runs] < 2 * jobs, counter.statements  # the outcomes, and fewer claims
    assert counter.commands[("insert", "job_runs")] == 1
    assert jobs < counter.commands[runs] < 2 * jobs, counter.commands  # the claim rounds, then the outcomes
    assert 1 < counter.commands[syncjobs] <= 1 + jobs, counter.commands
    assert counter.commands.keys() == {("insert", "job_runs"), runs, syncjobs}, counter.commands


async def _jobs_recorded(db: Database, count: int) -> bool:
    return await db.syncjobs.count_documents({"lastStatus": "succeeded"}) == count


async def test_a_manual_run_of_a_deleted_job_is_cancelled(harness: Harness, db: Database) -> None:
    job = await make_job(db, "ok", "0 0 1 1 *", T0)
    await db.syncjobs.delete_one({"_id": job["_id"]})
    await harness.start()
    run = await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)
    done = await eventually(lambda: db.job_runs.find_one({"_id": ObjectId(run.id), "status": "cancelled"}))
    assert done["error"] == "job deleted"


async def test_a_finished_run_hands_its_jobs_identity_to_the_alert_evaluation_unless_the_job_is_gone(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    """The claimer already read the job: the evaluation gets its identity instead of reading it again, and
    a job deleted while its run went has no alerts to evaluate."""
    kept = await make_job(db, "fail", "0 0 1 1 *", T0)
    release = tmp_path / "release"
    deleted = await make_job(db, f"wait:{release}", "0 0 1 1 *", T0)
    finished: list[tuple[Document, ObjectId]] = []

    async def on_run_finished(job: Document, run_id: ObjectId) -> None:
        finished.append((job, run_id))

    async def any_finished() -> list[tuple[Document, ObjectId]]:
        return finished

    spec = ExecutorSpec.from_settings(settings.with_overrides(executor_command=FAKE_EXECUTOR))
    dispatcher = RunDispatcher(
        db, FakeClock(T0), ME, executor=spec, health=DatabaseHealth(), on_run_finished=on_run_finished
    )
    claiming = asyncio.create_task(dispatcher.run())
    try:
        failed_run = await job_runs.create_manual_run(db, from_document(SyncJob, kept), T0)
        await eventually(any_finished)
        identity = {"_id": kept["_id"], "name": "fail", "workspaceId": kept["workspaceId"]}
        assert finished == [(identity, ObjectId(failed_run.id))]

        gone_run = await job_runs.create_manual_run(db, from_document(SyncJob, deleted), T0)
        await eventually(lambda: db.job_runs.find_one({"_id": ObjectId(gone_run.id), "status": "running"}))
        await db.syncjobs.delete_one({"_id": deleted["_id"]})
        release.touch()
        await eventually(lambda: db.job_runs.find_one({"_id": ObjectId(gone_run.id), "status": "succeeded"}))
        dispatcher.stop_claiming()
        await claiming
        await dispatcher.finish(grace_seconds=5)
        assert len(finished) == 1
    finally:
        claiming.cancel()
        await asyncio.gather(claiming, return_exceptions=True)


@asynccontextmanager
async def claiming_with_the_fake_executor(db: Database, settings: Settings) -> AsyncIterator[ControlClusterCache]:
    """A claimer (`ME`) that runs the fake executor on the runs it claims, stopped and its runs finished
    when the block ends; yields the control cluster it hands the executors, to compare their specs with."""
    control = ControlClusterCache(db.client, settings)
    spec = replace(ExecutorSpec.from_settings(settings.with_overrides(executor_command=FAKE_EXECUTOR)), control=control)
    dispatcher = RunDispatcher(db, FakeClock(T0), ME, executor=spec, health=DatabaseHealth())
    claiming = asyncio.create_task(dispatcher.run())
    try:
        yield control
    finally:
        dispatcher.stop_claiming()
        await claiming
        await dispatcher.finish(grace_seconds=5)


async def test_a_claimer_hands_the_executor_its_runs_spec_or_fails_the_run_when_it_cannot_read_it(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    """The spec goes over the run channel (the executor's stdin), its connection settings opened: the
    executor holds no key to open them, and no control client to read them itself."""
    handed, unread = tmp_path / "handed", tmp_path / "unread"
    job = await make_job(db, f"spec:{handed}", "0 0 1 1 *", T0)
    orphan = await make_job(db, f"spec:{unread}", "0 0 1 1 *", T0)
    await db.data_sources.delete_one({"_id": orphan["dataSourceId"]})  # the spec cannot be read
    async with claiming_with_the_fake_executor(db, settings) as control:
        run = await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)
        orphan_run = await job_runs.create_manual_run(db, from_document(SyncJob, orphan), T0)
        for run_id, status in ((run.id, "succeeded"), (orphan_run.id, "failed")):
            await eventually(
                lambda run_id=run_id, status=status: db.job_runs.find_one({"_id": ObjectId(run_id), "status": status})
            )
        given = RunSpec.from_line(handed.read_bytes(), ObjectId(run.id))
        assert (given.job.id, given.source["_id"], given.destination["_id"]) == (
            str(job["_id"]),
            job["dataSourceId"],
            job["destinationDatabaseId"],
        )
        assert given.control_process_ids == (await control.get()).process_ids != frozenset()
        failed = await db.job_runs.find_one({"_id": ObjectId(orphan_run.id)})
        assert failed is not None and "the run's spec could not be read" in failed["error"]
        assert not unread.exists()  # no executor was started for it


async def test_what_an_executor_prints_of_its_runs_secrets_never_reaches_the_run(
    db: Database, settings: Settings
) -> None:
    """An executor (or a tap) that prints an opened secret, as a crash's traceback would: the worker, which
    opened the run's settings, scrubs them from the run's error and stderr tail before recording."""
    job = await make_job(db, "leak", "0 0 1 1 *", T0)
    secret = "hunter2-" + str(ObjectId())
    body = {"name": f"dst-{ObjectId()}", "config": {"uri": f"mongodb://u:{secret}@127.0.0.1:1/", "database": "x"}}
    destination = await destinations.store.create(db, job["workspaceId"], DestinationInput.model_validate(body))
    await db.syncjobs.update_one({"_id": job["_id"]}, {"$set": {"destinationDatabaseId": ObjectId(destination.id)}})
    job["destinationDatabaseId"] = ObjectId(destination.id)
    async with claiming_with_the_fake_executor(db, settings):
        run = await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)
        failed = await eventually(lambda: db.job_runs.find_one({"_id": ObjectId(run.id), "status": "failed"}))
        assert "could not reach" in failed["error"] and "crashed holding" in failed["stderrTail"]
        assert secret not in failed["error"] and secret not in failed["stderrTail"]


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = start_embedded(tmp_path_factory.mktemp("faulty"), extra_args=("--enable-test-commands",))
    try:
        yield server
    finally:
        server.stop()


async def test_a_claimer_that_cannot_renew_its_run_lease_kills_the_executor_and_records_nothing(
    faulty_server: EmbeddedServer, db_name: str, settings: Settings, tmp_path: Path
) -> None:
    """The database stops answering this replica (a failpoint on its client's connections): once its run's
    lease can no longer be trusted it kills the executor, and it never writes an outcome the leader
    (which fails the run as lost) did not expect."""
    admin, cut = connect(faulty_server.uri), connect(faulty_server.uri, appname=CUT_OFF_APP)
    db = admin[db_name]
    await ensure_indexes(db)
    pids = tmp_path / "pids"
    job = await make_job(db, f"hang:{pids}", "0 0 1 1 *", T0)
    spec = ExecutorSpec.from_settings(
        settings.with_overrides(mongodb_uri=faulty_server.uri, executor_command=FAKE_EXECUTOR)
    )
    claimant = Claimant("w-cut", "instance-cut", lease_seconds=3)
    dispatcher = RunDispatcher(cut[db_name], FakeClock(T0), claimant, executor=spec, health=DatabaseHealth())
    claiming = asyncio.create_task(dispatcher.run())
    try:
        run = await _manual_run(db, job)
        await eventually(lambda: db.job_runs.find_one({"_id": run, "status": "running", "claimedBy": "instance-cut"}))
        await eventually(lambda: file_written(pids))
        executor_pid = int(pids.read_text().split()[0])
        await _cut_off(admin, "alwaysOn")
        await eventually(lambda: process_gone(executor_pid), within=15)
        await _cut_off(admin, "off")
        dispatcher.stop_claiming()
        await claiming
        await dispatcher.finish(grace_seconds=5)
        stored = await job_runs.get_run(db, run)
        assert (stored.status, stored.finished_at) == ("running", None)  # left for the leader to fail as lost
    finally:
        await _cut_off(admin, "off")
        claiming.cancel()
        await asyncio.gather(claiming, return_exceptions=True)
        await cut.close()
        await admin.close()


CUT_OFF_APP = "claimer-cut-off"


async def _cut_off(client: AsyncMongoClient[Document], mode: str) -> None:
    commands = ["update", "find", "insert", "aggregate", "distinct", "getMore", "hello"]
    data = {"failCommands": commands, "closeConnection": True, "appName": CUT_OFF_APP}
    await client.admin.command("configureFailPoint", "failCommand", mode=mode, data=data)


async def _manual_run(db: Database, job: Document) -> ObjectId:
    return ObjectId((await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)).id)
