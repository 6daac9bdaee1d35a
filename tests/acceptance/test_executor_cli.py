"""The executor as the worker runs it: a real subprocess, NDJSON on stdout, logs on stderr, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.mongo import Database

from tests.fixtures.eventually import eventually
from tests.fixtures.executor_world import (
    MEMORY_LIMIT_MB,
    contents,
    executor_env,
    make_job,
    make_mongodb_job,
    make_tap_job,
    new_run,
    oversized_http_source,
    scratch_databases,
)
from tests.fixtures.worker_jobs import process_gone

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
SYNCJOBS_CLI = [sys.executable, "-P", "-m", "syncjobs"]
EXECUTOR_MODULE = [sys.executable, "-P", "-m", "syncjobs.executor"]


async def start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )


async def start_new_run(db: Database, job_id: ObjectId, env: dict[str, str]) -> asyncio.subprocess.Process:
    """The executor on a new run of the job, as the worker starts it, for a test that stops it midway."""
    return await start([*EXECUTOR_MODULE, "--run-id", str(await new_run(db, job_id))], env)


async def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    process = await start(argv, env)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in out.decode().splitlines()], err.decode()


async def test_exec_syncs_and_speaks_ndjson(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i, "n": i} for i in range(5)])
        await source.logs.insert_many([{"_id": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, exclude=["logs"])
        env = executor_env(mongo_uri, db.name)

        run_id = await new_run(db, job_id)
        code, events, stderr = await run_cli([*SYNCJOBS_CLI, "exec", "--run-id", str(run_id), "--dry-run"], env)
        assert code == 0
        assert events[-1]["event"] == "result" and events[-1]["dryRun"] is True
        assert events[-1]["stats"]["entities"]["users"]["inserted"] == 5
        assert await dest.list_collection_names() == []

        run_id = await new_run(db, job_id)
        code, events, stderr = await run_cli([*EXECUTOR_MODULE, "--run-id", str(run_id)], env)
        assert code == 0, stderr
        kinds = [e["event"] for e in events]
        assert kinds[-2:] == ["entity", "result"] and "progress" in kinds
        result = events[-1]
        assert result["status"] == "succeeded"
        assert result["stats"]["totals"]["inserted"] == 5 and result["details"] == [
            {"entity": "users", "status": "updated"}
        ]
        assert any(json.loads(line).get("event") == "run_finished" for line in stderr.splitlines())
        assert await contents(dest, "users") == await contents(source, "users")
        assert "logs" not in await dest.list_collection_names()


async def test_exec_fails_cleanly_for_an_unknown_run(db: Database, mongo_uri: str) -> None:
    env = executor_env(mongo_uri, db.name)
    code, events, _ = await run_cli([*EXECUTOR_MODULE, "--run-id", str(ObjectId())], env)
    assert code == 1
    assert events[-1]["status"] == "failed" and "run not found" in events[-1]["error"]
    code, events, _ = await run_cli([*EXECUTOR_MODULE, "--run-id", "nope"], env)
    assert code == 2 and events[-1]["status"] == "failed"


async def test_killed_between_batches_then_rerun_loses_and_doubles_nothing(db: Database, mongo_uri: str) -> None:
    records = [{"id": i, "seq": i, "name": f"r{i}"} for i in range(10)]
    tap_config: dict[str, Any] = {
        "streams": {"rows": records},
        "stateEvery": 100,
        "hangAfter": 4,
    }
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config, mode="incremental")
        env = executor_env(mongo_uri, db.name)
        process = await start_new_run(db, job_id, env)
        assert process.stdout is not None
        try:
            # The first progress event comes after the 4 records before the tap's STATE are written and
            # that STATE saved; the tap then blocks, so the kill lands between batches.
            event = json.loads(await process.stdout.readline())
            assert (event["event"], event["read"]) == ("progress", 4)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            await process.communicate()
        assert process.returncode == -signal.SIGKILL
        state = await db.sync_state.find_one({"_id": {"jobId": job_id, "entity": "rows"}})
        assert state["cursor"]["bookmarks"]["rows"] == {"seq": 3}
        assert sorted(await contents(dest, "rows")) == [0, 1, 2, 3]

        del tap_config["hangAfter"]
        await db.data_sources.update_one({}, {"$set": {"config.config": tap_config}})
        code, events, stderr = await run_cli([*EXECUTOR_MODULE, "--run-id", str(await new_run(db, job_id))], env)
        assert code == 0, stderr
        assert events[-1]["stats"]["entities"]["rows"]["read"] == 6
        assert await contents(dest, "rows") == {r["id"]: {"_id": r["id"], **r} for r in records}
        assert await dest.rows.count_documents({}) == 10


async def test_the_tap_dies_with_a_sigkilled_executor(db: Database, mongo_uri: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "tap.pid"
    tap_config = {"streams": {"rows": [{"id": 0, "seq": 0}]}, "hangAfter": 1, "pidFile": str(pid_file)}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config, mode="incremental")
        process = await start_new_run(db, job_id, executor_env(mongo_uri, db.name))
        assert process.stdout is not None
        try:
            assert json.loads(await process.stdout.readline())["event"] == "progress"  # the tap now blocks
            tap_pid = int(pid_file.read_text())
            process.kill()  # the executor alone, not its process group: only the death signal reaches the tap
            await process.communicate()
            assert process.returncode == -signal.SIGKILL
            await eventually(lambda: process_gone(tap_pid), within=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # a test that failed leaves no tap behind


async def test_a_run_past_the_memory_limit_fails_saying_so(db: Database, mongo_uri: str) -> None:
    """Issue 21, finding 8: the executor runs under RLIMIT_AS; a run that needs more says out of memory."""
    async with oversized_http_source() as config, scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_job(
            db, source_kind="http", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
        )
        env = {**executor_env(mongo_uri, db.name), "SYNCJOBS_EXECUTOR_MEMORY_MB": MEMORY_LIMIT_MB}
        code, events, stderr = await run_cli([*EXECUTOR_MODULE, "--run-id", str(await new_run(db, job_id))], env)
        assert code == 1, stderr
        assert (
            f"out of memory: the run needed more than SYNCJOBS_EXECUTOR_MEMORY_MB ({MEMORY_LIMIT_MB} MiB)"
            == (events[-1]["error"])
        )
        assert await dest.list_collection_names() == []
