"""Writes per run (and the drain time): N jobs due at one instant, run by R worker replicas with the
executor `true`; the server's own opcounters (insert + update + delete commands, a findAndModify counting
as an update) are read before the due time and once every run has finished, so every write of every
replica counts: fires, nextRunAt, claims, locks, starts, outcomes, lease and run-lease renewals, alert
bookkeeping.

    python -m bench.worker_writes [--jobs 200] [--replicas 1] [--source DIR]

`--source DIR` runs the workers from another tree laid out as the installed package (DIR/syncjobs/...),
e.g. an older commit, to compare before and after on the same machine:

    git archive <commit> | tar -x -C /tmp/before/src   # then a view: /tmp/before/view/syncjobs/{api,...}
    python -m bench.worker_writes --source /tmp/before/view
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.worker_support import DATABASE, WorkerProcess, client, job_docs, next_whole_second, server

WRITE_COUNTERS = ("insert", "update", "delete")


def writes(mongo: Any) -> dict[str, int]:
    counters = mongo.admin.command("serverStatus")["opcounters"]
    return {name: int(counters[name]) for name in WRITE_COUNTERS}


def measure(uri: str, jobs: int, replicas: int, source: str | None, log_dir: Path) -> None:
    env = {"SYNCJOBS_EXECUTOR_COMMAND": "true", "SYNCJOBS_MAX_CONCURRENT_RUNS": "16"}
    if source:
        os.environ["PYTHONPATH"] = source
    with client(uri) as mongo:
        mongo.drop_database(DATABASE)
        due = next_whole_second(datetime.now(UTC), timedelta(seconds=8 + jobs / 100))
        cron = f"{due.second} {due.minute} {due.hour} {due.day} {due.month} *"
        mongo[DATABASE].syncjobs.insert_many(job_docs(jobs, cron, due))
        workers = [WorkerProcess(uri, f"writes-{i}", log_dir, **env) for i in range(replicas)]
        try:
            workers[0].wait_for("worker_started")
            while datetime.now(UTC) < due - timedelta(seconds=1):
                time.sleep(0.05)
            before = writes(mongo)
            runs = mongo[DATABASE].job_runs
            deadline = time.monotonic() + 120 + jobs
            while runs.count_documents({"status": "succeeded"}) < jobs and time.monotonic() < deadline:
                time.sleep(0.1)
            drained = (datetime.now(UTC) - due).total_seconds()
            jobs_done = mongo[DATABASE].syncjobs.count_documents({"lastStatus": "succeeded"})
            while jobs_done < jobs and time.monotonic() < deadline:
                time.sleep(0.2)
                jobs_done = mongo[DATABASE].syncjobs.count_documents({"lastStatus": "succeeded"})
            after = writes(mongo)
            finished = runs.count_documents({"status": "succeeded"})
            by_worker = sorted(runs.distinct("workerId", {"status": "succeeded"}))
        finally:
            for worker in workers:
                worker.stop()
    delta = {name: after[name] - before[name] for name in WRITE_COUNTERS}
    total = sum(delta.values())
    print(
        f"jobs={jobs} replicas={replicas} source={source or 'this tree'}: {finished} runs, "
        f"{total} write commands = {total / max(finished, 1):.2f} per run {delta}; ran on {by_worker}; "
        f"all succeeded {drained:.1f}s after the due time ({finished / max(drained, 0.001):.0f} runs/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--source", default=None, help="run the workers from this package view")
    args = parser.parse_args()
    with server() as db_server, tempfile.TemporaryDirectory() as logs:
        measure(db_server.uri, args.jobs, args.replicas, args.source, Path(logs))


if __name__ == "__main__":
    main()
