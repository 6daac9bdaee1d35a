"""How long `/monitoring`'s statistics take as run history grows: the database aggregates, Python gets a summary.

    python bench/monitoring_stats.py [--jobs 20] [--runs-per-job 50 250 1000]

Starts its own SecantusDB, fills one workspace with finished runs (a quarter failed), and times
`job_run_stats` (median of 5) for each history size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.shared.embedded import start_embedded
from syncjobs.shared.mongo import Database, connect, ensure_indexes
from syncjobs.shared.store.job_runs import new_run_document
from syncjobs.shared.store.run_stats import job_run_stats

NOW = datetime.now(UTC)


async def fill(
    db: Database, workspace_id: ObjectId, jobs: list[dict[str, object]], runs_per_job: int, already: int
) -> None:
    for job in jobs:
        docs = []
        for index in range(already, runs_per_job):
            at = NOW - timedelta(hours=23) + timedelta(seconds=index * 10)
            doc = new_run_document(job, trigger="schedule", scheduled_for=at, now=at)
            doc.update(status="failed" if index % 4 == 0 else "succeeded", startedAt=at, durationMs=1000 + index)
            docs.append(doc)
        if docs:
            await db.job_runs.insert_many(docs)


async def bench(uri: str, job_count: int, sizes: list[int]) -> None:
    client = connect(uri)
    db = client["bench_monitoring"]
    await client.drop_database("bench_monitoring")
    await ensure_indexes(db)
    workspace_id = ObjectId()
    jobs: list[dict[str, object]] = [
        {"_id": ObjectId(), "workspaceId": workspace_id, "name": f"job-{i:03d}"} for i in range(job_count)
    ]
    await db.syncjobs.insert_many(jobs)
    filled = 0
    print(f"{'runs':>8} {'median ms':>10} {'min ms':>8}")
    for size in sorted(sizes):
        await fill(db, workspace_id, jobs, size, filled)
        filled = size
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            stats = await job_run_stats(db, workspace_id, NOW - timedelta(hours=24))
            timings.append((time.perf_counter() - started) * 1000)
        assert sum(s.total_executions for s in stats) == job_count * size
        print(f"{job_count * size:>8} {statistics.median(timings):>10.1f} {min(timings):>8.1f}")
    await client.drop_database("bench_monitoring")
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--runs-per-job", type=int, nargs="+", default=[50, 250, 1000])
    args = parser.parse_args()
    server = start_embedded(tempfile.mkdtemp(prefix="bench-monitoring-"))
    try:
        asyncio.run(bench(server.uri, args.jobs, args.runs_per_job))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
