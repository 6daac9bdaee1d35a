"""Partitions that hang instead of refusing: each worker replica reaches the database through a TCP proxy
of its own (its executors too), and the test cuts one off without closing a socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from syncjobs.shared.embedded import EmbeddedServer
from syncjobs.shared.models import SyncJob, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.store import job_runs

from tests.fixtures.eventually import eventually
from tests.fixtures.tcp_proxy import TcpProxy
from tests.fixtures.worker_jobs import file_written, make_job, process_gone, runs_of
from tests.fixtures.worker_processes import Workers

pytestmark = pytest.mark.slow

TTL_SECONDS = 3  # the scheduler lease's default
TRUSTED_SECONDS = TTL_SECONDS - TTL_SECONDS / 10
RUN_LEASE_SECONDS = 6
RUN_LEASE = str(RUN_LEASE_SECONDS)


@pytest.fixture
def proxies(embedded_server: EmbeddedServer) -> Iterator[list[TcpProxy]]:
    running = [TcpProxy(embedded_server.port).start() for _ in range(2)]
    try:
        yield running
    finally:
        for proxy in running:
            proxy.stop()


@pytest.fixture
def replicas(mongo_uri: str, db_name: str, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(mongo_uri, db_name, tmp_path, ttl_seconds=None)
    try:
        yield running
    finally:
        running.stop_all()


async def _lease_of(db: Database, worker_id: str) -> Document | None:
    lease = await db.worker_locks.find_one({"_id": "scheduler"})
    return lease if lease is not None and lease["owner"] == worker_id else None


async def _logged(workers: Workers, worker_id: str, event: str, times: int = 1) -> bool:
    return workers.log(worker_id).count(f'"{event}"') >= times


async def test_a_cut_leader_is_replaced_stops_firing_and_rejoins_as_a_standby(
    db: Database, replicas: Workers, proxies: list[TcpProxy], tmp_path: Path
) -> None:
    ticking = await make_job(db, "ok", "* * * * * *", datetime.now(UTC))
    pids = tmp_path / "hang.pids"
    hanging = await make_job(db, f"hang:{pids}", "0 0 1 1 *", datetime.now(UTC))
    replicas.start("w1", SYNCJOBS_MONGODB_URI=proxies[0].uri(), SYNCJOBS_RUN_LEASE_SECONDS=RUN_LEASE)
    term = await eventually(lambda: _lease_of(db, "w1"))
    await job_runs.create_manual_run(db, from_document(SyncJob, hanging), datetime.now(UTC))
    await eventually(lambda: file_written(pids))  # w1 runs it: the only replica yet
    executor_pids = [int(pid) for pid in pids.read_text().split()]
    replicas.start("w2", SYNCJOBS_MONGODB_URI=proxies[1].uri(), SYNCJOBS_RUN_LEASE_SECONDS=RUN_LEASE)
    await eventually(lambda: _logged(replicas, "w2", "standing_by"))

    proxies[0].cut()
    cut_at, cut_wall = time.monotonic(), datetime.now(UTC)
    second = await eventually(lambda: _lease_of(db, "w2"), within=3 * TTL_SECONDS)
    took_over_in = (second["acquiredAt"] - cut_wall).total_seconds()
    assert took_over_in < TTL_SECONDS + 1.0, f"the standby led {took_over_in:.2f} s after the cut"
    assert second["fencingToken"] == term["fencingToken"] + 1
    # the cut leader's executor is killed before its run lease could lapse (and the leader retry the run)
    await eventually(lambda: _all_gone(executor_pids), within=2 * RUN_LEASE_SECONDS)
    killed_wall = datetime.now(UTC)
    [lost] = await eventually(lambda: _lost_runs(db, hanging))
    assert killed_wall < lost["leaseUntil"], (killed_wall, lost["leaseUntil"])
    await eventually(lambda: _logged(replicas, "w1", "stepped_down"))

    proxies[0].heal()
    healed_at = time.monotonic()
    await eventually(lambda: _logged(replicas, "w1", "standing_by"), within=10)
    fired = len(await runs_of(db, ticking["_id"], trigger="schedule"))
    await eventually(lambda: _has_fires(db, ticking, fired + 2))
    assert await _lease_of(db, "w2") is not None

    old = term["fencingToken"]
    sent_late = [w for w in proxies[0].writes if old in w.tokens() and w.at > cut_at + TRUSTED_SECONDS + 0.1]
    assert not sent_late, f"the cut leader wrote under its token past its window: {sent_late}"
    landed = [w for w in proxies[0].writes if old in w.tokens() and w.forwarded and w.at > healed_at]
    assert not landed, f"a write of the old term landed after healing: {landed}"
    scheduled = [run["scheduledFor"] for run in await runs_of(db, ticking["_id"], trigger="schedule")]
    assert len(scheduled) == len(set(scheduled)), "a fire has two runs"


async def _has_fires(db: Database, job: Document, count: int) -> bool:
    return len(await runs_of(db, job["_id"], trigger="schedule")) >= count


async def _lost_runs(db: Database, job: Document) -> list[Document]:
    return await runs_of(db, job["_id"], status="failed", error="worker lost")


async def test_a_cut_claimer_loses_its_run_which_the_leader_retries_never_twice_at_once(
    db: Database, replicas: Workers, proxies: list[TcpProxy], tmp_path: Path
) -> None:
    """w1 leads (direct), its one slot busy; w2 claims through a proxy and is cut off mid-run."""
    busy = await make_job(db, "sleep:60", "0 0 1 1 *", datetime.now(UTC))
    pids = tmp_path / "hang.pids"
    retry = {"maxAttempts": 2, "backoffSeconds": 0}
    hanging = await make_job(db, f"hang:{pids}", "0 0 1 1 *", datetime.now(UTC), retry=retry)
    replicas.start("w1", SYNCJOBS_MAX_CONCURRENT_RUNS="1", SYNCJOBS_RUN_LEASE_SECONDS=RUN_LEASE)
    await eventually(lambda: _lease_of(db, "w1"))
    await job_runs.create_manual_run(db, from_document(SyncJob, busy), datetime.now(UTC))
    await eventually(lambda: _running(db, busy, "w1"))
    replicas.start("w2", SYNCJOBS_MONGODB_URI=proxies[0].uri(), SYNCJOBS_RUN_LEASE_SECONDS=RUN_LEASE)
    await eventually(lambda: _logged(replicas, "w2", "standing_by"))
    await job_runs.create_manual_run(db, from_document(SyncJob, hanging), datetime.now(UTC))
    first = await eventually(lambda: _running(db, hanging, "w2"))
    await eventually(lambda: file_written(pids))
    executor_pids = [int(pid) for pid in pids.read_text().split()]
    pids.unlink()

    proxies[0].cut()
    await eventually(lambda: _all_gone(executor_pids), within=2 * RUN_LEASE_SECONDS)
    killed_wall = datetime.now(UTC)
    [lost] = await eventually(lambda: _lost_runs(db, hanging), within=3 * RUN_LEASE_SECONDS)
    assert lost["_id"] == first["_id"] and killed_wall < lost["leaseUntil"]
    proxies[0].heal()  # w1's slot stays busy: the retry waits for w2
    second = await eventually(lambda: _running(db, hanging, "w2", attempt=2), within=30)
    assert second["startedAt"] > killed_wall, "the retry started while the first executor still ran"
    await eventually(lambda: file_written(pids))
    assert (await _lease_of(db, "w1")) is not None  # no leadership change


async def _running(db: Database, job: Document, worker_id: str, attempt: int = 1) -> Document | None:
    query = {"jobId": job["_id"], "status": "running", "workerId": worker_id, "attempt": attempt}
    return await db.job_runs.find_one(query)


async def _all_gone(pids: list[int]) -> bool:
    return all([await process_gone(pid) for pid in pids])
