"""Time from an edit of a job (as the API writes it) to the worker planning the new schedule.

The worker runs with debug logs; the figure is the gap between the edit's write and the worker's
`job_planned` log line for the new version (same machine, same clock).

    python -m bench.worker_edit_latency [--edits 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.worker_support import DATABASE, WorkerProcess, client, job_docs, log_time, percentiles, server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()
    with server() as db_server, tempfile.TemporaryDirectory() as logs, client(db_server.uri) as mongo:
        jobs = mongo[DATABASE].syncjobs
        [job] = job_docs(1, "0 0 1 1 *", datetime(2031, 1, 1, tzinfo=UTC))
        jobs.insert_one(job)
        worker = WorkerProcess(
            db_server.uri, "edits", Path(logs), SYNCJOBS_LOG_LEVEL="debug", SYNCJOBS_EXECUTOR_COMMAND="true"
        )
        try:
            worker.wait_for("leader_ready")
            latencies = []
            for edit in range(args.edits):
                version = edit + 2
                next_run = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1 + edit)
                edited_at = time.time()
                jobs.update_one(
                    {"_id": job["_id"]},
                    {
                        "$set": {
                            "schedule.cron": f"{edit % 60} 3 * * *",
                            "nextRunAt": next_run,
                            "updatedAt": datetime.now(UTC),
                        },
                        "$inc": {"version": 1},
                    },
                )
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    planned = [e for e in worker.events("job_planned") if e.get("version") == version]
                    if planned:
                        latencies.append(log_time(planned[0]) - edited_at)
                        break
                    time.sleep(0.005)
                time.sleep(0.1)
            print(f"edit -> new schedule planned by the worker (change stream): {percentiles(latencies)}")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
