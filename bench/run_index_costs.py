"""The server's CPU per run's life on `job_runs` by the collection's index set (issue 22, fewer job_runs
indexes): on a fresh SecantusDB per pass, each run inserted pending (`insert_fires`, the leader's write),
claimed (`claim_run`) and finished (`finish_claimed_runs`), one after the other, through the store's own
functions and write concerns.

    python -m bench.run_index_costs --runs 500 --repeat 3 [--history 5000]

- `before`: job_runs' indexes up to issue 22 (the plan's and `workspace_job_started`);
- `after`: shared/mongo.py's `index_plan`;
- `floor` (with `--floor`): the unique ones only (`fire_key`, `job_running`), what no plan can do without.
The two alternate, pass by pass. `--history` finished runs are stored first (the indexes' size). CPU is
the server process's utime + stime over the loop, its idle rate taken off; a ping's is measured on the
same server (a ratio is what holds on a shared machine). Writes go without retryable-write records
(`retryWrites=false`), whose cost grows with the records held, not with the indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database, Document, close_client, connect, index_plan
from syncjobs.shared.store import job_runs
from syncjobs.shared.store.job_runs import Claimant, FinishedRun

from bench.server_costs import load, server_cpu_seconds
from bench.worker_support import server

CLAIMANT = Claimant(worker_id="bench", instance="bench-1", lease_seconds=60)
JOBS = 50
PINGS = 3000
RETIRED = [
    IndexModel(
        [("workspaceId", ASCENDING), ("jobId", ASCENDING), ("startedAt", DESCENDING)], name="workspace_job_started"
    ),
]


def index_sets(floor: bool) -> dict[str, list[IndexModel]]:
    [plan] = [p for p in index_plan() if p.collection == "job_runs"]
    after = list(plan.indexes)
    before = after + RETIRED
    unique = [m for m in after if m.document.get("unique")]
    return {"before": before, "after": after} | ({"floor": unique} if floor else {})


def fire(job: Document, n: int, now: datetime) -> Document:
    """A scheduled fire as the leader writes it (`job_runs.fire_document`'s fields)."""
    doc = job_runs.new_run_document(job, trigger="schedule", scheduled_for=now + timedelta(milliseconds=n), now=now)
    return doc | {"workerId": "bench", "fencingToken": 1, "dueAt": None, "exclusive": True}


async def history(db: Database, jobs: list[Document], count: int) -> None:
    now = datetime.now(UTC) - timedelta(days=1)
    docs = [
        fire(jobs[i % len(jobs)], i, now) | {"status": RunStatus.SUCCEEDED, "finishedAt": now} for i in range(count)
    ]
    for start in range(0, len(docs), 1000):
        await db.job_runs.insert_many(docs[start : start + 1000])


async def lives(db: Database, jobs: list[Document], first: int, count: int) -> None:
    for n in range(first, first + count):
        now = datetime.now(UTC)
        [pending] = await job_runs.insert_fires(db, [fire(jobs[n % len(jobs)], n, now)])
        claimed = await job_runs.claim_run(db, CLAIMANT, pending, now=now)
        assert claimed is not None
        outcome = {"durationMs": 5, "exitCode": 0, "error": None, "stats": {"entities": 1}}
        finished = FinishedRun(pending["_id"], RunStatus.SUCCEEDED, now, outcome)
        assert await job_runs.finish_claimed_runs(db, CLAIMANT, [finished]) == {pending["_id"]}


async def idle_rate(pid: int, seconds: float = 1.0) -> float:
    before = server_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (server_cpu_seconds(pid) - before) / seconds


async def cpu_per(pid: int, count: int, operations: Callable[[], Awaitable[None]], idle: float) -> float:
    """Server CPU-s per one of the `count` operations `operations()` makes, the server's idle rate taken off."""
    before, started = server_cpu_seconds(pid), time.monotonic()
    await operations()
    return (server_cpu_seconds(pid) - before - idle * (time.monotonic() - started)) / count


async def pings(db: Database, count: int) -> None:
    for _ in range(count):
        await db.command("ping")


async def one_pass(indexes: list[IndexModel], runs: int, stored: int) -> tuple[float, float]:
    """(server CPU-s per run's life, per ping) on a fresh server."""
    with server() as db_server:
        client = connect(db_server.uri, retryWrites=False)
        try:
            pid = db_server.process.pid
            db = client["costs"]
            await db.job_runs.create_indexes(indexes)
            jobs = [{"_id": ObjectId(), "workspaceId": ObjectId()} for _ in range(JOBS)]
            await history(db, jobs, stored)
            await lives(db, jobs, stored, 20)  # warm: first touches of the tables
            idle = await idle_rate(pid)
            per_run = await cpu_per(pid, runs, lambda: lives(db, jobs, stored + 20, runs), idle)
            per_ping = await cpu_per(pid, PINGS, lambda: pings(db, PINGS), idle)
            return per_run, per_ping
        finally:
            await close_client(client)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500, help="run lives per timed loop")
    parser.add_argument("--repeat", type=int, default=3, help="passes per index set, alternating")
    parser.add_argument("--history", type=int, default=0, help="finished runs stored before the loop")
    parser.add_argument("--floor", action="store_true", help="also the unique indexes alone")
    args = parser.parse_args()
    sets = index_sets(args.floor)
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in sets}
    print(f"load average at the start: {load()}")
    print("| pass | index set | indexes | server CPU-ms per run | x a ping's | load average |")
    print("|---:|---|---:|---:|---:|---|")
    for attempt in range(args.repeat):
        for name, indexes in sets.items():
            per_run, per_ping = await one_pass(indexes, args.runs, args.history)
            found[name].append((per_run, per_ping))
            ratio = per_run / max(per_ping, 1e-9)
            print(
                f"| {attempt + 1} | {name} | {len(indexes)} | {per_run * 1000:.2f} | {ratio:.1f} | {load()} |",
                flush=True,
            )
    medians = {name: statistics.median(run for run, _ in passes) for name, passes in found.items()}
    in_pings = {
        name: statistics.median(run / max(ping, 1e-9) for run, ping in passes) for name, passes in found.items()
    }
    for name in sets:
        print(f"median per run, {name}: {medians[name] * 1000:.2f} ms ({in_pings[name]:.1f} pings)")
    print(
        f"after / before: {medians['after'] / medians['before']:.2f} (in pings: "
        f"{in_pings['after'] / in_pings['before']:.2f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
