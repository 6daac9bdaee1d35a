"""The `http` source against a small aiohttp API the test starts: pagination, incremental, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from syncjobs.executor.sources import SourceError
from syncjobs.executor.sources.http import HttpSource
from syncjobs.shared.mongo import Database

from tests.fixtures.executor_world import contents, make_job, result_of, run_job, scratch_databases
from tests.fixtures.local_http import serving

TOKEN = "Bearer s3cret"
USERS = [{"id": i, "name": f"user{i}", "updatedAt": f"2026-01-0{1 + i % 3}T00:00:00Z"} for i in range(7)]


class FakeApi:
    """Three endpoints, one per pagination style, plus one that fails before it answers."""

    def __init__(self) -> None:
        self.users = [dict(u) for u in USERS]
        self.requests: list[dict[str, str]] = []
        self.failures_left: list[web.Response] = []

    def authorised(self, request: web.Request) -> None:
        self.requests.append({"path": request.path, **request.query})
        if request.headers.get("Authorization") != TOKEN:
            raise web.HTTPUnauthorized()

    def visible(self, request: web.Request) -> list[dict[str, Any]]:
        since = request.query.get("since")
        return [u for u in self.users if since is None or u["updatedAt"] >= since]

    async def by_page(self, request: web.Request) -> web.Response:
        self.authorised(request)
        page, size = int(request.query["page"]), int(request.query["per_page"])
        return web.json_response({"data": {"items": self.visible(request)[(page - 1) * size : page * size]}})

    async def by_next_link(self, request: web.Request) -> web.Response:
        self.authorised(request)
        offset = int(request.query.get("offset", 0))
        rows = self.visible(request)
        nxt = f"/orders?offset={offset + 3}" if offset + 3 < len(rows) else None
        return web.json_response({"results": rows[offset : offset + 3], "next": nxt})

    async def by_token(self, request: web.Request) -> web.Response:
        self.authorised(request)
        if self.failures_left:
            return self.failures_left.pop(0)
        start = int(request.query.get("cursor") or 0)
        rows = self.users[start : start + 4]
        token = str(start + 4) if start + 4 < len(self.users) else None
        return web.json_response({"rows": rows, "meta": {"next": token}})

    async def by_link_header(self, request: web.Request) -> web.Response:
        self.authorised(request)
        offset = int(request.query.get("offset", 0))
        headers = {"Link": f'<{request.path}?offset={offset + 5}>; rel="next"'} if offset + 5 < len(self.users) else {}
        return web.json_response(self.users[offset : offset + 5], headers=headers)

    async def broken(self, request: web.Request) -> web.Response:
        self.authorised(request)
        return web.json_response({"error": "nope"}, status=404)


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApi, str]]:
    fake = FakeApi()
    app = web.Application()
    app.router.add_get("/users", fake.by_page)
    app.router.add_get("/orders", fake.by_next_link)
    app.router.add_get("/events", fake.by_token)
    app.router.add_get("/links", fake.by_link_header)
    app.router.add_get("/broken", fake.broken)
    async with serving(app) as base_url:
        yield fake, f"{base_url}/"


def source_config(base_url: str) -> dict[str, Any]:
    return {
        "baseUrl": base_url,
        "headers": {"Authorization": TOKEN},
        "retry": {"maxAttempts": 3, "backoffSeconds": 0},
        "entities": {
            "users": {
                "path": "/users",
                "recordsPath": "data.items",
                "cursorParam": "since",
                "cursorField": "updatedAt",
                "pagination": {"type": "page", "pageParam": "page", "sizeParam": "per_page", "pageSize": 3},
            },
            "orders": {"path": "orders", "recordsPath": "results", "pagination": {"type": "next", "nextPath": "next"}},
            "events": {
                "path": "events",
                "recordsPath": "rows",
                "pagination": {"type": "cursor", "cursorParam": "cursor", "tokenPath": "meta.next"},
            },
        },
    }


async def test_http_source_full_then_incremental(db: Database, mongo_uri: str, api: tuple[FakeApi, str]) -> None:
    fake, base_url = api
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_job(
            db,
            source_kind="http",
            source_config=source_config(base_url),
            dest_uri=mongo_uri,
            dest_database=dest.name,
            mode="incremental",
        )
        code, events = await run_job(db, job_id)
        assert code == 0, result_of(events)
        totals = result_of(events)["stats"]["entities"]
        assert {name: s["inserted"] for name, s in totals.items()} == {"users": 7, "orders": 7, "events": 7}
        for name in ("users", "orders", "events"):
            assert await contents(dest, name) == {u["id"]: {"_id": u["id"], **u} for u in USERS}
        pages = [r for r in fake.requests if r["path"] == "/users"]
        assert [r["page"] for r in pages] == ["1", "2", "3"]
        assert not any("since" in r for r in pages)

        fake.users[2]["name"] = "changed"
        fake.users[2]["updatedAt"] = "2026-02-01T00:00:00Z"
        fake.users.append({"id": 50, "name": "new", "updatedAt": "2026-02-01T00:00:00Z"})
        fake.requests.clear()
        code, events = await run_job(db, job_id)
        users = result_of(events)["stats"]["entities"]["users"]
        # `since` is inclusive: the one user still at the cursor's timestamp is read again, unchanged.
        assert (code, users["read"], users["inserted"], users["updated"], users["unchanged"]) == (0, 3, 1, 1, 1)
        assert {r.get("since") for r in fake.requests if r["path"] == "/users"} == {"2026-01-03T00:00:00Z"}
        assert (await contents(dest, "users"))[2]["name"] == "changed"


async def test_http_retries_honour_retry_after(api: tuple[FakeApi, str]) -> None:
    fake, base_url = api
    fake.failures_left = [
        web.json_response({}, status=429, headers={"Retry-After": "7"}),
        web.json_response({}, status=503),
    ]
    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    config = source_config(base_url) | {"retry": {"maxAttempts": 3, "backoffSeconds": 0.25}}
    source = HttpSource(config, sleep=record_wait)
    try:
        batches = [b async for b in source.read("events", incremental=False, cursor=None)]
    finally:
        await source.close()
    assert sum(len(b.records) for b in batches) == 7
    assert waits[0] == 7.0
    assert 0.25 * 2 * 0.5 <= waits[1] <= 0.25 * 2


async def test_http_gives_up_with_a_clear_error_and_no_secret(api: tuple[FakeApi, str]) -> None:
    fake, base_url = api
    fake.failures_left = [web.json_response({}, status=500) for _ in range(3)]

    async def no_wait(seconds: float) -> None:
        return None

    source = HttpSource(source_config(base_url), sleep=no_wait)
    try:
        with pytest.raises(SourceError, match="HTTP 500") as caught:
            [b async for b in source.read("events", incremental=False, cursor=None)]
        with pytest.raises(SourceError, match="HTTP 401"):
            bad = HttpSource(source_config(base_url) | {"headers": {"Authorization": "Bearer wrong"}}, sleep=no_wait)
            try:
                [b async for b in bad.read("users", incremental=False, cursor=None)]
            finally:
                await bad.close()
    finally:
        await source.close()
    assert "s3cret" not in str(caught.value)


async def test_http_next_link_from_the_link_header_and_a_bare_list_body(api: tuple[FakeApi, str]) -> None:
    fake, base_url = api
    config = source_config(base_url)
    config["entities"] = {"links": {"path": "links", "pagination": {"type": "next"}}}
    source = HttpSource(config)
    try:
        batches = [b async for b in source.read("links", incremental=False, cursor=None)]
    finally:
        await source.close()
    assert [len(b.records) for b in batches] == [5, 2]
    assert [r["_id"] for b in batches for r in b.records] == list(range(7))
    assert [r.get("offset") for r in fake.requests] == [None, "5"]


async def test_a_huge_or_endless_body_fails_the_run_at_max_response_bytes(db: Database, mongo_uri: str) -> None:
    """Issue 21, finding 8: a 300 MB body took the executor to ~2.1 GB; an endless one grew until the timeout."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:  # the client hangs up: the write raises and the handler ends
            await response.write(b"[" + b" " * 65535)

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b" " * 300_000 + b"]", content_type="application/json")

    app = web.Application()
    app.router.add_get("/endless", endless)
    app.router.add_get("/declared", declared)
    async with serving(app) as base, scratch_databases(mongo_uri, 1) as (dest,):
        for entity in ("endless", "declared"):
            config = {
                "baseUrl": base,
                "maxResponseBytes": 200_000,
                "retry": {"maxAttempts": 1},
                "entities": {entity: {"path": f"/{entity}"}},
            }
            _, job_id = await make_job(
                db, source_kind="http", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
            )
            code, events = await run_job(db, job_id)
            error = result_of(events)["error"]
            assert code == 1 and "larger than maxResponseBytes (200000)" in error, error
