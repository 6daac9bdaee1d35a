"""Failover: two workers, the active one SIGKILLed (or SIGTERMed); how long until the standby leads and
until it starts the next run of a job due every second.

    python -m bench.worker_failover [--rounds 10] [--ttl S] [--executor warm|true]

Without `--ttl`, the product's default lease (SYNCJOBS_LEASE_TTL_SECONDS) and run lease; with it, both
set to S. The job runs the real warm executor (a full sync of a one-document collection) unless
`--executor true`, the labelled stand-in that syncs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.worker_burst import trivial_source
from bench.worker_support import DATABASE, WorkerProcess, client, job_docs, log_time, next_whole_second, server


def first_run_by(mongo: object, worker_id: str, after: float) -> float:
    runs = mongo[DATABASE].job_runs  # type: ignore[index]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = runs.find_one(
            {"workerId": worker_id, "startedAt": {"$gt": datetime.fromtimestamp(after, UTC)}}, sort=[("startedAt", 1)]
        )
        if run is not None:
            return float(run["startedAt"].timestamp())
        time.sleep(0.05)
    raise TimeoutError("no run after failover")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttl", type=int, default=None, help="lease and run lease (default: the product's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--executor", choices=("warm", "true"), default="warm")
    args = parser.parse_args()
    env = {} if args.ttl is None else {"SYNCJOBS_LEASE_TTL_SECONDS": str(args.ttl)}
    if args.ttl is not None:
        env["SYNCJOBS_RUN_LEASE_SECONDS"] = str(args.ttl)
    if args.executor == "true":
        env["SYNCJOBS_EXECUTOR_COMMAND"] = "true"
    ttl = f"ttl={args.ttl}s" if args.ttl else "default lease"
    with server() as db_server, tempfile.TemporaryDirectory() as logs, client(db_server.uri) as mongo:
        workspace, source_id, destination_id = asyncio.run(trivial_source(db_server.uri))
        first = next_whole_second(datetime.now(UTC), timedelta(0))
        mongo[DATABASE].syncjobs.insert_many(
            job_docs(
                1,
                "* * * * * *",
                first,
                workspaceId=workspace,
                dataSourceId=source_id,
                destinationDatabaseId=destination_id,
            )
        )
        print(f"executor={args.executor} ({'stand-in, syncs nothing' if args.executor == 'true' else 'real'})")
        log_dir = Path(logs)
        active = WorkerProcess(db_server.uri, "w0", log_dir, **env)
        active.wait_for("leader_ready")
        for round_number in range(1, args.rounds + 1):
            standby = WorkerProcess(db_server.uri, f"w{round_number}", log_dir, **env)
            standby.wait_for("standing_by")
            time.sleep(2)
            kind = signal.SIGKILL if round_number % 2 else signal.SIGTERM
            signalled_at = time.time()
            active.process.send_signal(kind)
            acquired = log_time(standby.wait_for("lease_acquired"))
            first_run = first_run_by(mongo, standby.worker_id, signalled_at)
            print(
                f"{kind.name:7s} {ttl}  lease taken after {acquired - signalled_at:6.3f}s  "
                f"first run started after {first_run - signalled_at:6.3f}s"
            )
            active.process.wait()
            active = standby
        active.stop()
        runs = mongo[DATABASE].job_runs
        pipeline = [
            {"$group": {"_id": {"s": "$scheduledFor", "t": "$trigger"}, "n": {"$sum": 1}}},
            {"$match": {"n": {"$gt": 1}}},
        ]
        doubled = list(runs.aggregate(pipeline))
        statuses = {s: runs.count_documents({"status": s}) for s in ("succeeded", "missed", "skipped", "failed")}
        print(f"fires recorded: {statuses}; fires with two runs: {len(doubled)}")


if __name__ == "__main__":
    main()
