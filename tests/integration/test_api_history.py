"""A job's change log: every write by a client appends who (token id and name), what and when; it pages
newest first and outlives the job."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.api_tokens import create_token

from tests.fixtures.fake_clock import FakeClock
from tests.integration.test_api_helpers import Tenant, make_job

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_every_write_is_logged_and_outlives_the_job(tenant: Tenant, db: Database, clock: FakeClock) -> None:
    setup = await make_job(tenant)
    job_id = setup.job["id"]
    item = tenant.path(f"/sync-jobs/{job_id}")
    ops = tenant.api.as_token(await create_token(db, ObjectId(tenant.id), "ops on call"))
    clock.advance(timedelta(minutes=1))
    merge = {"Content-Type": "application/merge-patch+json"}
    status, _ = await ops.call(
        "PATCH", item, data='{"schedule": {"cron": "0 9 * * *"}, "timeoutSeconds": 60}', headers=merge
    )
    assert status == 200
    await ops.call("POST", item + "/toggle", json={"enabled": False})
    _, accepted = await tenant.api.call("POST", item + "/run")
    await tenant.api.call("POST", tenant.path(f"/runs/{accepted['runId']}/cancel"))
    await tenant.api.call(
        "POST", item + "/backfill", json={"from": "2026-01-15T08:00:00Z", "to": "2026-01-15T10:00:00Z"}
    )
    assert (await ops.call("DELETE", item))[0] == 204

    entries = []
    after = ""
    while True:
        status, page = await tenant.api.call("GET", item + f"/history?limit=2{after}")
        assert status == 200, page
        entries += page["items"]
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert [entry["action"] for entry in entries] == ["delete", "backfill", "cancel", "toggle", "edit", "create"]
    delete, backfill, cancel, toggle, edit, create = entries
    ops_token = next(doc for doc in await db.api_tokens.find({"name": "ops on call"}).to_list())
    assert edit["actor"] == {"tokenId": str(ops_token["tokenId"]), "name": "ops on call", "admin": False}
    assert create["actor"]["name"] == "acme token"
    assert edit["at"] == "2026-01-15T12:01:00Z"
    assert edit["changes"] == [
        {
            "field": "schedule",
            "old": {"cron": "0 * * * *", "timezone": "UTC"},
            "new": {"cron": "0 9 * * *", "timezone": "UTC"},
        },
        {"field": "timeoutSeconds", "old": 600, "new": 60},
    ]
    assert toggle["changes"] == [{"field": "enabled", "old": True, "new": False}]
    assert cancel["changes"] == [{"field": f"runs.{accepted['runId']}", "old": None, "new": "cancelled"}]
    assert backfill["changes"][0]["new"]["from"] == "2026-01-15T08:00:00+00:00"
    assert {change["field"] for change in create["changes"]} >= {"name", "schedule", "dataSourceId"}
    assert all(change["old"] is None for change in create["changes"])
    assert delete["changes"] == []
    assert "sjt_" not in str(entries) and ops_token["_id"] not in str(entries)  # never the token or its hash


async def test_a_history_is_its_workspace_s_and_a_reader_may_read_it(
    tenant: Tenant, other_tenant: Tenant, db: Database
) -> None:
    setup = await make_job(tenant)
    history = f"/sync-jobs/{setup.job['id']}/history"
    assert (await other_tenant.api.call("GET", other_tenant.path(history)))[0] == 404
    assert (await tenant.api.call("GET", tenant.path(f"/sync-jobs/{ObjectId()}/history")))[0] == 404
    reader = tenant.api.as_token(await create_token(db, ObjectId(tenant.id), "reader", scope="read"))
    status, page = await reader.call("GET", tenant.path(history))
    assert (status, [entry["action"] for entry in page["items"]]) == (200, ["create"])
