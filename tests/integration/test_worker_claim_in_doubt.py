"""A claim whose answer vanished (a partition that drops only the replies): the claim landed, so the run is
this replica's; it learns so once the database answers again and runs it, rather than leaving it
`running` with nobody to run it."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from bson import ObjectId
from structlog.testing import capture_logs
from syncjobs.shared.embedded import EmbeddedServer
from syncjobs.shared.models import SyncJob, from_document
from syncjobs.shared.mongo import Database, bounded_waits, connect
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import job_runs
from syncjobs.shared.store.job_runs import Claimant
from syncjobs.worker.dispatcher import RunDispatcher
from syncjobs.worker.executor_process import ExecutorSpec
from syncjobs.worker.health import DatabaseHealth

from tests.fixtures.eventually import eventually
from tests.fixtures.fake_clock import FakeClock
from tests.fixtures.tcp_proxy import TcpProxy
from tests.fixtures.worker_harness import T0
from tests.fixtures.worker_jobs import FAKE_EXECUTOR, make_job, runs_of

LEASE_SECONDS = 3


async def test_a_claim_whose_answer_vanished_is_run_by_its_claimer(
    db: Database, settings: Settings, embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    proxy = TcpProxy(embedded_server.port).start()
    client = connect(proxy.uri(), **bounded_waits(LEASE_SECONDS))
    health = DatabaseHealth()
    claimant = Claimant("w-doubt", "instance-doubt", lease_seconds=LEASE_SECONDS)
    spec = ExecutorSpec.from_settings(settings.with_overrides(executor_command=FAKE_EXECUTOR))
    dispatcher = RunDispatcher(client[db.name], FakeClock(T0), claimant, executor=spec, health=health)
    job = await make_job(db, "ok", "0 0 1 1 *", T0)
    with capture_logs() as logs:
        claiming = asyncio.create_task(dispatcher.run())
        try:
            proxy.cut(write_replies_only=True)
            run = ObjectId((await job_runs.create_manual_run(db, from_document(SyncJob, job), T0)).id)
            claimed = {"_id": run, "status": "running", "claimedBy": claimant.instance}
            await eventually(lambda: db.job_runs.find_one(claimed))  # it landed ...
            await eventually(lambda: _told(logs, "database_unavailable"))  # ... and the claimer was not told
            proxy.heal()
            done = await eventually(lambda: db.job_runs.find_one({"_id": run, "status": "succeeded"}), within=20)
            assert done["claimedBy"] == claimant.instance
            assert len(await runs_of(db, job["_id"])) == 1  # run once, no retry
        finally:
            dispatcher.stop_claiming()
            await asyncio.wait_for(claiming, 10)
            await dispatcher.finish(grace_seconds=5)
            await client.close()
            proxy.stop()


async def _told(logs: list[MutableMapping[str, Any]], event: str) -> bool:
    return any(entry["event"] == event for entry in logs)
