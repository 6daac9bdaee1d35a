"""Real `syncjobs worker` processes: one active of two, failover on SIGKILL, hand-over on SIGTERM,
and a database restart in the middle of a run."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from syncjobs.shared.embedded import EmbeddedServer, free_port, start_embedded
from syncjobs.shared.models import SyncJob, from_document
from syncjobs.shared.mongo import Database, Document, connect, ensure_indexes
from syncjobs.shared.store import job_runs

from tests.fixtures.eventually import eventually
from tests.fixtures.executor_world import make_mongodb_job, new_run, scratch_databases
from tests.fixtures.worker_jobs import file_written, make_job, process_gone, runs_of
from tests.fixtures.worker_processes import Workers, has_runs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def _leader(db: Database) -> Document | None:
    return await db.worker_locks.find_one({"_id": "scheduler"})


async def _led_by(db: Database, worker_id: str) -> Document | None:
    lease = await _leader(db)
    return lease if lease is not None and lease["owner"] == worker_id else None


async def test_sigkill_of_the_active_worker_loses_no_fire_and_doubles_none(workers: Workers, db: Database) -> None:
    job = await make_job(db, "ok", "*/2 * * * * *", datetime.now(UTC))
    workers.start("w1")
    first_term = await eventually(lambda: _led_by(db, "w1"))
    workers.start("w2")
    await eventually(lambda: has_runs(db, job["_id"], 3, status="succeeded"))
    assert "standing_by" in workers.log("w2")
    assert (await _leader(db) or {})["owner"] == "w1"

    workers.processes["w1"].send_signal(signal.SIGKILL)
    workers.processes["w1"].wait()
    killed_at = datetime.now(UTC)
    second_term = await eventually(lambda: _led_by(db, "w2"))
    assert second_term["fencingToken"] == first_term["fencingToken"] + 1
    await eventually(lambda: has_runs(db, job["_id"], 2, status="succeeded", started_after=killed_at))

    fires = [run for run in await runs_of(db, job["_id"]) if run["trigger"] == "schedule"]
    scheduled = [run["scheduledFor"] for run in fires]
    assert len(scheduled) == len(set(scheduled)), "a fire has two runs"
    expected = [scheduled[0] + timedelta(seconds=2 * i) for i in range(len(scheduled))]
    assert scheduled == expected, "a fire between the first and the last has no run"
    assert {run["status"] for run in fires} <= {"succeeded", "missed", "skipped", "failed", "running", "pending"}
    assert not [run for run in fires if run["status"] == "failed" and run["error"] != "worker lost"]


async def test_with_the_default_settings_a_sigkilled_leader_is_replaced_within_5_seconds(
    mongo_uri: str, db_name: str, db: Database, tmp_path: Path
) -> None:
    """Replaced: the next fire after the kill has started on the new leader's watch."""
    job = await make_job(db, "ok", "* * * * * *", datetime.now(UTC))
    defaults = Workers(mongo_uri, db_name, tmp_path, ttl_seconds=None)
    try:
        defaults.start("w1")
        await eventually(lambda: _led_by(db, "w1"))
        defaults.start("w2")
        await eventually(lambda: has_runs(db, job["_id"], 2, status="succeeded"))
        await eventually(lambda: _logged(defaults, "w2", "standing_by"))
        defaults.processes["w1"].send_signal(signal.SIGKILL)
        defaults.processes["w1"].wait()
        killed_at = datetime.now(UTC)
        term = await eventually(lambda: _led_by(db, "w2"))
        started = await eventually(lambda: _first_started_fire(db, job["_id"], term["fencingToken"]))
    finally:
        defaults.stop_all()
    replaced_in = (started["startedAt"] - killed_at).total_seconds()
    assert replaced_in < 5.0, f"the new leader's first fire started {replaced_in:.2f} s after the kill"


async def _first_started_fire(db: Database, job_id: ObjectId, token: int) -> Document | None:
    """The first fire of the term with `token` that started."""
    query = {"jobId": job_id, "trigger": "schedule", "fencingToken": token, "startedAt": {"$ne": None}}
    return await db.job_runs.find_one(query, sort=[("startedAt", 1)])


