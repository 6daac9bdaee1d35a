"""Workspace executor hosts (`SYNCJOBS_EXECUTOR_HOST=workspace`) with real processes: a workspace's runs
share its host one at a time and another workspace gets its own, a host refuses another workspace's run,
a timeout or cancel kills the host with its run only, a host that dies in a run fails that run saying
how, and a tap of a hosted run sees only the run's environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from structlog.testing import capture_logs
from syncjobs.shared.executor_protocol import CHANNEL_FLAG, EXECUTOR_COMMAND, executor_environment
from syncjobs.shared.mongo import Database
from syncjobs.worker.executor_hosts import ExecutorHosts
from syncjobs.worker.executor_process import ExecutionOutcome, run_executor
from syncjobs.worker.fork_server import ForkServer

from tests.acceptance.test_fork_server import executor_of, hanging_tap_job, parent_of, without_durations
from tests.fixtures.eventually import eventually
from tests.fixtures.executor_world import (
    MEMORY_LIMIT_MB,
    contents,
    make_job,
    make_mongodb_job,
    make_tap_job,
    new_run,
    oversized_http_source,
    run_channel,
    scratch_databases,
)
from tests.fixtures.security import security_env
from tests.fixtures.worker_jobs import file_written, process_gone
from tests.fixtures.worker_processes import Workers, has_runs

pytestmark = pytest.mark.slow


@pytest.fixture
async def hosts(fork_server: ForkServer) -> AsyncIterator[ExecutorHosts]:
    hosts = ExecutorHosts(fork_server)
    try:
        yield hosts
    finally:
        hosts.close()


async def hosted_run(
    db: Database,
    run_id: ObjectId,
    hosts: ExecutorHosts,
    workspace: ObjectId,
    *,
    seconds: float = 60,
    cancel: asyncio.Event | None = None,
    env: dict[str, str] | None = None,
) -> ExecutionOutcome:
    """The run as the worker hands it to a host of `workspace`: allowlisted environment (and `env`), spec
    over the channel."""
    env = executor_environment({**os.environ, **security_env(), **(env or {})}) | {"SYNCJOBS_DATABASE": db.name}
    argv = [*EXECUTOR_COMMAND, "--run-id", str(run_id), CHANNEL_FLAG]
    channel = await run_channel(db, run_id)
    return await run_executor(
        argv, env, seconds, cancel or asyncio.Event(), channel=channel, hosts=hosts, workspace=str(workspace)
    )


async def test_a_workspaces_runs_share_its_host_and_another_workspace_gets_its_own(
    db: Database, mongo_uri: str, hosts: ExecutorHosts
) -> None:
    async with scratch_databases(mongo_uri, 4) as (source, first_dest, second_dest, other_dest):
        await source.users.insert_many([{"_id": i, "n": i} for i in range(5)])
        workspace, first_job = await make_mongodb_job(db, mongo_uri, source, first_dest)
        _, second_job = await make_mongodb_job(db, mongo_uri, source, second_dest, workspace_id=workspace)
        other_workspace, other_job = await make_mongodb_job(db, mongo_uri, source, other_dest)

        first = await hosted_run(db, await new_run(db, first_job), hosts, workspace)
        assert (first.status, first.exit_code, first.error) == ("succeeded", 0, None), first.stderr_tail
        assert first.details == [{"entity": "users", "status": "updated"}]
        assert first.stats is not None and first.stats["totals"]["inserted"] == 5
        assert '"event": "run_finished"' in (first.stderr_tail or "")  # the run's own logs, on its own stderr
        [host] = hosts.idle_pids(str(workspace))

        second = await hosted_run(db, await new_run(db, second_job), hosts, workspace)
        assert (second.status, second.exit_code) == ("succeeded", 0), second.stderr_tail
        assert without_durations(second.stats) == without_durations(first.stats)
        assert hosts.idle_pids(str(workspace)) == [host] and hosts.started == 1  # the same process served both

        other = await hosted_run(db, await new_run(db, other_job), hosts, other_workspace)
        assert (other.status, other.exit_code) == ("succeeded", 0), other.stderr_tail
        [other_host] = hosts.idle_pids(str(other_workspace))
        assert other_host != host and hosts.started == 2
        for dest in (first_dest, second_dest, other_dest):
            assert await contents(dest, "users") == await contents(source, "users")


async def test_a_host_refuses_a_run_of_another_workspace_and_serves_no_more(
    db: Database, mongo_uri: str, hosts: ExecutorHosts
) -> None:
    async with scratch_databases(mongo_uri, 3) as (source, own_dest, their_dest):
        await source.users.insert_one({"_id": 1})
        workspace, own_job = await make_mongodb_job(db, mongo_uri, source, own_dest)
        their_workspace, their_job = await make_mongodb_job(db, mongo_uri, source, their_dest)
        assert (await hosted_run(db, await new_run(db, own_job), hosts, workspace)).status == "succeeded"
        [host] = hosts.idle_pids(str(workspace))

        refused = await hosted_run(db, await new_run(db, their_job), hosts, workspace)
        assert (refused.status, refused.exit_code) == ("failed", 2)
        assert refused.error == f"this executor host serves workspace {workspace}, not {their_workspace}"
        assert await contents(their_dest, "users") == {}
        assert hosts.idle_pids(str(workspace)) == []
        await eventually(lambda: process_gone(host))  # it held another workspace's spec: it retired


async def test_a_timeout_kills_the_host_with_its_run_and_the_next_run_gets_a_new_host(
    db: Database, mongo_uri: str, hosts: ExecutorHosts, tmp_path: Path
) -> None:
    pid_file = tmp_path / "tap.pid"
    async with scratch_databases(mongo_uri, 3) as (source, hanging_dest, dest):
        await source.users.insert_one({"_id": 1})
        job_id = await hanging_tap_job(db, mongo_uri, hanging_dest, pid_file)
        workspace = (await db.syncjobs.find_one({"_id": job_id}))["workspaceId"]
        _, quick_job = await make_mongodb_job(db, mongo_uri, source, dest, workspace_id=workspace)
        running = asyncio.create_task(hosted_run(db, await new_run(db, job_id), hosts, workspace, seconds=3))
        await eventually(lambda: file_written(pid_file))
        tap_pid = int(pid_file.read_text())
        host = executor_of(tap_pid)
        assert os.getpgid(host) == host == os.getpgid(tap_pid)  # the host's group holds the run's tap
        outcome = await running
        assert (outcome.status, outcome.error) == ("timed_out", "timed out after 3s")
        await eventually(lambda: process_gone(tap_pid))
        await eventually(lambda: process_gone(host))

        after = await hosted_run(db, await new_run(db, quick_job), hosts, workspace)
        assert (after.status, after.exit_code) == ("succeeded", 0), after.stderr_tail
        assert hosts.started == 2 and hosts.idle_pids(str(workspace)) != [host]
        assert await contents(dest, "users") == {1: {"_id": 1}}


async def test_a_cancelled_hosted_run_ends_cancelled_and_a_host_killed_in_a_run_fails_it_saying_so(
    db: Database, mongo_uri: str, hosts: ExecutorHosts, tmp_path: Path
) -> None:
    async with scratch_databases(mongo_uri, 2) as (dest, killed_dest):
        pid_file = tmp_path / "tap.pid"
        job_id = await hanging_tap_job(db, mongo_uri, dest, pid_file)
        workspace = (await db.syncjobs.find_one({"_id": job_id}))["workspaceId"]
        cancel = asyncio.Event()
        running = asyncio.create_task(hosted_run(db, await new_run(db, job_id), hosts, workspace, cancel=cancel))
        await eventually(lambda: file_written(pid_file))
        host = executor_of(int(pid_file.read_text()))
        cancel.set()
        outcome = await running
        assert (outcome.status, outcome.error) == ("cancelled", "cancelled")
        await eventually(lambda: process_gone(host))

        pid_file = tmp_path / "second-tap.pid"
        job_id = await hanging_tap_job(db, mongo_uri, killed_dest, pid_file)
        workspace = (await db.syncjobs.find_one({"_id": job_id}))["workspaceId"]
        running = asyncio.create_task(hosted_run(db, await new_run(db, job_id), hosts, workspace))
        await eventually(lambda: file_written(pid_file))
        host = executor_of(int(pid_file.read_text()))
        os.kill(host, signal.SIGKILL)
        outcome = await running
        assert (outcome.status, outcome.exit_code) == ("failed", -signal.SIGKILL)
        assert outcome.error == "executor killed by signal 9 (SIGKILL)"
        assert hosts.started == 2


async def test_a_tap_of_a_hosted_run_sees_only_the_runs_environment(
    db: Database, mongo_uri: str, hosts: ExecutorHosts, tmp_path: Path
) -> None:
    env_file = tmp_path / "tap-env"
    tap_config = {"streams": {"rows": [{"id": 1, "seq": 1}]}, "envFile": str(env_file)}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        workspace, job_id = await make_tap_job(db, mongo_uri, dest, tap_config)
        outcome = await hosted_run(db, await new_run(db, job_id), hosts, workspace)
        assert (outcome.status, outcome.exit_code) == ("succeeded", 0), outcome.stderr_tail
        assert await contents(dest, "rows") == {1: {"_id": 1, "id": 1, "seq": 1}}
        [host] = hosts.idle_pids(str(workspace))
        assert parent_of(host) == hosts._fork_server.pid
    names = json.loads(env_file.read_text())
    assert "PATH" in names
    assert [name for name in names if name.startswith("SYNCJOBS_") or name == "ONLY_IN_THE_FORK_SERVER"] == []


async def test_a_worker_with_workspace_hosts_runs_a_jobs_fires_in_one_host(
    workers: Workers, db: Database, mongo_uri: str
) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        next_second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        await db.syncjobs.update_one(
            {"_id": job_id}, {"$set": {"enabled": True, "schedule.cron": "* * * * * *", "nextRunAt": next_second}}
        )
        workers.start("w1", real_executor=True, SYNCJOBS_EXECUTOR_HOST="workspace", SYNCJOBS_LOG_LEVEL="debug")
        await eventually(lambda: has_runs(db, job_id, 3, status="succeeded"), within=60)
        assert await contents(dest, "users") == await contents(source, "users")
    log = workers.log("w1")
    assert log.count('"event": "executor_host_started"') == 1, log  # every run of the job in one host
    assert '"event": "executor_spawned_cold"' not in log and '"event": "executor_host_unavailable"' not in log


async def test_a_hosted_run_past_the_memory_limit_fails_saying_so_and_its_host_retires(
    db: Database, mongo_uri: str, hosts: ExecutorHosts
) -> None:
    async with oversized_http_source() as config, scratch_databases(mongo_uri, 3) as (dest, source, after_dest):
        await source.users.insert_one({"_id": 1})
        workspace, job_id = await make_job(
            db, source_kind="http", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
        )
        _, after_job = await make_mongodb_job(db, mongo_uri, source, after_dest, workspace_id=workspace)
        limit = {"SYNCJOBS_EXECUTOR_MEMORY_MB": MEMORY_LIMIT_MB}
        outcome = await hosted_run(db, await new_run(db, job_id), hosts, workspace, env=limit)
        assert (outcome.status, outcome.exit_code) == ("failed", 1), outcome.stderr_tail
        assert (
            outcome.error
            == f"out of memory: the run needed more than SYNCJOBS_EXECUTOR_MEMORY_MB ({MEMORY_LIMIT_MB} MiB)"
        )
        assert await dest.list_collection_names() == []
        assert hosts.idle_pids(str(workspace)) == []  # it retired

        after = await hosted_run(db, await new_run(db, after_job), hosts, workspace, env=limit)
        assert (after.status, after.exit_code) == ("succeeded", 0), after.stderr_tail
        assert hosts.started == 2


async def test_a_host_keeps_no_descriptor_and_no_client_of_a_run_past_it(
    db: Database, mongo_uri: str, hosts: ExecutorHosts
) -> None:
    """Twelve runs of one workspace through one host: after the second its descriptors stay as they were
    (each run's channel, stdout, stderr and status closed; one kept client per URI, not one per run)."""
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_one({"_id": 1})
        workspace, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        counts = []
        for _ in range(12):
            outcome = await hosted_run(db, await new_run(db, job_id), hosts, workspace)
            assert (outcome.status, outcome.exit_code) == ("succeeded", 0), outcome.stderr_tail
            [host] = hosts.idle_pids(str(workspace))
            try:
                counts.append(len(os.listdir(f"/proc/{host}/fd")))
            except PermissionError:
                pytest.skip("a non-dumpable process's descriptors are root's to list")
        assert hosts.started == 1
        assert counts[1:] == [counts[1]] * 11, counts


async def test_a_host_that_dies_idle_is_logged_and_the_next_run_gets_a_new_one(
    db: Database, mongo_uri: str, hosts: ExecutorHosts
) -> None:
    """No run's outcome tells of a host that dies between runs: the worker logs it (code, stderr tail)."""
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_one({"_id": 1})
        workspace, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        assert (await hosted_run(db, await new_run(db, job_id), hosts, workspace)).status == "succeeded"
        [host] = hosts.idle_pids(str(workspace))
        with capture_logs() as logs:
            os.kill(host, signal.SIGKILL)
            died = await eventually(lambda: _logged(logs, "executor_host_died"))
        assert (died["pid"], died["code"], died["workspace"]) == (host, -signal.SIGKILL, str(workspace))
        assert hosts.idle_pids(str(workspace)) == []

        after = await hosted_run(db, await new_run(db, job_id), hosts, workspace)
        assert (after.status, after.exit_code) == ("succeeded", 0), after.stderr_tail
        assert hosts.started == 2


async def _logged(logs: list[dict[str, object]], event: str) -> dict[str, object] | None:
    return next((line for line in logs if line["event"] == event), None)
