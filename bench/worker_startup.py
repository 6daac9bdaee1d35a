"""Start-up with many enabled jobs: time from process start to `leader_ready` (jobs loaded and planned)
and the worker's RSS then.

    python -m bench.worker_startup [--jobs 0,10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.worker_support import DATABASE, WorkerProcess, client, job_docs, log_time, server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", default="0,10000")
    args = parser.parse_args()
    with server() as db_server, tempfile.TemporaryDirectory() as logs, client(db_server.uri) as mongo:
        for count in [int(c) for c in args.jobs.split(",")]:
            mongo.drop_database(DATABASE)
            docs = job_docs(count, "0 0 1 1 *", datetime(2031, 1, 1, tzinfo=UTC))
            for start in range(0, count, 1000):
                mongo[DATABASE].syncjobs.insert_many(docs[start : start + 1000])
            worker = WorkerProcess(db_server.uri, f"startup-{count}", Path(logs), SYNCJOBS_EXECUTOR_COMMAND="true")
            try:
                ready = worker.wait_for("leader_ready", timeout=300)
                acquired = worker.wait_for("lease_acquired")
                time.sleep(1)
                print(
                    f"jobs={count:6d}  process start -> leader_ready {log_time(ready) - worker.started_at:6.2f}s  "
                    f"(lease -> ready {log_time(ready) - log_time(acquired):5.2f}s)  RSS {worker.rss_mib():6.1f} MiB"
                )
            finally:
                worker.stop()


if __name__ == "__main__":
    main()
