"""Fire lag: from a fire's due time to its executor being started, with 1, 100 and 1,000 jobs due in the
same second. The executor is `true` (exits at once), so the figure is the scheduler's own cost plus the
queueing behind SYNCJOBS_MAX_CONCURRENT_RUNS executors.

    python -m bench.worker_fire_lag [--counts 1,100,1000] [--concurrency 4,32] [--workspaces 1,1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.worker_support import DATABASE, WorkerProcess, client, job_docs, next_whole_second, percentiles, server


def measure(uri: str, count: int, concurrency: int, workspaces: int, log_dir: Path) -> list[float]:
    with client(uri) as mongo:
        mongo.drop_database(DATABASE)
        due = next_whole_second(datetime.now(UTC), timedelta(seconds=6 + count / 200))
        cron = f"{due.second} {due.minute} {due.hour} {due.day} {due.month} *"
        mongo[DATABASE].syncjobs.insert_many(job_docs(count, cron, due, workspaces=min(workspaces, count)))
        worker = WorkerProcess(
            uri,
            f"lag-{count}-{concurrency}",
            log_dir,
            SYNCJOBS_EXECUTOR_COMMAND="true",
            SYNCJOBS_MAX_CONCURRENT_RUNS=str(concurrency),
        )
        try:
            ready = worker.wait_for("leader_ready")
            if datetime.fromisoformat(ready["timestamp"].replace("Z", "+00:00")) > due:
                print(f"  warning: worker was ready only after the due time ({ready['timestamp']})")
            deadline = time.monotonic() + 120 + count
            runs = mongo[DATABASE].job_runs
            while runs.count_documents({"status": "succeeded"}) < count and time.monotonic() < deadline:
                time.sleep(0.2)
            return [
                (run["startedAt"] - run["scheduledFor"]).total_seconds()
                for run in runs.find({"startedAt": {"$ne": None}}, {"startedAt": 1, "scheduledFor": 1})
            ]
        finally:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1,100,1000")
    parser.add_argument("--concurrency", default="4,32")
    parser.add_argument(
        "--workspaces", default="1", help="comma list: jobs spread over this many workspaces (alert cost)"
    )
    args = parser.parse_args()
    with server() as db_server, tempfile.TemporaryDirectory() as logs:
        for spread in [int(w) for w in args.workspaces.split(",")]:
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                for count in [int(c) for c in args.counts.split(",")]:
                    lags = measure(db_server.uri, count, concurrency, spread, Path(logs))
                    print(
                        f"jobs={count:5d} workspaces={min(spread, count):5d} max_concurrent_runs={concurrency:3d}"
                        f"  fire lag {percentiles(lags)}"
                    )


if __name__ == "__main__":
    main()
