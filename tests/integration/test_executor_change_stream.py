"""`changeStream` mode against real SecantusDB servers: snapshot, then inserts, updates, replaces and deletes
from the database's stream; an idle source's resume point still advances; history lost, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId, Timestamp
from syncjobs.shared.embedded import EmbeddedServer, start_embedded
from syncjobs.shared.mongo import Database, connect
from syncjobs.shared.store.sync_state import CHANGE_STREAM_KEY

from tests.fixtures.executor_world import contents, make_mongodb_job, result_of, run_job, scratch_databases


async def resume_point(control: Database, job_id: ObjectId) -> dict[str, Any]:
    doc = await control.sync_state.find_one({"_id": {"jobId": job_id, "entity": CHANGE_STREAM_KEY}})
    assert doc is not None
    return dict(doc["cursor"])


def counts(events: list[dict[str, Any]], entity: str) -> tuple[int, ...]:
    stats = result_of(events)["stats"]["entities"][entity]
    return tuple(stats[k] for k in ("read", "inserted", "updated", "deleted", "unchanged"))


async def test_changes_are_applied_from_the_stream_and_an_idle_source_advances(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "v": 0} for i in range(20)])
        await source.other.insert_one({"_id": 1})
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode="changeStream", include=["items"])
        code, events = await run_job(db, job_id)
        assert code == 0 and counts(events, "items") == (20, 20, 0, 0, 0)
        first = await resume_point(db, job_id)
        assert isinstance(first["clusterTime"], Timestamp)

        await source.items.insert_one({"_id": 100, "v": 1})
        await source.items.update_one({"_id": 1}, {"$set": {"v": 2}})
        await source.items.replace_one({"_id": 2}, {"w": 3})
        await source.items.delete_one({"_id": 3})
        await source.items.update_one({"_id": 4}, {"$set": {"v": 9}})
        await source.items.update_one({"_id": 4}, {"$set": {"v": 0}})  # back as it was: unchanged
        await source.other.insert_one({"_id": 2})  # not an entity of the job
        code, events = await run_job(db, job_id, batch_size=2)
        assert code == 0
        # Only the changed documents are read, not the collection's 20.
        assert counts(events, "items") == (4, 1, 2, 1, 1)
        assert await contents(dest, "items") == await contents(source, "items")
        assert "other" not in await dest.list_collection_names()
        second = await resume_point(db, job_id)
        assert second["clusterTime"] > first["clusterTime"]

        # Idle for the job's entities: nothing written, the resume point still moves on.
        await source.other.insert_one({"_id": 3})
        code, events = await run_job(db, job_id)
        assert code == 0 and counts(events, "items") == (0, 0, 0, 0, 0)
        third = await resume_point(db, job_id)
        assert third["token"] != second["token"] and third["clusterTime"] > second["clusterTime"]


@pytest.fixture(scope="module")
def short_oplog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server keeping only 20 oplog entries: a job idle for longer loses its stream's history."""
    storage = tmp_path_factory.mktemp("short-oplog")
    server = start_embedded(storage, log_file=Path(storage) / "server.log", extra_args=["--oplog-max-entries", "20"])
    try:
        yield server
    finally:
        server.stop()


async def _lose_history(uri: str, source: Database) -> None:
    await source.filler.insert_many([{"_id": i} for i in range(50)])
    client = connect(uri)
    try:
        await client.admin.command("secantusAdmin.pruneOplog")
    finally:
        await client.close()


@pytest.mark.parametrize("on_history_lost", ["fail", "resnapshot"])
async def test_history_lost_fails_or_resnapshots(
    db: Database, short_oplog_server: EmbeddedServer, on_history_lost: str
) -> None:
    uri = short_oplog_server.uri
    async with scratch_databases(uri, 1) as (source,), scratch_databases(uri, 1) as (dest,):
        await source.items.insert_many([{"_id": i} for i in range(5)])
        _, job_id = await make_mongodb_job(
            db, uri, source, dest, mode="changeStream", include=["items"], job_fields={"onHistoryLost": on_history_lost}
        )
        assert (await run_job(db, job_id))[0] == 0
        await source.items.delete_one({"_id": 0})
        await _lose_history(uri, source)

        code, events = await run_job(db, job_id)
        result = result_of(events)
        if on_history_lost == "fail":
            assert code == 1 and "change stream history lost" in result["error"]
            assert "reset-state" in result["error"]
            assert await dest.items.count_documents({}) == 5  # waits for an operator
            assert (await run_job(db, job_id))[0] == 1  # and keeps failing until a reset
        else:
            assert code == 0
            assert counts(events, "items") == (4, 0, 0, 1, 4)
            assert result["details"][0]["warning"].startswith("change stream history lost")
            assert await contents(dest, "items") == await contents(source, "items")
            await source.items.insert_one({"_id": 9})
            code, events = await run_job(db, job_id)
            assert code == 0 and counts(events, "items") == (1, 1, 0, 0, 0)


async def test_a_dropped_entity_invalidates_the_stream(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i} for i in range(3)])
        _, job_id = await make_mongodb_job(
            db, mongo_uri, source, dest, mode="changeStream", job_fields={"onHistoryLost": "resnapshot"}
        )
        assert (await run_job(db, job_id))[0] == 0
        await source.items.drop()
        await source.items.insert_one({"_id": 7})
        code, events = await run_job(db, job_id)
        assert code == 0
        assert "change stream invalidated: drop of items" in result_of(events)["details"][0]["warning"]
        assert await contents(dest, "items") == {7: {"_id": 7}}


async def test_an_entity_added_to_the_job_is_snapshotted_then_followed(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i} for i in range(3)])
        await source.more.insert_many([{"_id": i} for i in range(4)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode="changeStream", include=["items"])
        assert (await run_job(db, job_id))[0] == 0
        await db.syncjobs.update_one({"_id": job_id}, {"$set": {"entities.include": ["items", "more"]}})
        await source.items.insert_one({"_id": 10})
        code, events = await run_job(db, job_id)
        assert code == 0
        assert counts(events, "more") == (4, 4, 0, 0, 0)
        assert counts(events, "items") == (1, 1, 0, 0, 0)
        assert (await resume_point(db, job_id))["entities"] == ["items", "more"]
        await source.more.delete_one({"_id": 0})
        code, events = await run_job(db, job_id)
        assert code == 0 and counts(events, "more") == (0, 0, 0, 1, 0)
        assert await contents(dest, "more") == await contents(source, "more")
