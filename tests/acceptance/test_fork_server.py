"""The warm executor with real processes: runs forked from the fork server end as cold ones do, a
timeout kills the child's group, a SIGKILLed fork server is replaced without losing a run (those in
flight finish and are collected), and a child dies with a SIGKILLed worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.executor_protocol import CHANNEL_FLAG, EXECUTOR_COMMAND, executor_environment
from syncjobs.shared.metrics import WORKER_REGISTRY
from syncjobs.shared.models import SyncJob, from_document
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import job_runs
from syncjobs.shared.tap_isolation import NAMESPACE_ISOLATIONS, isolation
from syncjobs.worker.executor_process import ExecutionOutcome, run_executor
from syncjobs.worker.fork_server import START_ATTEMPTS, ForkServer

from tests.fixtures.eventually import eventually
from tests.fixtures.executor_world import (
    contents,
    executor_env,
    make_mongodb_job,
    make_tap_job,
    new_run,
    run_channel,
    scratch_databases,
)
from tests.fixtures.security import security_env
from tests.fixtures.worker_jobs import file_written, process_gone, runs_of
from tests.fixtures.worker_processes import Workers, has_runs

pytestmark = pytest.mark.slow


async def execute(
    args: list[str], env: dict[str, str], fork_server: ForkServer | None, seconds: float = 60
) -> ExecutionOutcome:
    """The executor as `syncjobs exec` by hand runs it (it reads the run itself, then forks the executor)."""
    return await run_executor([*EXECUTOR_COMMAND, *args], env, seconds, asyncio.Event(), fork_server=fork_server)


async def execute_run_of(
    db: Database, run_id: ObjectId, fork_server: ForkServer | None, seconds: float = 60
) -> ExecutionOutcome:
    """The executor as the worker runs it: its environment allowlisted, its spec over the run channel."""
    env = executor_environment({**os.environ, **security_env()}) | {"SYNCJOBS_DATABASE": db.name}
    argv = [*EXECUTOR_COMMAND, "--run-id", str(run_id), CHANNEL_FLAG]
    channel = await run_channel(db, run_id)
    return await run_executor(argv, env, seconds, asyncio.Event(), fork_server=fork_server, channel=channel)


def warm_first_events() -> float:
    value = WORKER_REGISTRY.get_sample_value("syncjobs_executor_first_event_seconds_count", {"start": "warm"})
    return value or 0.0


def without_durations(stats: Any) -> Any:
    if isinstance(stats, dict):
        return {k: without_durations(v) for k, v in stats.items() if k != "durationMs"}
    return stats


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def executor_of(tap_pid: int) -> int:
    """The executor that started a tap: its parent, or its grandparent where the tap runs under the
    bridge of its network namespace (shared/tap_isolation.py)."""
    parent = parent_of(tap_pid)
    return parent_of(parent) if isolation() in NAMESPACE_ISOLATIONS else parent


async def test_a_warm_run_ends_as_a_cold_run_does(db: Database, mongo_uri: str, fork_server: ForkServer) -> None:
    env = executor_env(mongo_uri, db.name)  # for `syncjobs exec` by hand, below
    warm_before = warm_first_events()
    async with scratch_databases(mongo_uri, 3) as (source, cold_dest, warm_dest):
        await source.users.insert_many([{"_id": i, "n": i} for i in range(5)])
        outcomes = {}
        for server, dest in ((None, cold_dest), (fork_server, warm_dest)):
            _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
            outcomes[server] = await execute_run_of(db, await new_run(db, job_id), server)
        cold, warm = outcomes[None], outcomes[fork_server]
        assert (warm.status, warm.exit_code, warm.error, warm.details) == ("succeeded", 0, None, cold.details)
        assert (cold.status, cold.exit_code, cold.details) == (
            "succeeded",
            0,
            [{"entity": "users", "status": "updated"}],
        )
        assert without_durations(warm.stats) == without_durations(cold.stats)
        assert warm.stats is not None and warm.stats["totals"]["inserted"] == 5
        assert (
            await contents(warm_dest, "users") == await contents(cold_dest, "users") == await contents(source, "users")
        )
        assert '"event": "run_finished"' in (warm.stderr_tail or "")  # the executor's logs, on its stderr
    assert fork_server.starts == 1 and warm_first_events() == warm_before + 1

    for args, code in ((["--run-id", str(ObjectId())], 1), (["--run-id", "nope"], 2), (["--dry"], 2)):
        cold = await execute(args, env, None)
        warm = await execute(args, env, fork_server)
        assert (
            (warm.status, warm.exit_code, warm.error)
            == (cold.status, cold.exit_code, cold.error)
            == (
                "failed",
                code,
                cold.error,
            )
        )
        assert warm.error
    assert fork_server.starts == 1


async def test_a_tap_of_a_warm_run_sees_only_the_runs_environment(
    db: Database, mongo_uri: str, fork_server: ForkServer, tmp_path: Path
) -> None:
    env_file = tmp_path / "tap-env"
    tap_config = {"streams": {"rows": [{"id": 1, "seq": 1}]}, "envFile": str(env_file)}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config)
        outcome = await execute_run_of(db, await new_run(db, job_id), fork_server)
        assert (outcome.status, outcome.exit_code) == ("succeeded", 0), outcome.stderr_tail
        assert await contents(dest, "rows") == {1: {"_id": 1, "id": 1, "seq": 1}}
    names = json.loads(env_file.read_text())
    assert "PATH" in names
    assert [name for name in names if name.startswith("SYNCJOBS_") or name == "ONLY_IN_THE_FORK_SERVER"] == []


async def test_a_timeout_kills_the_warm_executors_group(
    db: Database, mongo_uri: str, fork_server: ForkServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "tap.pid"
    async with scratch_databases(mongo_uri, 1) as (dest,):
        job_id = await hanging_tap_job(db, mongo_uri, dest, pid_file)
        running = asyncio.create_task(execute_run_of(db, await new_run(db, job_id), fork_server, 3))
        await eventually(lambda: file_written(pid_file))
        tap_pid = int(pid_file.read_text())
        executor_pid = executor_of(tap_pid)
        assert parent_of(executor_pid) == fork_server.pid  # forked warm
        assert os.getpgid(executor_pid) == executor_pid == os.getpgid(tap_pid)  # a group of its own
        outcome = await running
        assert (outcome.status, outcome.error) == ("timed_out", "timed out after 3s")
        await eventually(lambda: process_gone(tap_pid))
        await eventually(lambda: process_gone(executor_pid))


async def test_runs_in_flight_outlive_a_sigkilled_fork_server_and_new_ones_get_a_new_one(
    db: Database, mongo_uri: str, fork_server: ForkServer, tmp_path: Path
) -> None:
    pid_file, release = tmp_path / "tap.pid", tmp_path / "release"
    waiting = {"streams": {"rows": [{"id": 0, "seq": 0}]}, "pidFile": str(pid_file), "waitFor": str(release)}
    async with scratch_databases(mongo_uri, 3) as (source, first_dest, second_dest):
        await source.users.insert_one({"_id": 1})
        _, waiting_job = await make_tap_job(db, mongo_uri, first_dest, waiting)
        await _without_discovery(db)
        _, quick_job = await make_mongodb_job(db, mongo_uri, source, second_dest)
        in_flight = asyncio.create_task(execute_run_of(db, await new_run(db, waiting_job), fork_server))
        await eventually(lambda: file_written(pid_file))
        first_server = fork_server.pid
        assert first_server is not None
        os.kill(first_server, signal.SIGKILL)
        await eventually(lambda: process_gone(first_server))

        after = await execute_run_of(db, await new_run(db, quick_job), fork_server)
        assert (after.status, after.exit_code) == ("succeeded", 0), after.stderr_tail
        assert fork_server.starts == 2 and fork_server.pid not in (None, first_server)
        assert not in_flight.done()
        release.touch()
        outcome = await in_flight
        assert (outcome.status, outcome.exit_code, outcome.error) == ("succeeded", 0, None), outcome.stderr_tail
        assert await contents(first_dest, "rows") == {0: {"_id": 0, "id": 0, "seq": 0}}


async def _without_discovery(db: Database) -> None:
    """The tap's pid file then names the process that reads the stream, not a `--discover` gone since."""
    await db.data_sources.update_many({"kind": "command"}, {"$set": {"config.streams": ["rows"]}})


