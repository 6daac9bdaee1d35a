"""The run spec a worker hands its executor: sealed secrets where it is stored, its own run only, over the
run channel (the executor's stdin); a full sync asks nothing of the control database, an incremental one
asks its parent for its cursors."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.executor.events import EventWriter
from syncjobs.executor.run import execute_run
from syncjobs.shared.connection_rules import ControlCluster, ControlClusterCache
from syncjobs.shared.executor_protocol import CHANNEL_FLAG, EXECUTOR_COMMAND, executor_environment
from syncjobs.shared.mongo import Database
from syncjobs.shared.run_spec import RunControlAccess, RunSpec, RunSpecError, read_run_spec
from syncjobs.shared.settings import Settings
from syncjobs.worker.executor_process import run_executor

from tests.fixtures.executor_world import (
    connection_rules,
    contents,
    make_job,
    make_mongodb_job,
    new_run,
    run_channel,
    scratch_databases,
)
from tests.fixtures.security import security_env


class CountingAccess(RunControlAccess):
    """The run's access to the control database, noting each request the executor makes."""

    def __init__(self, db: Database, run_id: ObjectId, job_id: ObjectId, asked: list[str]) -> None:
        super().__init__(db, run_id, job_id)
        self.asked = asked

    async def load_cursor(self, entity: str) -> Any | None:
        self.asked.append("cursor.load")
        return await super().load_cursor(entity)

    async def save_cursor(self, entity: str, cursor: Any) -> None:
        self.asked.append("cursor.save")
        await super().save_cursor(entity, cursor)


async def test_a_spec_keeps_secrets_sealed_and_names_one_run(db: Database) -> None:
    _, job_id = await make_job(
        db,
        source_kind="mongodb",
        source_config={"uri": "mongodb://reader:s3cret-pw@db.example.com:27017", "database": "crm"},
        dest_uri="mongodb://writer:other-pw@warehouse.example.com:27017",
        dest_database="dw",
    )
    run_id = await new_run(db, job_id)
    cluster = ControlCluster(db.name, frozenset({("127.0.0.1", 27017)}), frozenset({"a-process"}))
    spec = await read_run_spec(db, run_id, cluster)

    assert "s3cret-pw" not in str(spec.to_document()) and "other-pw" not in str(spec.to_document())
    line = spec.to_line()  # for the executor's stdin only: opened there, by the worker
    assert b"s3cret-pw" in line and b"other-pw" in line
    again = RunSpec.from_line(line, run_id)
    assert again == spec.opened()
    assert "s3cret-pw" in again.source["config"]["uri"] and "other-pw" in again.destination["config"]["uri"]
    assert again.job.id == str(job_id) and again.control_process_ids == {"a-process"}
    with pytest.raises(RunSpecError, match="not of"):
        RunSpec.from_line(line, ObjectId())
    with pytest.raises(RunSpecError, match="not a run spec"):
        RunSpec.from_line(b'{"spec": {"runId": 1}}', run_id)
    with pytest.raises(RunSpecError, match="not a run spec"):
        RunSpec.from_line(b"[[[", run_id)


async def test_a_full_sync_asks_nothing_of_the_control_database(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i, "n": i, "updatedAt": i} for i in range(4)])
        rules = await connection_rules(db)
        for mode, asks in (("full", []), ("incremental", ["cursor.load", "cursor.save"])):
            _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode=mode)
            run_id = await new_run(db, job_id)
            spec = (await read_run_spec(db, run_id, rules.control)).opened()
            asked: list[str] = []
            out = io.StringIO()
            access = CountingAccess(db, run_id, job_id, asked)
            code = await execute_run(access, spec, rules=rules, events=EventWriter(out))
            assert code == 0, out.getvalue()
            assert asked == asks
            assert await contents(dest, "users") == await contents(source, "users")
        assert await db.sync_state.count_documents({}) == 1


async def test_the_executor_takes_its_spec_over_its_stdin(db: Database, mongo_uri: str) -> None:
    """With the channel, the executor needs no control setting at all (its environment has none); a spec
    of another run is refused before anything runs, and so is no spec."""
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "updatedAt": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode="incremental")
        run_id = await new_run(db, job_id)
        env = executor_environment({**security_env(), "PATH": "/usr/bin:/bin"}) | {"SYNCJOBS_DATABASE": db.name}
        assert not {"SYNCJOBS_MONGODB_URI", "SYNCJOBS_SECRET_KEYS"} & set(env)
        channel = await run_channel(db, run_id)

        def argv(run: ObjectId) -> list[str]:
            return [*EXECUTOR_COMMAND, "--run-id", str(run), CHANNEL_FLAG]

        outcome = await run_executor(argv(run_id), env, 60, asyncio.Event(), channel=channel)
        assert (outcome.exit_code, outcome.status) == (0, "succeeded"), outcome.stderr_tail
        assert await contents(dest, "items") == await contents(source, "items")
        assert await db.sync_state.count_documents({"_id.jobId": job_id}) == 1  # saved through the parent

        other = await run_executor(argv(ObjectId()), env, 60, asyncio.Event(), channel=channel)
        assert other.exit_code == 2 and "not of" in (other.error or "")
        none = await run_executor(argv(run_id), env, 60, asyncio.Event())
        assert none.exit_code == 2 and "channel" in (none.error or "")


async def test_the_workers_control_cluster_is_discovered_again_once_a_minute_old(db: Database) -> None:
    now = [0.0]
    cache = ControlClusterCache(db.client, Settings(database=db.name), clock=lambda: now[0])
    first = await cache.get()
    assert first.process_ids and first.database == db.name
    now[0] = 59.0
    assert await cache.get() is first
    now[0] = 60.0
    again = await cache.get()
    assert again is not first and again == first
