"""The dashboard as a person works in it, against a real `syncjobs up`, driven by playwright-core (npm) in
Debian's Chromium: sign in with a workspace token alone, make a source, a destination and a job through the
forms (a bad cron answered beside its field), run the job and watch its run appear, read a job with 30
seeded runs of mixed outcomes as a chart and a calendar strip, pause a job with a note and resume it,
cancel a pending run (and see the 409 of one that ended meanwhile), and check every page with axe-core.

The browser steps are `dashboard_workflow.mjs` beside this file; screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import MongoClient
from syncjobs.shared.clock import to_ms
from syncjobs.shared.models import RunStatus
from syncjobs.shared.store.job_runs import new_run_document

from tests.fixtures.syncjobs_up import UpStack

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".tools" / "browser-test" / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: apt-get install -y chromium"),
    pytest.mark.skipif(
        shutil.which("node") is None or not (NODE_MODULES / "playwright-core").is_dir(),
        reason="node with playwright-core and axe-core in .tools/browser-test (./scripts/test installs them)",
    ),
]

# Thirty runs on the job's last 20 daily fires (03:00 UTC), every other fire run twice (an attempt and its
# retry, which stands for the fire): mostly fine, some failed, one of each other end.
OUTCOMES = (
    [RunStatus.SUCCEEDED] * 21
    + [RunStatus.FAILED] * 5
    + [
        RunStatus.TIMED_OUT,
        RunStatus.CANCELLED,
        RunStatus.SKIPPED,
        RunStatus.MISSED,
    ]
)


def seed_runs(stack: UpStack, job: dict[str, object]) -> None:
    now = datetime.now(UTC)
    last = now.replace(hour=3, minute=0, second=0, microsecond=0)
    last -= timedelta(days=1) if last > now else timedelta(0)
    fires = [last - timedelta(days=19 - day) for day in range(20)]
    job_doc = {"_id": ObjectId(str(job["id"])), "workspaceId": ObjectId(str(job["workspaceId"]))}
    docs = []
    for index in range(30):
        status = OUTCOMES[(index * 7) % len(OUTCOMES)]
        fire = fires[index * 2 // 3]
        retry = index % 3 == 1  # the second run of an even fire
        start = fire + timedelta(minutes=5 if retry else 0)
        run = new_run_document(
            job_doc,
            trigger="retry" if retry else "schedule",
            scheduled_for=fire,
            attempt=2 if retry else 1,
            status=status,
            now=start,
        )
        if status not in (RunStatus.SKIPPED, RunStatus.MISSED):
            took = 2000 + (index % 6) * 1500 + (9000 if status == RunStatus.TIMED_OUT else 0)
            run.update(startedAt=to_ms(start), finishedAt=to_ms(start + timedelta(milliseconds=took)), durationMs=took)
            run.update(stats={"entities": {"orders": {"read": 10 + index, "inserted": index, "updated": 1}}})
        if status == RunStatus.FAILED:
            run.update(
                error=f"orders: connection refused (seeded run {index})", stderrTail="Traceback ...\nOSError: refused\n"
            )
        else:
            run.update(finishedAt=run["finishedAt"] or to_ms(start))
        docs.append(run)
    with MongoClient(stack.database_uri) as client:
        client["syncjobs"].job_runs.insert_many(docs)
        # The job has existed since just before its first seeded fire: no earlier fire is its.
        client["syncjobs"].sync_jobs.update_one(
            {"_id": job_doc["_id"]}, {"$set": {"createdAt": to_ms(fires[0] - timedelta(hours=1))}}
        )


def waiting_job(stack: UpStack) -> tuple[str, list[str]]:
    """A job in workspace `ops-team` with two pending runs waiting out a retry delay (no replica claims them
    for an hour): runs to cancel from the page. Returns the workspace's name and the runs' ids."""
    workspace = stack.call("POST", "/api/workspaces", {"name": "ops-team"})
    base = f"/api/workspaces/{workspace['id']}"
    config = {"uri": stack.database_uri, "database": "ops"}
    source = stack.call("POST", base + "/data-sources", {"name": "ops-db", "kind": "mongodb", "config": config})
    destination = stack.call("POST", base + "/destinations", {"name": "ops-copy", "kind": "mongodb", "config": config})
    job = stack.call(
        "POST",
        base + "/sync-jobs",
        {
            "name": "slow-queue",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "0 3 * * *", "timezone": "UTC"},
        },
    )
    now = datetime.now(UTC)
    job_doc = {"_id": ObjectId(job["id"]), "workspaceId": ObjectId(workspace["id"])}
    docs = []
    for minutes in (2, 1):
        fire = now - timedelta(minutes=minutes)
        run = new_run_document(job_doc, trigger="manual", scheduled_for=fire, now=fire)
        docs.append({**run, "dueAt": to_ms(now + timedelta(hours=1))})
    with MongoClient(stack.database_uri) as client:
        client["syncjobs"].job_runs.insert_many(docs)
    return workspace["name"], [str(doc["_id"]) for doc in docs]


def test_a_new_user_works_through_the_dashboard(stack: UpStack, tmp_path: Path) -> None:
    token = stack.call("POST", stack.ws("/tokens"), {"name": "dashboard user"})["token"]
    read_token = stack.call("POST", stack.ws("/tokens"), {"name": "dashboard reader", "scope": "read"})["token"]
    source, destination = stack.crm_to_warehouse()
    seeded = stack.call(
        "POST",
        stack.ws("/sync-jobs"),
        {
            "name": "nightly-orders",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "0 3 * * *", "timezone": "UTC"},
        },
    )
    seed_runs(stack, seeded)
    stack.call("POST", "/api/workspaces", {"name": "empty-team"})
    waiting_workspace, pending_runs = waiting_job(stack)
    artifacts = ROOT / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    settings = {
        "url": stack.url,
        "token": token,
        "adminToken": stack.token,
        "readToken": read_token,
        "workspaceName": stack.call("GET", stack.ws())["name"],
        "seededJobId": seeded["id"],
        "waitingWorkspace": waiting_workspace,
        "pendingRuns": pending_runs,
        "databaseUri": stack.database_uri,
        "artifacts": str(artifacts),
        "chromium": str(CHROMIUM),
        "nodeModules": str(NODE_MODULES),
    }
    result = subprocess.run(
        ["node", str(Path(__file__).with_name("dashboard_workflow.mjs"))],
        env={**os.environ, "WORKFLOW": json.dumps(settings)},
        capture_output=True,
        text=True,
        timeout=360,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "workflow done" in result.stdout