async def hanging_tap_job(db: Database, mongo_uri: str, dest: Database, pid_file: Path) -> ObjectId:
    """A job whose tap writes its pid to `pid_file` after one record, then blocks until killed."""
    tap_config = {"streams": {"rows": [{"id": 0, "seq": 0}]}, "hangAfter": 1, "pidFile": str(pid_file)}
    _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config, mode="incremental")
    await _without_discovery(db)
    return job_id


async def test_a_fork_server_that_cannot_start_costs_speed_not_the_run(db: Database, mongo_uri: str) -> None:
    broken = ForkServer({**os.environ, "PYTHONHOME": "/nonexistent"})  # its interpreter cannot start
    try:
        async with scratch_databases(mongo_uri, 2) as (source, dest):
            await source.users.insert_one({"_id": 1})
            _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
            outcome = await execute_run_of(db, await new_run(db, job_id), broken)
            assert (outcome.status, outcome.exit_code) == ("succeeded", 0), outcome.stderr_tail
            assert await contents(dest, "users") == {1: {"_id": 1}}
        assert broken.starts == START_ATTEMPTS and broken.pid is None  # then the run was spawned cold
    finally:
        await broken.close()


def fork_server_of(worker_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if parent_of(int(entry.name)) == worker_pid and b"fork_server" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    return None


async def test_a_worker_replaces_its_sigkilled_fork_server_and_loses_no_run(
    workers: Workers, db: Database, mongo_uri: str
) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        next_second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        await db.syncjobs.update_one(
            {"_id": job_id}, {"$set": {"enabled": True, "schedule.cron": "* * * * * *", "nextRunAt": next_second}}
        )
        # a process per run: with workspace hosts, the job's host outlives its fork server and needs no other
        worker = workers.start("w1", real_executor=True, SYNCJOBS_EXECUTOR_HOST="run")
        await eventually(lambda: has_runs(db, job_id, 2, status="succeeded"), within=60)
        first_server = fork_server_of(worker.pid)
        assert first_server is not None
        os.kill(first_server, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        await eventually(lambda: has_runs(db, job_id, 3, status="succeeded", started_after=killed_at), within=60)
        second_server = fork_server_of(worker.pid)
        assert second_server not in (None, first_server)
        assert worker.poll() is None

    fires = await runs_of(db, job_id, trigger="schedule")
    scheduled = [run["scheduledFor"] for run in fires]
    assert scheduled == [scheduled[0] + timedelta(seconds=i) for i in range(len(scheduled))], "a fire was lost"
    statuses = [run["status"] for run in fires]
    ran = statuses[statuses.index("succeeded") :]  # fires due while the worker was still starting are missed
    assert set(ran) <= {"succeeded", "skipped", "running", "pending"}


async def test_a_warm_executor_dies_with_a_sigkilled_worker(
    workers: Workers, db: Database, mongo_uri: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "tap.pid"
    async with scratch_databases(mongo_uri, 1) as (dest,):
        job_id = await hanging_tap_job(db, mongo_uri, dest, pid_file)
        worker = workers.start("w1", real_executor=True)
        job = await db.syncjobs.find_one({"_id": job_id})
        await eventually(lambda: db.worker_locks.find_one({"_id": "scheduler", "owner": "w1"}))
        await job_runs.create_manual_run(db, from_document(SyncJob, job), datetime.now(UTC))
        await eventually(lambda: file_written(pid_file), within=60)
        # Its cursor saved, the executor has printed its progress and now only waits for the blocked
        # tap: nothing it writes will fail on the pipes of a dead worker; only the lifeline ends it.
        await eventually(lambda: db.sync_state.find_one({"_id.jobId": job_id}))
        tap_pid = int(pid_file.read_text())
        executor_pid, parent_of_tap = executor_of(tap_pid), parent_of(tap_pid)
        server_pid = parent_of(executor_pid)
        assert parent_of(server_pid) == worker.pid  # forked by the worker's fork server
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        await eventually(lambda: _all_gone([executor_pid, parent_of_tap, tap_pid, server_pid]))


async def _all_gone(pids: list[int]) -> bool:
    return all([await process_gone(pid) for pid in pids])
