"""An election seen from the worker: for a few seconds every write is answered with one of the "not
primary" family (NotWritablePrimary, PrimarySteppedDown, InterruptedDueToReplStateChange: a TCP proxy in
front of the database forges the answer). Shorter than the lease's trusted window, the leader
rides it out in the same term; longer, it steps down, sends no write under its old token once the window
has ended, and leads again with the next token once writes land. The worker never crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import Settings
from syncjobs.worker.main import run_worker

from tests.fixtures.eventually import eventually
from tests.fixtures.tcp_proxy import CODE_NAMES, SeenWrite, TcpProxy, proxy

__all__ = ["proxy"]  # the fixture, shared
from tests.fixtures.worker_jobs import FAKE_EXECUTOR, make_job, runs_of

TTL_SECONDS = 3  # the default: trusted for TTL - TTL/10 after each renewal was sent
TRUSTED_SECONDS = TTL_SECONDS - TTL_SECONDS / 10
ELECTION_ERRORS = pytest.mark.parametrize("code", list(CODE_NAMES), ids=list(CODE_NAMES.values()))


class _Worker:
    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, logs: list[MutableMapping[str, Any]]) -> None:
        self.task, self.stop, self.logs = task, stop, logs

    def logged(self, event: str) -> list[MutableMapping[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == event]


@pytest.fixture
async def worker(settings: Settings, proxy: TcpProxy) -> AsyncIterator[_Worker]:
    stop = asyncio.Event()
    worker_settings = settings.with_overrides(
        mongodb_uri=proxy.uri(), worker_id="elected", executor_command=FAKE_EXECUTOR, lease_ttl_seconds=TTL_SECONDS
    )
    with capture_logs() as logs:
        task = asyncio.create_task(run_worker(worker_settings, stop=stop))
        try:
            yield _Worker(task, stop, logs)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def _lease(db: Database) -> Document | None:
    return await db.worker_locks.find_one({"_id": "scheduler", "owner": "elected"})


async def _fires(db: Database, job: Document) -> list[Document]:
    return [run for run in await runs_of(db, job["_id"]) if run["trigger"] == "schedule"]


async def _fired(db: Database, job: Document, count: int) -> bool:
    return len([run for run in await _fires(db, job) if run["status"] != "missed"]) >= count


async def _leading_and_firing(db: Database) -> tuple[Document, Document]:
    """What each fault below interrupts: a job firing every second, twice so far, under the worker's first
    term; the job and that term's lease."""
    job = await make_job(db, "ok", "* * * * * *", datetime.now(UTC))
    term = await eventually(lambda: _lease(db))
    await eventually(lambda: _fired(db, job, 2))
    return job, term


def _no_fire_twice(fires: list[Document]) -> None:
    scheduled = [run["scheduledFor"] for run in fires]
    assert len(scheduled) == len(set(scheduled)), "a fire has two runs"


@ELECTION_ERRORS
async def test_an_election_shorter_than_the_trusted_window_keeps_the_term(
    db: Database, proxy: TcpProxy, worker: _Worker, code: int
) -> None:
    job, term = await _leading_and_firing(db)
    renewals = len(_renewals(proxy))
    await eventually(lambda: _renewed_since(proxy, renewals))  # the window is whole when the election starts
    with proxy.failing_writes(code):
        await asyncio.sleep(1.0)  # the election: well inside the trusted window, whatever the heartbeat
    failed = [write for write in proxy.writes if not write.forwarded]
    assert failed, "no write was refused: the election missed the worker"
    written = len(await _fires(db, job))
    await eventually(lambda: _fired(db, job, written + 2))
    assert not worker.task.done()
    assert (await _lease(db) or {}).get("fencingToken") == term["fencingToken"]
    assert not worker.logged("lease_lapsed") and not worker.logged("stepped_down")
    _no_fire_twice(await _fires(db, job))


@ELECTION_ERRORS
async def test_a_longer_election_steps_the_leader_down_and_no_write_of_its_term_follows(
    db: Database, proxy: TcpProxy, worker: _Worker, code: int
) -> None:
    job, term = await _leading_and_firing(db)
    old = term["fencingToken"]
    started = asyncio.get_running_loop().time()
    with proxy.failing_writes(code):
        await eventually(lambda: _logged(worker, "stepped_down"), within=2 * TTL_SECONDS)
        await asyncio.sleep(1.0)  # the election goes on a little after the step-down
    assert not worker.task.done()
    later_term = await eventually(lambda: _lease_after(db, old))
    assert later_term["fencingToken"] > old
    written = len(await _fires(db, job))
    await eventually(lambda: _fired(db, job, written + 2))
    window_end = started + TRUSTED_SECONDS + 0.1  # the last renewal before the election was sent earlier
    stale: list[SeenWrite] = [w for w in proxy.writes if w.at > window_end and old in w.tokens()]
    assert not stale, f"writes under the old token after its window: {[w.command for w in stale]}"
    _no_fire_twice(await _fires(db, job))


def _renewals(proxy: TcpProxy) -> list[SeenWrite]:
    """The lease writes the proxy forwarded (takes and renewals go to `worker_locks`)."""
    return [w for w in proxy.writes if w.forwarded and "worker_locks" in w.command.values()]


async def _renewed_since(proxy: TcpProxy, count: int) -> bool:
    return len(_renewals(proxy)) > count


async def _logged(worker: _Worker, event: str) -> bool:
    return bool(worker.logged(event))


async def _lease_after(db: Database, token: int) -> Document | None:
    lease = await _lease(db)
    return lease if lease is not None and lease["fencingToken"] > token else None


async def test_a_slow_network_keeps_the_term_and_the_fires(db: Database, proxy: TcpProxy, worker: _Worker) -> None:
    """0.15 s each way (a 0.3 s round trip on every call, a link across regions) is slow, not lost: the
    lease renews in time. (At 0.4 s each way a new connection's handshake and a renewal outlast the 3 s
    lease's window: such a link needs a longer SYNCJOBS_LEASE_TTL_SECONDS.)"""
    job, term = await _leading_and_firing(db)
    proxy.latency(0.15)
    written = len(await _fires(db, job))
    await eventually(lambda: _fired(db, job, written + 3))
    proxy.latency(0.0)
    assert (await _lease(db) or {}).get("fencingToken") == term["fencingToken"]
    assert not worker.logged("lease_lapsed") and not worker.task.done()
    _no_fire_twice(await _fires(db, job))
