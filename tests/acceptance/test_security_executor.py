"""`syncjobs exec` under the production egress policy: its privileged side still reads the run from the
control database (the executor it starts has no control client to exempt) but a tenant destination on a
refused address fails the run, naming it."""

from __future__ import annotations

import pytest
from syncjobs.shared.mongo import Database

from tests.acceptance.test_executor_cli import EXECUTOR_MODULE, executor_env, run_cli
from tests.fixtures.executor_world import make_tap_job, new_run, scratch_databases

pytestmark = pytest.mark.slow


async def test_a_refused_destination_fails_the_run_in_the_executor_process(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, {"streams": {"rows": [{"id": 0, "seq": 0}]}})
        production = executor_env(mongo_uri, db.name) | {
            "SYNCJOBS_ALLOWED_NETWORKS": "",
            "SYNCJOBS_CONTROL_CLUSTER_DATABASES": "",
        }
        code, events, stderr = await run_cli([*EXECUTOR_MODULE, "--run-id", str(await new_run(db, job_id))], production)
        assert code == 1, stderr
        error = events[-1]["error"]
        assert "destination.config.uri" in error and "127.0.0.1" in error and "loopback" in error, error
        assert await dest.list_collection_names() == []
        code, events, stderr = await run_cli(
            [*EXECUTOR_MODULE, "--run-id", str(await new_run(db, job_id))], executor_env(mongo_uri, db.name)
        )
        assert code == 0, stderr
        assert await dest.rows.count_documents({}) == 1
