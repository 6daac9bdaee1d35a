"""The least the server can spend per run in syncjobs' data model, beside what APScheduler 3's writes cost
it, on one fresh SecantusDB in the same pass (issue 22: is the goal's ratio reachable on this server?).

    python -m bench.run_floor --jobs 400 --repeat 3

syncjobs' side is only the documents a scheduled run's life writes, through the store's own functions,
write concerns and indexes (`ensure_indexes`), in the product's batch sizes: the leader's fires and
`nextRunAt` moves (`FIRE_BATCH_JOBS` jobs per write pair), claims in rounds of `--slots` runs
(`claim_runs`), each run's copy of one document (a `find_one` and a `replace_one` into its own
destination), and the outcomes of a round on the runs and on their jobs (`finish_claimed_runs`,
`record_run_outcomes`). No worker, no lease, no change stream, no executor, no spec read, no log: the
floor any implementation of this design pays, whatever its processes do.

APScheduler's side is what its MongoDBJobStore and the same job body send per run (the peer table's 2
writes and 1 read): the job's `next_run_time` and pickled state `$set`, the `find_one` and the
`replace_one`. The ratio `APScheduler / syncjobs` of server CPU per run is then the best ratio of
throughputs syncjobs can reach on a server that is the limit (SecantusDB serves on about one core).

Each pass fires every job once (the destinations exist after a first, untimed pass: the steady state).
CPU is the server process's utime + stime over the loop, its idle rate taken off.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import statistics
import time
from datetime import UTC, datetime, timedelta

from bson import Binary, ObjectId
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database, Document, close_client, connect, ensure_indexes
from syncjobs.shared.store import job_runs, sync_jobs
from syncjobs.shared.store.job_runs import FinishedRun
from syncjobs.shared.store.sync_jobs import JobOutcome, NextRun
from syncjobs.worker.leadership import FIRE_BATCH_JOBS

from bench.run_index_costs import CLAIMANT, cpu_per, fire, idle_rate
from bench.server_costs import load
from bench.worker_support import job_docs, server

TOKEN = 1  # the leader's fencing token
APS_STATE = Binary(pickle.dumps({"id": "job", "func": "bench:copy_one", "trigger": "cron", "args": (1,)}))


async def copy_one(db: Database, job_index: int) -> None:
    """The job body of the peer table: one document from the source into the job's own destination."""
    doc = await db.source.find_one({"_id": job_index})
    assert doc is not None
    await db[f"dest_{job_index}"].replace_one({"_id": doc["_id"]}, doc, upsert=True)


async def syncjobs_pass(db: Database, jobs: list[Document], slots: int, *, job_outcomes: bool = True) -> None:
    """A fire of every job, claimed, run and recorded; `job_outcomes=False`: the job keeps no outcome of
    its own (its status would be read from its latest run: a product decision, measured, not made)."""
    now = datetime.now(UTC)
    index_of = {job["_id"]: int(job["name"].removeprefix("bench-")) for job in jobs}  # job_docs' job i: source i
    pending: list[Document] = []
    for start in range(0, len(jobs), FIRE_BATCH_JOBS):
        chunk = jobs[start : start + FIRE_BATCH_JOBS]
        pending += await job_runs.insert_fires(db, [fire(job, 0, now) for job in chunk])
        moves = [NextRun(job["_id"], job["version"], now + timedelta(hours=1)) for job in chunk]
        await sync_jobs.advance_next_runs(db, moves, TOKEN)
    assert len(pending) == len(jobs)
    for start in range(0, len(pending), slots):
        won = (await job_runs.claim_runs(db, CLAIMANT, pending[start : start + slots], now=now, token=ObjectId())).won
        await asyncio.gather(*(copy_one(db, index_of[run["jobId"]]) for run in won))
        ended = datetime.now(UTC)
        outcome = {"durationMs": 5, "exitCode": 0, "error": None, "stats": {"entities": 1}}
        finished = [FinishedRun(run["_id"], RunStatus.SUCCEEDED, ended, outcome) for run in won]
        stored = await job_runs.finish_claimed_runs(db, CLAIMANT, finished)
        assert len(stored) == len(won)
        if job_outcomes:
            outcomes = [JobOutcome(run["jobId"], RunStatus.SUCCEEDED, ended, None, 5) for run in won]
            await sync_jobs.record_run_outcomes(db, outcomes)


