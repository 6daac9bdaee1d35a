"""The process-wide connect guard of the executor: a refused address is never connected to, whoever asks
(PyMongo, aiohttp), while the control server stays reachable."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from syncjobs.shared.egress import ConnectGuard, EgressPolicy, guarded_loop_factory
from syncjobs.shared.mongo import connect


def _ping_in_a_guarded_loop(uri: str, guard: ConnectGuard) -> Any:
    async def ping() -> Any:
        client = connect(uri, serverSelectionTimeoutMS=1500)
        try:
            return await client.admin.command("ping")
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=guarded_loop_factory(guard)) as runner:
        return runner.run(ping())


async def test_pymongo_cannot_connect_to_a_refused_address(mongo_uri: str) -> None:
    guard = ConnectGuard(EgressPolicy())
    with pytest.raises(Exception, match="egress policy"):
        await asyncio.to_thread(_ping_in_a_guarded_loop, mongo_uri, guard)
    assert guard.refused and guard.refused[0].reason == "loopback"


async def test_the_fence_is_asked_about_every_address_the_policy_allows(mongo_uri: str) -> None:
    """Nothing is exempt: an allowed address still goes through the executor's control fence."""
    port = int(mongo_uri.split(":")[2].split("/")[0])
    asked: list[tuple[str, int]] = []

    async def fence(ip: str, port: int) -> None:
        asked.append((ip, port))

    async def refusing_fence(ip: str, port: int) -> None:
        raise ValueError(f"{ip}:{port} is the control database's server")

    allowed = EgressPolicy.from_strings(["127.0.0.1/32"])
    guard = ConnectGuard(allowed, fence=fence)
    assert (await asyncio.to_thread(_ping_in_a_guarded_loop, mongo_uri, guard))["ok"] == 1
    assert ("127.0.0.1", port) in asked and guard.refused == []
    with pytest.raises(Exception, match="control database's server"):
        await asyncio.to_thread(_ping_in_a_guarded_loop, mongo_uri, ConnectGuard(allowed, fence=refusing_fence))


def _get_in_a_guarded_loop(url: str, guard: ConnectGuard) -> str:
    async def get() -> str:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(url) as response:
                    return str(response.status)
            except aiohttp.ClientConnectorError as exc:
                return str(exc)

    with asyncio.Runner(loop_factory=guarded_loop_factory(guard)) as runner:
        return runner.run(get())


async def test_any_http_client_in_the_process_is_refused_too(aiohttp_server: Any) -> None:
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response()

    app = web.Application()
    app.router.add_get("/", record)
    server = await aiohttp_server(app, host="127.0.0.1")
    guard = ConnectGuard(EgressPolicy())
    answer = await asyncio.to_thread(_get_in_a_guarded_loop, f"http://127.0.0.1:{server.port}/", guard)
    assert "egress policy" in answer and hits == []
    allowed = ConnectGuard(EgressPolicy.from_strings(["127.0.0.1/32"]))
    assert await asyncio.to_thread(_get_in_a_guarded_loop, f"http://127.0.0.1:{server.port}/", allowed) == "200"
    assert hits == ["/"]
