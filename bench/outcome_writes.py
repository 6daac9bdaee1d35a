"""The server's CPU for recording run outcomes, per run, by how they are written (issue 22, lever 3): on a
fresh SecantusDB, runs `running` under one claimer, finished in batches of `--batch` with durable writes.

    python -m bench.outcome_writes [--batch 8] [--runs 400]

- `one`: each run's outcome on the run, then on its job: two update_one per run (before lever 3);
- `bulk`: one bulk_write per batch on job_runs, one on syncjobs (`worker/outcome_writer.py`);
- `runs bulk` / `runs update_many` / `runs update_many $switch`: job_runs alone, the batch as one
  bulk_write, as one update_many setting the same fields on every run (a floor: real outcomes differ),
  and as one update_many whose pipeline picks each run's fields by `_id`.
Every mode runs twice, in turns, each on runs of its own; CPU is the server process's utime + stime.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from syncjobs.shared.embedded import start_embedded
from syncjobs.shared.mongo import Database, Document, connect, durable, ensure_indexes

NOW = datetime.now(UTC)
FIELDS = {"status": "succeeded", "finishedAt": NOW, "durationMs": 5, "exitCode": 0, "error": None, "stats": {"n": 1}}


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def running_runs(db: Database, count: int) -> list[Document]:
    jobs = [
        {"_id": ObjectId(), "workspaceId": ObjectId(), "name": str(ObjectId()), "runCount": 0} for _ in range(count)
    ]
    await db.syncjobs.insert_many(jobs)
    runs = [
        {
            "_id": ObjectId(),
            "jobId": job["_id"],
            "workspaceId": job["workspaceId"],
            "trigger": "schedule",
            "scheduledFor": NOW,
            "attempt": 1,
            "status": "running",
            "exclusive": True,
            "claimedBy": "bench",
            "leaseUntil": NOW,
            "createdAt": NOW,
        }
        for job in jobs
    ]
    await db.job_runs.insert_many(runs)
    return runs


def run_filter(run: Document) -> Document:
    return {"_id": run["_id"], "status": "running", "claimedBy": "bench"}


RUN_UPDATE = {"$set": FIELDS, "$unset": {"leaseUntil": ""}}
JOB_UPDATE = [{"$set": {"lastRunAt": NOW, "lastStatus": "succeeded", "runCount": {"$add": ["$runCount", 1]}}}]


async def one(db: Database, runs: list[Document]) -> None:
    for run in runs:
        await durable(db.job_runs).update_one(run_filter(run), RUN_UPDATE)
        await durable(db.syncjobs).update_one({"_id": run["jobId"]}, JOB_UPDATE)


async def bulk(db: Database, runs: list[Document]) -> None:
    await durable(db.job_runs).bulk_write([UpdateOne(run_filter(run), RUN_UPDATE) for run in runs], ordered=False)
    await durable(db.syncjobs).bulk_write([UpdateOne({"_id": run["jobId"]}, JOB_UPDATE) for run in runs], ordered=False)


async def runs_bulk(db: Database, runs: list[Document]) -> None:
    await durable(db.job_runs).bulk_write([UpdateOne(run_filter(run), RUN_UPDATE) for run in runs], ordered=False)


def _batch(runs: list[Document]) -> Document:
    return {"_id": {"$in": [run["_id"] for run in runs]}, "status": "running", "claimedBy": "bench"}


async def runs_update_many(db: Database, runs: list[Document]) -> None:
    await durable(db.job_runs).update_many(_batch(runs), RUN_UPDATE)


async def runs_switch(db: Database, runs: list[Document]) -> None:
    def each(value: Any) -> Document:
        branches = [{"case": {"$eq": ["$_id", run["_id"]]}, "then": {"$literal": value}} for run in runs]
        return {"$switch": {"branches": branches, "default": None}}

    pipeline = [{"$set": {name: each(value) for name, value in FIELDS.items()}}, {"$unset": "leaseUntil"}]
    await durable(db.job_runs).update_many(_batch(runs), pipeline)


MODES: dict[str, Callable[[Database, list[Document]], Awaitable[None]]] = {
    "one": one,
    "bulk": bulk,
    "runs bulk": runs_bulk,
    "runs update_many": runs_update_many,
    "runs update_many $switch": runs_switch,
}


async def measure(uri: str, pid: int, batch: int, count: int) -> None:
    client = connect(uri)
    db = client["bench_outcomes"]
    await ensure_indexes(db)
    for _ in range(2):
        for name, write in MODES.items():
            runs = await running_runs(db, count)
            await asyncio.sleep(0.3)  # the inserts' change-stream and TTL work settles
            before = server_cpu(pid)
            for start in range(0, count, batch):
                await write(db, runs[start : start + batch])
            spent = server_cpu(pid) - before
            print(f"batch {batch:>2} {name:<26} server CPU {spent / count * 1000:5.2f} ms/run", flush=True)
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    server = start_embedded(tempfile.mkdtemp(prefix="bench-outcomes-"))
    try:
        asyncio.run(measure(server.uri, server.process.pid, args.batch, args.runs))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
