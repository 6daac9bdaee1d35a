"""`syncjobs up` as a user runs it: embedded database, api and worker, then inspection with mongosh."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pymongo import MongoClient

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack, running_up

pytestmark = pytest.mark.slow


def test_up_serves_the_api_and_stops_cleanly_on_sigterm(stack: UpStack, tmp_path: Path) -> None:
    ws = f"/api/workspaces/{stack.workspace_id}"
    status, workspace = stack.request("GET", ws)
    assert status == 200 and workspace["name"] == "default"
    source = stack.call(
        "POST",
        f"{ws}/data-sources",
        {"name": "crm", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "crm"}},
    )
    destination = stack.call(
        "POST",
        f"{ws}/destinations",
        {"name": "warehouse", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "warehouse"}},
    )
    status, job = stack.request(
        "POST",
        f"{ws}/sync-jobs",
        {
            "name": "hourly-crm",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "0 * * * *", "timezone": "Asia/Kolkata"},
            "syncMode": "incremental",
        },
    )
    assert status == 201
    next_run = datetime.fromisoformat(str(job["nextRunAt"])).astimezone(ZoneInfo("Asia/Kolkata"))
    assert (next_run.minute, next_run.second) == (0, 0)  # on the hour in a +05:30 zone: :30 in UTC
    assert datetime.fromisoformat(str(job["nextRunAt"])).minute == 30

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0
    assert (tmp_path / "data" / "admin-token").read_text().strip() == stack.token


def test_up_with_a_database_uri_embeds_nothing_and_uses_that_database(
    tmp_path: Path, mongo_uri: str, db_name: str
) -> None:
    with running_up(
        tmp_path,
        SYNCJOBS_MONGODB_URI=mongo_uri,
        SYNCJOBS_DATABASE=db_name,
        SYNCJOBS_ADMIN_TOKEN="sjt_given-admin-token",
    ) as stack:
        assert (stack.database_uri, stack.token) == (mongo_uri, "sjt_given-admin-token")
        status, _ = stack.request("POST", "/api/workspaces", {"name": "second"})
        assert status == 201
    assert not (tmp_path / "data" / "db").exists()  # no embedded storage was made
    client = MongoClient(mongo_uri)
    try:
        names = sorted(w["name"] for w in client[db_name].workspaces.find())
    finally:
        client.close()
    assert names == ["default", "second"]


@pytest.mark.skipif(shutil.which("mongosh") is None, reason="mongosh is not installed (./scripts/test installs it)")
def test_mongosh_shows_the_lease_holder_and_the_jobs(stack: UpStack) -> None:
    ws = f"/api/workspaces/{stack.workspace_id}"
    stack.call(
        "POST",
        f"{ws}/data-sources",
        {"name": "crm", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "crm"}},
    )

    def mongosh(expression: str) -> object:
        result = subprocess.run(
            ["mongosh", stack.database_uri, "--quiet", "--eval", f"EJSON.stringify({expression})"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(result.stdout)

    locks = eventually_blocking(  # the worker takes the lease shortly after start
        lambda: mongosh('db.getSiblingDB("syncjobs").worker_locks.find().toArray()'), "a lease holder", within=60
    )
    assert isinstance(locks, list) and len(locks) == 1
    lease = locks[0]
    assert lease["_id"] == "scheduler"
    assert {"owner", "host", "pid", "fencingToken", "lockedUntil", "heartbeatAt"} <= set(lease)
    sources = mongosh('db.getSiblingDB("syncjobs").data_sources.find({}, {name: 1}).toArray()')
    assert [s["name"] for s in sources] == ["crm"]  # type: ignore[index,union-attr]
