"""The change feed when its resume token outlived the server's history: the server itself answers
ChangeStreamHistoryLost (286). A server of this module's own keeps only a few oplog entries; a failpoint
scoped to the leader's client cuts its change stream's connections (its only fault: the 286 is real), and
while the feed is down the test edits jobs and pushes the feed's token out of the oplog. The feed must
re-read the jobs and keep applying edits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from pymongo.errors import OperationFailure
from syncjobs.shared.embedded import EmbeddedServer, start_embedded
from syncjobs.shared.models import SyncJob, SyncJobInput, from_document
from syncjobs.shared.mongo import Database, Document, connect, ensure_indexes
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import sync_jobs

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_harness import T0, Harness, leadership_harness
from tests.fixtures.worker_jobs import make_job

OPLOG_ENTRIES = 20
LEADER_APP = "leader-under-test"
HISTORY_LOST = 286


@pytest.fixture(scope="module")
def forgetful_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    storage = tmp_path_factory.mktemp("forgetful")
    server = start_embedded(storage, extra_args=("--enable-test-commands", "--oplog-max-entries", str(OPLOG_ENTRIES)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def forgetful_db(forgetful_server: EmbeddedServer, db_name: str) -> AsyncIterator[Database]:
    client = connect(forgetful_server.uri)
    database = client[db_name]
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.close()


@pytest.fixture
async def harness(forgetful_server: EmbeddedServer, db_name: str, settings: Settings) -> AsyncIterator[Harness]:
    """The leader talks to the server through a client of its own, which the failpoint names."""
    client = connect(forgetful_server.uri, appname=LEADER_APP)
    try:
        async with leadership_harness(client[db_name], settings.with_overrides(mongodb_uri=forgetful_server.uri)) as h:
            yield h
    finally:
        await client.close()


async def _cut_leader_streams(db: Database, mode: str) -> None:
    """Close the connection under every change stream command of the leader's client (a network fault,
    which the feed and the driver answer by resuming from their token)."""
    await db.client.admin.command(
        "configureFailPoint",
        "failCommand",
        mode=mode,
        data={"failCommands": ["aggregate", "getMore"], "closeConnection": True, "appName": LEADER_APP},
    )


async def test_a_resume_token_past_the_servers_history_resyncs_the_jobs_and_edits_keep_applying(
    harness: Harness, forgetful_db: Database
) -> None:
    db = forgetful_db
    edited = await make_job(db, "ok", "0 * * * *", T0)
    deleted = await make_job(db, "ok-too", "0 * * * *", T0)
    edited_key, deleted_key = edited["_id"], deleted["_id"]
    await harness.start()
    assert await harness.streaming()
    await _cut_leader_streams(db, "alwaysOn")
    try:
        assert await eventually(lambda: _not_streaming(harness))
        async with await db.watch() as probe:  # a token at least as new as the one the feed holds
            newer_token = probe.resume_token
        # While the feed is down no stream reports these: once its history is gone, only a resync finds them.
        await _set_cron(db, edited, "*/5 * * * * *")
        await sync_jobs.delete_job(db, deleted["workspaceId"], deleted["_id"])
        await db.filler.insert_many([{"n": n} for n in range(2 * OPLOG_ENTRIES)])
        assert (await db.client.admin.command("secantusAdmin.pruneOplog"))["pruned"] > 0
        with pytest.raises(OperationFailure) as lost:
            await db.watch(resume_after=newer_token)
        assert lost.value.code == HISTORY_LOST
    finally:
        await _cut_leader_streams(db, "off")
    assert await eventually(lambda: harness.planned_at(edited_key, T0 + timedelta(seconds=5)))
    assert await eventually(lambda: harness.planned_at(deleted_key, None))
    assert await eventually(lambda: _streaming(harness))
    await _set_cron(db, edited, "0 0 * * *")  # after the resync, through the new stream
    assert await eventually(lambda: harness.planned_at(edited_key, T0 + timedelta(days=1)))


async def _set_cron(db: Database, job: Document, cron: str) -> None:
    current = await sync_jobs.get_job_doc(db, job["_id"])
    model: SyncJob = from_document(SyncJob, current)
    body = model.model_dump(by_alias=True, include=set(SyncJobInput.model_fields))
    edited = SyncJobInput.model_validate({**body, "schedule": {"cron": cron, "timezone": "UTC"}})
    await sync_jobs.replace_job(db, job["workspaceId"], job["_id"], edited, T0)


async def _streaming(harness: Harness) -> bool:
    return await harness.streaming()


async def _not_streaming(harness: Harness) -> bool:
    return not await harness.streaming()


async def test_an_invalidated_stream_is_reopened_and_the_jobs_reread(db: Database, settings: Settings) -> None:
    """Dropping the database invalidates the feed's stream; it ends without an error and its token cannot
    resume it. The feed must open a new stream, forget the dropped jobs and see jobs made afterwards."""
    async with leadership_harness(db, settings) as harness:
        dropped = await make_job(db, "ok", "0 * * * *", T0)
        await harness.start()
        dropped_key = dropped["_id"]
        assert await harness.planned_at(dropped_key, T0 + timedelta(hours=1))
        await db.client.drop_database(db.name)
        assert await eventually(lambda: harness.planned_at(dropped_key, None))
        await ensure_indexes(db)
        made_after = await make_job(db, "ok", "*/5 * * * * *", T0)
        assert await eventually(lambda: harness.planned_at(made_after["_id"], T0 + timedelta(seconds=5)))
        assert await eventually(lambda: _streaming(harness))
