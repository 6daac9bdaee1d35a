"""`syncjobs demo` (and `up --demo`): a source database with documents on `up`'s own server, a job that syncs
it every minute, one run of it, and where to look. Running it again seeds nothing twice and changes nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from pymongo import MongoClient
from pymongo.database import Database

from syncjobs.apply import execute, plan
from syncjobs.client import ApiClient, ClientError

SOURCE_DATABASE, DESTINATION_DATABASE, JOB = "demo_shop", "demo_warehouse", "demo-every-minute"
SEED = {"customers": 150, "orders": 250}
RUN_WAIT_SECONDS = 120.0


def declaration(database_uri: str) -> dict[str, list[dict[str, Any]]]:
    """What examples/jobs.yaml declares, with `${SYNCJOBS_MONGODB_URI}` given."""
    return {
        "sources": [
            {"name": "demo-shop", "kind": "mongodb", "config": {"uri": database_uri, "database": SOURCE_DATABASE}}
        ],
        "destinations": [
            {
                "name": "demo-warehouse",
                "kind": "mongodb",
                "config": {"uri": database_uri, "database": DESTINATION_DATABASE},
            }
        ],
        "jobs": [
            {
                "name": JOB,
                "source": "demo-shop",
                "destination": "demo-warehouse",
                "schedule": {"cron": "* * * * *", "timezone": "UTC"},
                "syncMode": "incremental",
            }
        ],
    }


def seed(database_uri: str) -> dict[str, int]:
    """Fill each empty demo collection (every document has the incremental cursor `updatedAt`); counts."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    client: MongoClient[dict[str, Any]]
    with MongoClient(database_uri, serverSelectionTimeoutMS=10_000) as client:
        shop: Database[dict[str, Any]] = client[SOURCE_DATABASE]
        for collection, count in SEED.items():
            if shop[collection].estimated_document_count() == 0:
                shop[collection].insert_many(
                    [
                        {"_id": n, "name": f"{collection}-{n}", "updatedAt": start + timedelta(minutes=n)}
                        for n in range(count)
                    ]
                )
        return {collection: shop[collection].count_documents({}) for collection in SEED}


def _wait_for_run(client: ApiClient, job_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_WAIT_SECONDS
    while time.monotonic() < deadline:
        for run in client.items(client.ws(f"/sync-jobs/{job_id}/runs?limit=10"), cursor="before", limit=10):
            if run["id"] == run_id and run["status"] not in ("pending", "running"):
                return run
        time.sleep(0.5)  # a client of the API: it asks again
    raise ClientError(f"run {run_id} did not end within {RUN_WAIT_SECONDS:.0f}s; is the worker running?")


def run_demo(client: ApiClient, database_uri: str, out: TextIO) -> int:
    """Seed, declare, run once, say where to look; 0 when the run succeeded."""
    counts = seed(database_uri)
    print(f"demo: {SOURCE_DATABASE} holds " + ", ".join(f"{n} {c}" for c, n in counts.items()), file=out)
    changes = plan(client, declaration(database_uri))
    for change in changes:
        print(f"demo: {change.line()}", file=out)
    execute(client, changes)
    job = client.find("sync-jobs", JOB)
    run_id = client.call("POST", client.ws(f"/sync-jobs/{job['id']}/run"))["runId"]
    run = _wait_for_run(client, job["id"], run_id)
    totals = (run.get("stats") or {}).get("totals", {})
    outcome = ", ".join(f"{totals[k]} {k}" for k in ("read", "inserted", "updated", "unchanged") if k in totals)
    print(f"demo: run {run_id} {run['status']}" + (f": {outcome}" if outcome else ""), file=out)
    if run.get("error"):
        print(f"demo: error: {run['error']}", file=out)
    status = f"$SYNCJOBS_API/api/workspaces/$SYNCJOBS_WORKSPACE/sync-jobs/{job['id']}/status"
    print(
        "Where to look (after the export line of `syncjobs up`):\n"
        f"  dashboard:   {client.base_url}/dashboard\n"
        f'  job status:  curl -s -H "Authorization: Bearer $SYNCJOBS_TOKEN" {status}\n'
        f'  destination: mongosh "$SYNCJOBS_MONGODB_URI" --quiet --eval '
        f"'db.getSiblingDB(\"{DESTINATION_DATABASE}\").orders.countDocuments()'\n"
        f"  the job runs every minute; new or changed documents (with updatedAt) in {SOURCE_DATABASE} follow",
        file=out,
        flush=True,
    )
    return 0 if run["status"] == "succeeded" else 1
