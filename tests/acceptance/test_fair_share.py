"""Issue 21, finding 8, on `syncjobs up` over REST as two workspace-token holders: one tenant's slow http
runs, started first, hold what their share and the one borrowed slot allow; the other tenant's run-now,
sent only once they run, starts at once beside them instead of waiting for one of them to end."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from syncjobs.shared.embedded import free_port

from tests.fixtures.eventually import eventually
from tests.fixtures.syncjobs_up import UpStack, running_up

pytestmark = pytest.mark.slow

SLOTS = 4  # the replica's SYNCJOBS_MAX_CONCURRENT_RUNS; the share (0.5) is 2, and one slot stays in reserve


@dataclass
class SlowApi:
    """An http source on loopback: `/slow` answers once released, `/fast` at once."""

    port: int
    release: asyncio.Event = field(default_factory=asyncio.Event)
    slow_requests: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def slow(self, _: web.Request) -> web.Response:
        self.slow_requests += 1
        record = {"id": self.slow_requests}  # one per run: the runs write to one collection side by side
        await self.release.wait()
        return web.json_response([record])

    async def fast(self, _: web.Request) -> web.Response:
        return web.json_response([{"id": 1}])


@pytest.fixture
async def slow_api() -> AsyncIterator[SlowApi]:
    api = SlowApi(free_port())
    app = web.Application()
    app.router.add_get("/slow", api.slow)
    app.router.add_get("/fast", api.fast)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", api.port).start()
    try:
        yield api
    finally:
        api.release.set()  # the executors' requests end before the stack stops
        await runner.cleanup()


@pytest.fixture
def stack(tmp_path: Path, mongo_uri: str, db_name: str) -> Iterator[UpStack]:
    environment = {
        "SYNCJOBS_MONGODB_URI": mongo_uri,
        "SYNCJOBS_DATABASE": db_name,
        "SYNCJOBS_MAX_CONCURRENT_RUNS": str(SLOTS),
    }
    with running_up(tmp_path, **environment) as running:
        yield running


@dataclass
class Tenant:
    stack: UpStack
    workspace: str
    token: str

    async def call(self, method: str, tail: str, body: Any = None) -> Any:
        path = f"/api/workspaces/{self.workspace}{tail}"
        status, answer = await asyncio.to_thread(self.stack.request, method, path, body, token=self.token)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {answer!r:.500}"
        return answer

    async def jobs_from(self, url: str, path: str, mongo_uri: str, count: int) -> list[str]:
        source_config = {"baseUrl": url, "entities": {"items": {"path": path}}}
        source = await self.call("POST", "/data-sources", {"name": "api", "kind": "http", "config": source_config})
        target = {"uri": mongo_uri, "database": f"fair_{secrets.token_hex(4)}"}
        destination = await self.call("POST", "/destinations", {"name": "dw", "kind": "mongodb", "config": target})
        jobs = []
        for number in range(count):
            body = {
                "name": f"job-{number}",
                "dataSourceId": source["id"],
                "destinationDatabaseId": destination["id"],
                "schedule": {"cron": "0 0 1 1 *"},
            }
            jobs.append((await self.call("POST", "/sync-jobs", body))["id"])
        return jobs

    async def run_now(self, job_id: str) -> str:
        return str((await self.call("POST", f"/sync-jobs/{job_id}/run"))["runId"])

    async def runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        return [await self.call("GET", f"/runs/{run_id}") for run_id in run_ids]


async def _tenant(stack: UpStack, workspace: str) -> Tenant:
    path = f"/api/workspaces/{workspace}/tokens"
    status, created = await asyncio.to_thread(stack.request, "POST", path, {"name": "tenant"})
    assert status == 201, created
    return Tenant(stack, workspace, created["token"])


def _reserve_on(stack: UpStack) -> bool:
    """The worker has seen the second workspace: a workspace past its share leaves a slot free."""
    events = (json.loads(line) for line in stack.logs().splitlines() if line.startswith("{"))
    return any(event.get("event") == "fair_share_reserve" and event.get("slots") == 1 for event in events)


async def test_a_tenants_later_run_starts_beside_anothers_slow_runs_that_came_first(
    stack: UpStack, slow_api: SlowApi, mongo_uri: str
) -> None:
    status, workspace = await asyncio.to_thread(stack.request, "POST", "/api/workspaces", {"name": "tenant-b"})
    assert status == 201, workspace
    busy, late = await _tenant(stack, stack.workspace_id), await _tenant(stack, workspace["id"])
    busy_jobs = await busy.jobs_from(slow_api.url, "/slow", mongo_uri, SLOTS)
    [late_job] = await late.jobs_from(slow_api.url, "/fast", mongo_uri, 1)
    await eventually(lambda: asyncio.to_thread(_reserve_on, stack), "the worker saw two workspaces", within=30)

    busy_runs = [await busy.run_now(job_id) for job_id in busy_jobs]

    async def slow_ones_running() -> bool:
        running = [run for run in await busy.runs(busy_runs) if run["status"] == "running"]
        return len(running) >= SLOTS - 1 and slow_api.slow_requests >= SLOTS - 1

    await eventually(slow_ones_running, "the busy tenant's slow runs running", within=60)
    late_run = await late.run_now(late_job)

    async def late_run_ended() -> dict[str, Any] | None:
        [run] = await late.runs([late_run])
        return run if run["status"] not in ("pending", "running") else None

    # Well within the slow runs' 30 s read timeout: without the reserve it would wait for one of them to end.
    ended = await eventually(late_run_ended, "the later tenant's run ended", within=20)
    assert ended["status"] == "succeeded", ended
    still = await busy.runs(busy_runs)
    running = [run for run in still if run["status"] == "running"]
    assert len(running) == SLOTS - 1, still  # it started and ended while the slow runs went on
    assert [run["status"] for run in still].count("pending") == 1, still  # the reserve was not borrowed
    late_start = datetime.fromisoformat(ended["startedAt"])
    waited = late_start - datetime.fromisoformat(ended["createdAt"])
    assert waited < timedelta(seconds=5), waited  # 10 ms here; the run waited 57.9 s
    assert all(datetime.fromisoformat(run["startedAt"]) < late_start for run in running), (running, ended)
    assert slow_api.slow_requests == SLOTS - 1  # the busy tenant's fourth run still waits

    slow_api.release.set()

    async def all_ended() -> list[dict[str, Any]] | None:
        runs = await busy.runs(busy_runs)
        return runs if all(run["status"] not in ("pending", "running") for run in runs) else None

    finished = await eventually(all_ended, "the busy tenant's runs ended", within=60)
    assert [run["status"] for run in finished] == ["succeeded"] * SLOTS, [run.get("error") for run in finished]