async def test_sigterm_hands_the_lease_to_the_standby(workers: Workers, db: Database) -> None:
    workers.start("w1")
    first_term = await eventually(lambda: _led_by(db, "w1"))
    workers.start("w2")
    await eventually(lambda: _logged(workers, "w2", "standing_by"))
    workers.processes["w1"].send_signal(signal.SIGTERM)
    assert workers.processes["w1"].wait(timeout=30) == 0
    assert "lease_released" in workers.log("w1")
    second_term = await eventually(lambda: _led_by(db, "w2"))
    assert second_term["fencingToken"] == first_term["fencingToken"] + 1


async def _logged(workers: Workers, worker_id: str, event: str) -> bool:
    return event in workers.log(worker_id)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[list[EmbeddedServer]]:
    """A server this test may stop and restart on the same port and storage."""
    servers = [start_embedded(tmp_path / "data", port=free_port())]
    try:
        yield servers
    finally:
        servers[-1].stop()


async def test_a_run_survives_a_database_restart(own_server: list[EmbeddedServer], tmp_path: Path) -> None:
    server = own_server[0]
    client = connect(server.uri)
    db = client["restart"]
    await ensure_indexes(db)
    job = await make_job(db, "sleep:2", "0 0 1 1 *", datetime.now(UTC))
    runner = Workers(server.uri, "restart", tmp_path, ttl_seconds=60)
    try:
        runner.start("w1")
        await eventually(lambda: _led_by(db, "w1"))
        run = await job_runs.create_manual_run(db, from_document(SyncJob, job), datetime.now(UTC))
        await eventually(lambda: has_runs(db, job["_id"], 1, status="running"))
        server.stop()
        await eventually(lambda: _logged(runner, "w1", "database_unavailable"), within=60)
        own_server.append(start_embedded(server.storage_path, port=server.port))
        await eventually(lambda: has_runs(db, job["_id"], 1, status="succeeded"), within=60)
        stored = await job_runs.get_run(db, ObjectId(run.id))
        assert (stored.status, stored.stats) == ("succeeded", {"read": 1})
        await eventually(lambda: _logged(runner, "w1", "database_available"))
        assert runner.log("w1").count("database_unavailable") == 1
        assert runner.processes["w1"].poll() is None
    finally:
        runner.stop_all()
        await client.close()


async def test_the_executor_dies_with_a_sigkilled_worker_and_its_run_is_marked_lost(
    workers: Workers, db: Database, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    job = await make_job(db, f"hang:{pids_file}", "0 0 1 1 *", datetime.now(UTC))
    workers.start("w1")
    await eventually(lambda: _led_by(db, "w1"))
    await job_runs.create_manual_run(db, from_document(SyncJob, job), datetime.now(UTC))
    await eventually(lambda: has_runs(db, job["_id"], 1, status="running"))
    await eventually(lambda: file_written(pids_file))
    executor_pid, its_child = (int(pid) for pid in pids_file.read_text().split())
    workers.processes["w1"].send_signal(signal.SIGKILL)
    workers.processes["w1"].wait()
    await eventually(lambda: process_gone(executor_pid))
    await eventually(lambda: process_gone(its_child))  # its group, children included (worker/group_keeper.py)
    workers.start("w2")
    await eventually(lambda: _led_by(db, "w2"))
    [lost] = await eventually(lambda: runs_of(db, job["_id"], status="failed"))
    assert lost["error"] == "worker lost"


async def test_a_worker_started_among_decoy_packages_runs_our_executor(
    workers: Workers, db: Database, mongo_uri: str, tmp_path: Path
) -> None:
    """A user's own `executor/` or `shared/` in the current directory never replaces ours."""
    project = tmp_path / "project"
    marker = tmp_path / "decoy-imported"
    for package in ("executor", "shared", "worker", "api"):
        (project / package).mkdir(parents=True)
        decoy = f"open({str(marker)!r}, 'a').write({package!r})\nraise SystemExit(3)\n"
        (project / package / "__init__.py").write_text(decoy)
        (project / package / "__main__.py").write_text(decoy)
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i, "n": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        workers.start("w1", cwd=project, real_executor=True)
        run_id = await new_run(db, job_id)
        run = await eventually(lambda: _finished(db, run_id))
        assert run["status"] == "succeeded", run
        assert await dest.users.count_documents({}) == 3
    assert not marker.exists(), marker.read_text()


async def _finished(db: Database, run_id: ObjectId) -> Document | None:
    return await db.job_runs.find_one({"_id": run_id, "status": {"$nin": ["pending", "running"]}})
