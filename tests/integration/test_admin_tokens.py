"""Admin tokens are tokens (issue 21, finding 7): listed and revoked by an admin, retired when the api starts
with a new SYNCJOBS_ADMIN_TOKEN, never brought back by a restart, out of reach of a workspace token."""

from __future__ import annotations

from typing import Any

from syncjobs.api.app import create_app
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import api_tokens

from tests.fixtures.fake_clock import FakeClock
from tests.integration.test_api_helpers import ADMIN_TOKEN, Api, Tenant, create, snapshot

pytest_plugins = ["tests.integration.test_api_helpers"]

NEW_ADMIN_TOKEN = "sjt_the-new-admin-token-for-tests"


async def test_an_api_started_with_a_new_admin_token_retires_the_old_one(
    aiohttp_client: Any, api: Api, api_settings: Settings, clock: FakeClock
) -> None:
    assert (await api.call("GET", "/api/workspaces"))[0] == 200
    app = create_app(api_settings.with_overrides(admin_token=NEW_ADMIN_TOKEN), clock=clock)
    restarted = Api(await aiohttp_client(app), ADMIN_TOKEN, api.contracts)  # the document as read before
    status, body = await restarted.call("GET", "/api/workspaces")  # the old value
    assert status == 401, body
    new = restarted.as_token(NEW_ADMIN_TOKEN)
    status, listed = await new.call("GET", "/api/admin-tokens")
    assert status == 200 and [t["fromEnvironment"] for t in listed["items"]] == [True]
    # Started again with the retired value (a stale replica, a rollback): it stays retired.
    again = Api(await aiohttp_client(create_app(api_settings, clock=clock)), ADMIN_TOKEN, api.contracts)
    assert (await again.as_token(NEW_ADMIN_TOKEN).call("GET", "/api/workspaces"))[0] == 200
    assert (await again.call("GET", "/api/workspaces"))[0] == 401


async def test_an_admin_lists_creates_and_revokes_admin_tokens(api: Api, db: Database) -> None:
    created = await create(api, "/api/admin-tokens", {"name": "ops"})
    extra = api.as_token(created["token"])
    assert (await extra.call("GET", "/api/workspaces"))[0] == 200
    status, listed = await api.call("GET", "/api/admin-tokens")
    assert status == 200 and sorted(t["name"] for t in listed["items"]) == ["admin (SYNCJOBS_ADMIN_TOKEN)", "ops"]
    assert created["token"] not in str(listed) and created["token"] not in str(await db.api_tokens.find().to_list())
    assert await api.call("DELETE", f"/api/admin-tokens/{created['id']}") == (204, None)
    assert (await extra.call("GET", "/api/workspaces"))[0] == 401
    assert (await api.call("DELETE", f"/api/admin-tokens/{created['id']}"))[0] == 404


async def test_a_workspace_token_cannot_touch_admin_tokens(api: Api, tenant: Tenant, db: Database) -> None:
    status, listed = await api.call("GET", "/api/admin-tokens")
    admin_id = listed["items"][0]["id"]
    before = await snapshot(db)
    for method, path, body in [
        ("GET", "/api/admin-tokens", None),
        ("POST", "/api/admin-tokens", {"name": "mine"}),
        ("DELETE", f"/api/admin-tokens/{admin_id}", None),
    ]:
        status, answer = await tenant.api.call(method, path, json=body)
        assert status == 403, answer
    assert await snapshot(db) == before


async def test_rotate_admin_revokes_every_other_admin_token(api: Api, db: Database) -> None:
    token = await api_tokens.rotate_admin_tokens(db, "rotated")
    assert (await api.call("GET", "/api/workspaces"))[0] == 401
    assert await api_tokens.resolve_token(db, ADMIN_TOKEN) is None
    status, listed = await api.as_token(token).call("GET", "/api/admin-tokens")
    assert status == 200 and [t["name"] for t in listed["items"]] == ["rotated"]