async def apscheduler_pass(db: Database, jobs: list[Document], threads: int) -> None:
    """The store's write per run, then the body; bodies `threads` at a time, as its thread pool runs them."""
    next_run_time = time.time() + 3600
    for start in range(0, len(jobs), threads):
        indexes = range(start, min(start + threads, len(jobs)))
        for i in indexes:
            await db.apscheduler_jobs.update_one(
                {"_id": f"job-{i}"}, {"$set": {"next_run_time": next_run_time, "job_state": APS_STATE}}
            )
        await asyncio.gather(*(copy_one(db, i) for i in indexes))


async def raw_insert_rate(db: Database, count: int = 500) -> float:
    started = time.monotonic()
    for i in range(count):
        await db.raw_inserts.insert_one({"_id": i, "n": i})
    return count / (time.monotonic() - started)


async def one_round(jobs_count: int, slots: int) -> tuple[float, float, float, float]:
    """(syncjobs' floor, the same without the job's outcome, APScheduler's, in server CPU-s per run; the
    server's insert_one/s) on a fresh server."""
    with server() as db_server:
        client = connect(db_server.uri)
        try:
            pid = db_server.process.pid
            db = client["floor"]
            await ensure_indexes(db)
            jobs = job_docs(jobs_count, "0 * * * *", datetime.now(UTC))
            await db.syncjobs.insert_many(jobs)
            await db.source.insert_many([{"_id": i, "name": f"item {i}"} for i in range(jobs_count)])
            await db.apscheduler_jobs.create_index("next_run_time", sparse=True)
            await db.apscheduler_jobs.insert_many(
                [{"_id": f"job-{i}", "next_run_time": 0.0, "job_state": APS_STATE} for i in range(jobs_count)]
            )
            await apscheduler_pass(db, jobs, 10)  # untimed: every destination exists from here on
            await syncjobs_pass(db, jobs, slots)
            idle = await idle_rate(pid)
            ours = await cpu_per(pid, jobs_count, lambda: syncjobs_pass(db, jobs, slots), idle)
            bare = await cpu_per(pid, jobs_count, lambda: syncjobs_pass(db, jobs, slots, job_outcomes=False), idle)
            theirs = await cpu_per(pid, jobs_count, lambda: apscheduler_pass(db, jobs, 10), idle)
            return ours, bare, theirs, await raw_insert_rate(db)
        finally:
            await close_client(client)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=400, help="jobs, each fired once per pass")
    parser.add_argument("--slots", type=int, default=4, help="runs per claim round (SYNCJOBS_MAX_CONCURRENT_RUNS)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh servers, one pass of each per server")
    args = parser.parse_args()
    print(f"load average at the start: {load()}")
    columns = ["server", "syncjobs' floor", "without the job's outcome", "APScheduler 3", "APScheduler / floor"]
    print("server CPU-ms per run, and the ratios of them:")
    print("| " + " | ".join([*columns, "APScheduler / floor without", "insert_one/s"]) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ratios, bare_ratios = [], []
    for attempt in range(args.repeat):
        ours, bare, theirs, inserts = await one_round(args.jobs, args.slots)
        ratios.append(theirs / ours)
        bare_ratios.append(theirs / bare)
        figures = [ours * 1000, bare * 1000, theirs * 1000, theirs / ours, theirs / bare]
        print(f"| {attempt + 1} | " + " | ".join(f"{f:.2f}" for f in figures) + f" | {inserts:.0f} |", flush=True)
    print(
        f"median APScheduler / floor: {statistics.median(ratios):.2f}, without the job's outcome: "
        f"{statistics.median(bare_ratios):.2f}; load average at the end: {load()}"
    )


if __name__ == "__main__":
    asyncio.run(main())
