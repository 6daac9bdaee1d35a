"""The executor against real SecantusDB databases: a `mongodb` source, full and incremental."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.executor.events import EventWriter
from syncjobs.executor.run import RunProgress
from syncjobs.executor.sync import EntityResult, EntityStats
from syncjobs.shared.mongo import Database
from syncjobs.shared.run_spec import RunControlAccess

from tests.fixtures.executor_world import contents, make_job, make_mongodb_job, result_of, run_job, scratch_databases

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_full_sync_copies_selected_collections_then_only_the_edits(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": i, "name": f"u{i}", "updatedAt": at(i)} for i in range(10)])
        await source.orders.insert_many([{"_id": ObjectId(), "total": n} for n in range(5)])
        await source.audit.insert_one({"_id": 1, "ignored": True})
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, include=["users", "orders"])

        code, events = await run_job(db, job_id, batch_size=3, progress_every_seconds=0.0)
        assert code == 0
        result = result_of(events)
        assert result["status"] == "succeeded"
        assert result["stats"]["entities"]["users"] | {"durationMs": 0} == {
            "read": 10,
            "inserted": 10,
            "updated": 0,
            "deleted": 0,
            "unchanged": 0,
            "failed": 0,
            "skippedNoCursor": 0,
            "durationMs": 0,
        }
        assert result["stats"]["totals"]["inserted"] == 15
        assert {d["entity"]: d["status"] for d in result["details"]} == {"users": "updated", "orders": "updated"}
        assert await contents(dest, "users") == await contents(source, "users")
        assert await contents(dest, "orders") == await contents(source, "orders")
        assert "audit" not in await dest.list_collection_names()

        await source.users.update_one({"_id": 3}, {"$set": {"name": "renamed"}})
        await source.users.update_one({"_id": 4}, {"$set": {"name": "u4"}})  # no actual change
        await source.users.delete_many({"_id": {"$in": [7, 8]}})
        await source.users.insert_one({"_id": 100, "name": "new"})
        code, events = await run_job(db, job_id, batch_size=3, progress_every_seconds=0.0)
        assert code == 0
        stats = result_of(events)["stats"]
        assert {k: stats["entities"]["users"][k] for k in ("read", "inserted", "updated", "deleted", "unchanged")} == {
            "read": 9,
            "inserted": 1,
            "updated": 1,
            "deleted": 2,
            "unchanged": 7,
        }
        assert stats["entities"]["orders"]["unchanged"] == 5
        assert {d["entity"]: d["status"] for d in result_of(events)["details"]} == {
            "users": "updated",
            "orders": "unchanged",
        }
        assert await contents(dest, "users") == await contents(source, "users")

        run_docs = await db.job_runs.find({"jobId": job_id}).to_list()
        assert all(doc["progress"]["entitiesDone"] == 2 for doc in run_docs)


async def test_incremental_moves_only_what_changed_and_keeps_equal_timestamps(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        # Seven documents share one timestamp across batch boundaries (batch size 2).
        await source.items.insert_many([{"_id": i, "v": 0, "updatedAt": at(5)} for i in range(7)])
        await source.items.insert_many([{"_id": i, "v": 0, "updatedAt": at(i)} for i in range(10, 13)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode="incremental")
        code, events = await run_job(db, job_id, batch_size=2)
        assert code == 0
        assert result_of(events)["stats"]["entities"]["items"]["inserted"] == 10
        cursor = (await db.sync_state.find_one({"_id": {"jobId": job_id, "entity": "items"}}))["cursor"]
        assert cursor == {"field": "updatedAt", "value": at(12), "id": 12}

        await source.items.update_one({"_id": 11}, {"$set": {"v": 1, "updatedAt": at(60)}})
        await source.items.insert_many(
            [{"_id": 20, "v": 0, "updatedAt": at(60)}, {"_id": 21, "v": 0, "updatedAt": at(60)}]
        )
        await source.items.update_one({"_id": 2}, {"$set": {"v": 9}})  # timestamp not bumped: not seen
        code, events = await run_job(db, job_id, batch_size=2)
        assert code == 0
        stats = result_of(events)["stats"]["entities"]["items"]
        assert (stats["read"], stats["inserted"], stats["updated"], stats["unchanged"]) == (3, 2, 1, 0)
        synced = await contents(dest, "items")
        assert synced[11]["v"] == 1 and 20 in synced and 21 in synced
        assert synced[2]["v"] == 0

        code, events = await run_job(db, job_id, batch_size=2)
        assert result_of(events)["stats"]["entities"]["items"]["read"] == 0


async def test_include_of_an_entity_the_source_lacks_fails_the_run(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_one({"_id": 1})
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, include=["users", "invoices"])
        code, events = await run_job(db, job_id)
        assert code == 1
        result = result_of(events)
        assert result["status"] == "failed"
        assert "invoices" in result["error"]
        assert await dest.list_collection_names() == []


async def test_one_entity_failing_does_not_stop_the_others(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.a.insert_many([{"_id": i, "email": "same@x"} for i in range(3)])
        await source.b.insert_many([{"_id": i} for i in range(4)])
        await dest.a.create_index("email", unique=True)
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        code, events = await run_job(db, job_id)
        assert code == 1
        result = result_of(events)
        assert result["status"] == "failed"
        assert result["stats"]["entities"]["a"]["inserted"] == 1
        assert result["stats"]["entities"]["a"]["failed"] == 2
        details = {d["entity"]: d for d in result["details"]}
        assert details["a"]["status"] == "failed" and "duplicate" in details["a"]["error"].lower()
        assert details["b"]["status"] == "updated"
        assert result["error"].startswith("1 of 2 entities failed: a: 2 documents failed to write")
        assert len(await contents(dest, "b")) == 4
        entity_events = [e["entity"] for e in events if e["event"] == "entity"]
        assert entity_events == ["a", "b"]


async def test_dry_run_counts_without_writing(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "updatedAt": at(i)} for i in range(4)])
        await dest.items.insert_one({"_id": 99})
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        code, events = await run_job(db, job_id, dry_run=True, progress_every_seconds=0.0)
        assert code == 0
        stats = result_of(events)["stats"]["entities"]["items"]
        assert (stats["inserted"], stats["deleted"]) == (4, 1)
        assert result_of(events)["dryRun"] is True
        assert list(await contents(dest, "items")) == [99]
        assert await db.job_runs.count_documents({"progress": {"$exists": True}}) == 0


async def test_custom_cursor_field(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "version": i} for i in range(5)])
        config = {"uri": mongo_uri, "database": source.name, "entities": {"items": {"cursorField": "version"}}}
        _, job_id = await make_job(
            db,
            source_kind="mongodb",
            source_config=config,
            dest_uri=mongo_uri,
            dest_database=dest.name,
            mode="incremental",
        )
        await run_job(db, job_id)
        await source.items.update_one({"_id": 1}, {"$set": {"version": 10, "x": 1}})
        code, events = await run_job(db, job_id)
        stats = result_of(events)["stats"]["entities"]["items"]
        assert (code, stats["read"], stats["updated"]) == (0, 1, 1)
        assert (await contents(dest, "items"))[1]["x"] == 1


async def test_unchanged_documents_are_not_rewritten(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "v": i} for i in range(4)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        await run_job(db, job_id)
        # A mark the source never had: only a rewrite of the document would remove it.
        await dest.items.update_many({}, {"$set": {"marked": True}})
        await source.items.update_one({"_id": 2}, {"$set": {"v": 20}})
        code, events = await run_job(db, job_id)
        assert code == 0
        assert result_of(events)["stats"]["entities"]["items"]["unchanged"] == 3
        marked = {doc["_id"] for doc in await dest.items.find({"marked": True}).to_list()}
        assert marked == {0, 1, 3}
        rewritten = await dest.items.find_one({"_id": 2})
        assert rewritten is not None and len(rewritten.pop("_syncjobsHash")) == 32
        assert rewritten == {"_id": 2, "v": 20}


async def test_incremental_without_the_cursor_field_follows_ids(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode="incremental")
        await run_job(db, job_id, batch_size=2)
        await source.items.insert_many([{"_id": 3}, {"_id": -1, "updatedAt": at(1)}])
        code, events = await run_job(db, job_id, batch_size=2)
        assert (code, result_of(events)["stats"]["entities"]["items"]["inserted"]) == (0, 2)
        assert sorted(await contents(dest, "items")) == [-1, 0, 1, 2, 3]


async def test_progress_reaches_the_run_document_only_once_a_run_lasts(db: Database) -> None:
    """A run shorter than the interval writes no progress (its result says it all); a longer one writes
    at most once an interval, and again as each entity starts and ends so it never shows a stale entity."""
    short_run, long_run = ObjectId(), ObjectId()
    await db.job_runs.insert_many([{"_id": run_id, "jobId": run_id} for run_id in (short_run, long_run)])
    now = [0.0]

    def progress_of(run_id: ObjectId) -> RunProgress:
        return RunProgress(
            RunControlAccess(db, run_id, run_id),
            EventWriter(io.StringIO()),
            ["a", "b"],
            record=True,
            every_seconds=1.0,
            clock=lambda: now[0],
        )

    short = progress_of(short_run)
    await short.start("a")
    now[0] = 0.9
    await short.on_batch("a", EntityStats(read=3))
    await short.finish(EntityResult("a", EntityStats(read=3, inserted=3)))
    assert "progress" not in (await db.job_runs.find_one({"_id": short_run}) or {})

    now[0] = 10.0
    long = progress_of(long_run)
    await long.start("a")
    now[0] = 10.5
    await long.on_batch("a", EntityStats(read=1))
    assert "progress" not in (await db.job_runs.find_one({"_id": long_run}) or {})
    now[0] = 11.0
    await long.on_batch("a", EntityStats(read=2))
    stored = (await db.job_runs.find_one({"_id": long_run}) or {})["progress"]
    assert (stored["entity"], stored["read"], stored["entitiesDone"]) == ("a", 2, 0)
    now[0] = 11.1
    await long.on_batch("a", EntityStats(read=4))  # within the interval: not written
    await long.finish(EntityResult("a", EntityStats(read=4, inserted=4)))
    await long.start("b")
    stored = (await db.job_runs.find_one({"_id": long_run}) or {})["progress"]
    assert (stored["entity"], stored["read"], stored["entitiesDone"]) == ("b", 0, 1)
    await long.finish(EntityResult("b", EntityStats(read=1, inserted=1)))
    stored = (await db.job_runs.find_one({"_id": long_run}) or {})["progress"]
    assert (stored["entity"], stored["inserted"], stored["entitiesDone"], stored["entitiesTotal"]) == ("b", 1, 2, 2)


async def test_one_named_collection_is_read_without_listing_and_a_missing_one_deletes_nothing(
    db: Database, mongo_uri: str
) -> None:
    """A job of one named collection skips `listCollections` (a burst pays it per run): a read that finds
    nothing checks the collection exists, so a missing one still fails the run before a full sync deletes."""
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.users.insert_many([{"_id": 1}, {"_id": 2}])
        await source.empty.insert_one({"_id": 0})
        await source.empty.delete_many({})
        for name in ("users", "empty", "gone"):
            await dest[name].insert_many([{"_id": 1}, {"_id": 3}])
        copied: dict[str, tuple[int, list[str]]] = {}
        for name in ("users", "empty", "gone"):
            _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, include=[name])
            code, events = await run_job(db, job_id)
            copied[name] = (code, [d["status"] for d in result_of(events)["details"]])
            if name == "gone":
                assert "entities not offered by the data source: gone" in result_of(events)["error"]
        assert copied == {"users": (0, ["updated"]), "empty": (0, ["updated"]), "gone": (1, ["failed"])}
        assert await contents(dest, "users") == await contents(source, "users")
        assert await dest.empty.count_documents({}) == 0
        assert await dest.gone.count_documents({}) == 2  # nothing deleted for a collection the source lacks
