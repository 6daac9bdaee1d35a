"""Pause, resume and skip over REST: the job and its status show them, the change log keeps the note."""

from __future__ import annotations

from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.api_tokens import create_token

from tests.integration.test_api_helpers import Tenant, make_job, snapshot

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_pause_resume_and_skip(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    body = {"until": "2026-01-16T08:00:00+01:00", "note": "vendor maintenance"}
    status, job = await tenant.api.call("POST", item + "/pause", json=body)
    assert status == 200, job
    assert (job["paused"], job["pausedUntil"], job["pauseNote"]) == (True, "2026-01-16T07:00:00Z", "vendor maintenance")
    assert job["nextRunAt"] == setup.job["nextRunAt"]  # the cadence goes on: held fires are recorded skipped
    _, state = await tenant.api.call("GET", item + "/status")
    assert (state["paused"], state["pausedUntil"], state["pauseNote"]) == (
        True,
        "2026-01-16T07:00:00Z",
        "vendor maintenance",
    )
    status, job = await tenant.api.call("POST", item + "/skip", json={"count": 2})
    assert (status, job["skipCount"]) == (200, 2)
    status, job = await tenant.api.call("POST", item + "/resume")
    assert (status, job["paused"], job["pausedUntil"], job["pauseNote"], job["skipCount"]) == (
        200,
        False,
        None,
        None,
        2,
    )
    status, job = await tenant.api.call("POST", item + "/pause")  # no body: until resumed
    assert (status, job["paused"], job["pausedUntil"]) == (200, True, None)
    _, history = await tenant.api.call("GET", item + "/history")
    actions = [(entry["action"], entry["note"]) for entry in history["items"]]
    assert actions[:4] == [("pause", None), ("resume", None), ("skip", None), ("pause", "vendor maintenance")]


async def test_bad_holds_are_refused(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    reader = tenant.api.as_token(await create_token(db, ObjectId(tenant.id), "reader", scope="read"))
    before = await snapshot(db)
    for path, body, field in (
        ("/pause", {"until": "2026-01-15T11:00:00Z"}, "until"),  # the clock is at 12:00
        ("/pause", {"until": "tomorrow"}, "until"),
        ("/skip", {"count": 0}, "count"),
        ("/skip", {}, "count"),
    ):
        status, error = await tenant.api.call("POST", item + path, json=body)
        assert (status, error["error"]["details"][0]["field"]) == (422, field), (path, body)
    assert (await reader.call("POST", item + "/resume"))[0] == 403
    status, error = await tenant.api.call("POST", item + "/resume", headers={"If-Match": '"9"'})
    assert (status, error["error"]["code"]) == (412, "precondition_failed")
    assert await snapshot(db) == before
