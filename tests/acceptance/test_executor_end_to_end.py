"""The executor's definition of done, as a user sees it: `syncjobs up`, a job made through the API, runs
started with `POST .../run`, and the counts read back from the API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from syncjobs.shared.embedded import free_port

pytestmark = pytest.mark.slow

FINISHED = {"succeeded", "failed", "timed_out", "cancelled", "skipped", "missed"}
T0 = datetime(2026, 5, 1, tzinfo=UTC)


class Stack:
    def __init__(self, process: subprocess.Popen[str], api_url: str, workspace_id: str, token: str, uri: str):
        self.process, self.api_url, self.token, self.uri = process, api_url, token, uri
        self.ws = f"/api/workspaces/{workspace_id}"

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        request = urllib.request.Request(
            self.api_url + self.ws + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def run_to_end(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """POST .../run, then follow the job's runs until that one has finished."""
        run_id = self.call("POST", f"/sync-jobs/{job_id}/run")["runId"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a real worker in another process: nothing to await but its writes
            runs = {run["id"]: run for run in self.call("GET", f"/sync-jobs/{job_id}/runs?limit=10")["runs"]}
            if runs.get(run_id, {}).get("status") in FINISHED:
                return runs[run_id]
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish within {timeout}s")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "syncjobs", "up", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        fields: dict[str, str] = {}
        assert process.stdout is not None
        for line in process.stdout:
            match = re.match(r"\s+(workspace id|admin token|database):\s+(\S+)", line)
            if match:
                fields[match.group(1)] = match.group(2)
            if line.startswith("Press Ctrl-C"):
                break
        assert len(fields) == 3, f"no banner from syncjobs up (exit {process.poll()})"
        yield Stack(
            process, f"http://127.0.0.1:{port}", fields["workspace id"], fields["admin token"], fields["database"]
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


def counts(run: dict[str, Any], entity: str) -> tuple[int, ...]:
    stats = run["stats"]["entities"][entity]
    return tuple(stats[k] for k in ("read", "inserted", "updated", "deleted", "unchanged", "failed"))


def test_a_job_made_through_the_api_syncs_and_resyncs_exactly_the_edits(stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:8]
    crm, full_dest, incr_dest = f"crm_{suffix}", f"warehouse_{suffix}", f"lake_{suffix}"
    with MongoClient(stack.uri) as client:
        source = client[crm]
        source.customers.insert_many(
            [{"_id": i, "name": f"c{i}", "updatedAt": T0 + timedelta(minutes=i)} for i in range(20)]
        )
        source.orders.insert_many([{"_id": i, "customer": i % 5, "updatedAt": T0} for i in range(10)])
        source.notes.insert_many([{"_id": i} for i in range(5)])

        data_source = stack.call(
            "POST", "/data-sources", {"name": "crm", "kind": "mongodb", "config": {"uri": stack.uri, "database": crm}}
        )
        jobs = {}
        for mode, dest_name in (("full", full_dest), ("incremental", incr_dest)):
            destination = stack.call(
                "POST",
                "/destinations",
                {"name": dest_name, "kind": "mongodb", "config": {"uri": stack.uri, "database": dest_name}},
            )
            jobs[mode] = stack.call(
                "POST",
                "/sync-jobs",
                {
                    "name": f"crm-{mode}",
                    "dataSourceId": data_source["id"],
                    "destinationDatabaseId": destination["id"],
                    "schedule": {"cron": "0 0 1 1 *"},
                    "syncMode": mode,
                    "entities": {"include": ["customers", "orders"]},
                },
            )["id"]

        first = stack.run_to_end(jobs["full"])
        assert first["status"] == "succeeded", first
        assert counts(first, "customers") == (20, 20, 0, 0, 0, 0)
        assert counts(first, "orders") == (10, 10, 0, 0, 0, 0)
        assert sorted(first["stats"]["entities"]) == ["customers", "orders"]
        status = stack.call("GET", f"/sync-jobs/{jobs['full']}/status")
        assert status["lastStatus"] == "succeeded"
        assert status["recentRuns"][0]["stats"]["totals"]["inserted"] == 30
        assert sorted(client[full_dest].list_collection_names()) == ["customers", "orders"]
        assert stack.run_to_end(jobs["incremental"])["stats"]["totals"]["inserted"] == 30

        later = T0 + timedelta(days=1)
        source.customers.update_many({"_id": {"$in": [3, 4]}}, {"$set": {"name": "edited", "updatedAt": later}})
        source.customers.insert_one({"_id": 100, "name": "new", "updatedAt": later})
        source.orders.delete_one({"_id": 7})

        second = stack.run_to_end(jobs["full"])
        assert second["status"] == "succeeded", second
        assert counts(second, "customers") == (21, 1, 2, 0, 18, 0)
        assert counts(second, "orders") == (9, 0, 0, 1, 9, 0)
        assert {d["entity"]: d["status"] for d in second["details"]} == {"customers": "updated", "orders": "updated"}
        synced = {doc["_id"]: doc for doc in client[full_dest].customers.find()}
        assert synced[3]["name"] == synced[4]["name"] == "edited" and 100 in synced
        assert client[full_dest].orders.count_documents({}) == 9

        incremental = stack.run_to_end(jobs["incremental"])
        assert incremental["status"] == "succeeded", incremental
        assert counts(incremental, "customers") == (3, 1, 2, 0, 0, 0)
        assert counts(incremental, "orders") == (0, 0, 0, 0, 0, 0)
        assert {d["entity"]: d["status"] for d in incremental["details"]} == {
            "customers": "updated",
            "orders": "unchanged",
        }
