"""The run spec a worker hands its executor: sealed secrets, its own run only, and a full sync that opens
no connection to the control database (an incremental one opens it for its cursors)."""

from __future__ import annotations

import io
import sys

import pytest
from bson import ObjectId
from syncjobs.executor.cli import ControlDatabase, execute_run
from syncjobs.executor.events import EventWriter
from syncjobs.shared.connection_rules import ControlCluster, ControlClusterCache
from syncjobs.shared.mongo import Database
from syncjobs.shared.run_spec import RUN_SPEC_ENV, RunSpec, RunSpecError, read_run_spec
from syncjobs.shared.settings import Settings

from tests.acceptance.test_executor_cli import run_cli
from tests.fixtures.executor_world import (
    connection_rules,
    contents,
    executor_env,
    make_job,
    make_mongodb_job,
    new_run,
    scratch_databases,
)

EXECUTOR_MODULE = [sys.executable, "-P", "-m", "syncjobs.executor"]


def _counting(db: Database, opened: list[str]) -> ControlDatabase:
    """`db` as the control database, noting each time the executor opens it."""

    def open_database() -> Database:
        opened.append(db.name)
        return db

    async def leave_open(_: Database) -> None:
        return None

    return ControlDatabase(open_database, leave_open)


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

    text = spec.to_json()
    assert "s3cret-pw" not in text and "other-pw" not in text
    again = RunSpec.from_json(text, run_id)
    assert again == spec
    assert "s3cret-pw" in again.opened_source()["config"]["uri"]
    assert "other-pw" in again.opened_destination()["config"]["uri"]
    assert again.job.id == str(job_id) and again.control_process_ids == {"a-process"}
    with pytest.raises(RunSpecError, match="not of"):
        RunSpec.from_json(text, ObjectId())
    with pytest.raises(RunSpecError, match="not a run spec"):
        RunSpec.from_json('{"runId": 1}', run_id)


async def test_a_full_sync_handed_its_spec_never_opens_the_control_database(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i, "n": i, "updatedAt": i} for i in range(4)])
        rules = await connection_rules(db)
        for mode, opens in (("full", []), ("incremental", [db.name])):
            _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode=mode)
            run_id = await new_run(db, job_id)
            spec = await read_run_spec(db, run_id, rules.control)
            opened: list[str] = []
            out = io.StringIO()
            code = await execute_run(_counting(db, opened), run_id, rules=rules, spec=spec, events=EventWriter(out))
            assert code == 0, out.getvalue()
            assert opened[:1] == opens  # incremental: opened for the cursors (then reused)
            assert await contents(dest, "users") == await contents(source, "users")
        assert await db.sync_state.count_documents({}) == 1


async def test_the_executor_takes_its_spec_from_the_environment(db: Database, mongo_uri: str) -> None:
    """With the spec, the run needs nothing of the control database it is pointed at (here an empty one);
    a spec of another run is refused before anything runs."""
    async with scratch_databases(mongo_uri, 3) as (source, dest, empty_control):
        await source.items.insert_many([{"_id": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        run_id = await new_run(db, job_id)
        spec = await read_run_spec(db, run_id, (await connection_rules(db)).control)
        env = executor_env(mongo_uri, empty_control.name)

        code, events, stderr = await run_cli(
            [*EXECUTOR_MODULE, "--run-id", str(run_id)], env | {RUN_SPEC_ENV: spec.to_json()}
        )
        assert (code, events[-1]["status"]) == (0, "succeeded"), stderr
        assert await contents(dest, "items") == await contents(source, "items")

        code, events, _ = await run_cli(
            [*EXECUTOR_MODULE, "--run-id", str(ObjectId())], env | {RUN_SPEC_ENV: spec.to_json()}
        )
        assert code == 2 and "not of" in events[-1]["error"]

        code, events, _ = await run_cli([*EXECUTOR_MODULE, "--run-id", str(run_id)], env)
        assert code == 1 and "not found" in events[-1]["error"]  # without it, the empty database has no such run


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
