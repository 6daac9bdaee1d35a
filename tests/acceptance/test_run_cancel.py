"""Cancel over REST against real processes: an api and three worker replicas. The replica that runs the
run learns of the cancel by itself, kills its executor's whole process group and records `cancelled`,
which is never retried and leaves the job's cadence alone."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database
from syncjobs.worker.fire_plan import should_retry

from tests.fixtures.api_process import ADMIN_TOKEN, api_process, call
from tests.fixtures.eventually import eventually
from tests.fixtures.worker_jobs import file_written, make_job, process_gone
from tests.fixtures.worker_processes import Workers

pytestmark = pytest.mark.slow


async def _api(base_url: str, method: str, path: str) -> tuple[int, Any]:
    return await asyncio.to_thread(call, base_url, ADMIN_TOKEN, method, path)


async def test_cancel_kills_a_running_executor_on_whichever_replica_runs_it(
    workers: Workers, db: Database, db_name: str, mongo_uri: str, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    for worker_id in ("w1", "w2", "w3"):
        workers.start(worker_id)
    retry = {"maxAttempts": 3, "backoffSeconds": 0}
    job = await make_job(db, f"hang:{pids}", "0 0 1 1 *", datetime.now(UTC), retry=retry)
    ws, job_id = job["workspaceId"], job["_id"]
    with api_process(mongo_uri, db_name, tmp_path / "api.log") as base_url:
        status, accepted = await _api(base_url, "POST", f"/api/workspaces/{ws}/sync-jobs/{job_id}/run")
        assert status == 202, accepted
        run_path = f"/api/workspaces/{ws}/runs/{accepted['runId']}"
        await eventually(lambda: file_written(pids), "the executor and its grandchild started", within=60)
        executor_pid, grandchild_pid = (int(pid) for pid in pids.read_text().split())
        status, running = await _api(base_url, "GET", run_path)
        assert (status, running["status"]) == (200, "running"), running

        asked = time.monotonic()
        status, answer = await _api(base_url, "POST", run_path + "/cancel")
        assert (status, answer["status"], answer["cancelRequested"]) == (200, "running", True), answer
        for pid in (grandchild_pid, executor_pid):
            await eventually(lambda pid=pid: process_gone(pid), "the executor's group killed", within=10)  # type: ignore[misc]
        _, ended = await eventually(lambda: _ended(base_url, run_path), "the run recorded as ended", within=10)
        took = time.monotonic() - asked
        assert (ended["status"], ended["error"]) == ("cancelled", "cancelled on request"), ended
        assert took < 3.0, f"cancel took {took:.2f}s (a 1 s poll, a kill and a write)"
        assert "run_cancel_requested" in workers.log(running["workerId"])

        status, again = await _api(base_url, "POST", run_path + "/cancel")
        assert (status, again["error"]["code"]) == (409, "conflict")
    stored = await eventually(lambda: db.syncjobs.find_one({"_id": ObjectId(job_id), "lastStatus": "cancelled"}))
    assert stored["nextRunAt"] == job["nextRunAt"]  # cadence unchanged
    assert not should_retry(RunStatus.CANCELLED, 1, retry["maxAttempts"])  # what the replica decided on
    runs = await db.job_runs.find({"jobId": job_id}).to_list()
    assert [(run["trigger"], run["status"]) for run in runs] == [("manual", "cancelled")]


async def _ended(base_url: str, run_path: str) -> tuple[int, Any] | None:
    answer = await _api(base_url, "GET", run_path)
    return answer if answer[1]["status"] != "running" else None
