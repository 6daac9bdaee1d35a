"""`GET /api/me` (who a token is, for a sign-in with the token alone) and `GET /api/schedule-preview`."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fixtures.fake_clock import FakeClock
from tests.integration.test_api_helpers import Api, Tenant

pytest_plugins = ["tests.integration.test_api_helpers"]

PREVIEW = "/api/schedule-preview"


async def test_me_names_the_workspace_of_a_workspace_token(tenant: Tenant) -> None:
    status, body = await tenant.api.call("GET", "/api/me")
    assert status == 200
    assert body == {
        "name": "acme token",
        "scope": "full",
        "admin": False,
        "workspaceId": tenant.id,
        "workspaceName": "acme",
    }


async def test_me_of_an_admin_token_has_no_workspace(api: Api) -> None:
    status, body = await api.call("GET", "/api/me")
    assert status == 200
    assert body["admin"] is True and body["workspaceId"] is None and body["workspaceName"] is None


async def test_me_needs_a_token(api: Api) -> None:
    status, body = await api.call("GET", "/api/me", token=None)
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_preview_words_and_next_fires_in_the_zone(tenant: Tenant) -> None:
    status, body = await tenant.api.call("GET", PREVIEW + "?cron=0+2+*+*+*&timezone=Europe/London&count=3")
    assert status == 200
    assert body["description"] == "at 02:00 Europe/London"
    assert [fire["at"] for fire in body["fires"]] == [
        "2026-01-16T02:00:00+00:00",
        "2026-01-17T02:00:00+00:00",
        "2026-01-18T02:00:00+00:00",
    ]
    assert body["fires"][0]["wallTime"] == "Fri 2026-01-16 02:00:00 GMT" and body["fires"][0]["dst"] is None


async def test_preview_notes_a_fire_shifted_by_the_spring_gap_and_the_doubled_autumn_hour(
    tenant: Tenant, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))  # London springs forward at 01:00 on 29 March
    status, body = await tenant.api.call("GET", PREVIEW + "?cron=30+1+*+*+*&timezone=Europe/London&count=2")
    assert status == 200
    assert [(f["at"], f["dst"]) for f in body["fires"]] == [
        ("2026-03-29T02:00:00+01:00", "gap_shifted"),
        ("2026-03-30T01:30:00+01:00", None),
    ]
    # 02:00 exists that day (it is the first instant after the gap): nothing to note.
    status, body = await tenant.api.call("GET", PREVIEW + "?cron=0+2+*+*+*&timezone=Europe/London&count=1")
    assert [(f["at"], f["dst"]) for f in body["fires"]] == [("2026-03-29T02:00:00+01:00", None)]
    clock.set(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))  # 01:00-02:00 happens twice on 25 October
    status, body = await tenant.api.call("GET", PREVIEW + "?cron=15+*+*+*+*&timezone=Europe/London&count=4")
    assert [(f["at"], f["dst"]) for f in body["fires"]][:2] == [
        ("2026-10-24T13:15:00+01:00", None),
        ("2026-10-24T14:15:00+01:00", None),
    ]
    status, body = await tenant.api.call("GET", PREVIEW + "?cron=15+1+*+*+*&timezone=Europe/London&count=1")
    assert [(f["at"], f["dst"]) for f in body["fires"]] == [("2026-10-25T01:15:00+01:00", "repeated_hour")]


async def test_preview_refuses_naming_the_field(tenant: Tenant) -> None:
    for query, field in [
        ("?cron=61+*+*+*+*", "cron"),
        ("?cron=", "cron"),
        ("?cron=*+*+*", "cron"),
        ("?cron=0+2+*+*+*&timezone=Mars/Base", "timezone"),
        ("?cron=0+2+*+*+*&count=0", "count"),
        ("?cron=0+2+*+*+*&count=21", "count"),
    ]:
        status, body = await tenant.api.call("GET", PREVIEW + query)
        assert status == 422, query
        assert [d["field"] for d in body["error"]["details"]] == [field], query
