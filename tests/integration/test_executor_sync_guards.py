"""The sync's guards against a misleading source, run through the executor against real databases: a full
read that would delete most of an entity, late arrivals past an incremental cursor, documents without the
cursor field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncjobs.shared.mongo import Database

from tests.fixtures.executor_world import make_mongodb_job, result_of, run_job, scratch_databases

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_mass_delete_is_refused_then_a_sane_source_proceeds(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "v": 0} for i in range(120)])
        await source.small.insert_many([{"_id": i} for i in range(10)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest)
        assert result_of((await run_job(db, job_id))[1])["status"] == "succeeded"

        # The source answers 3 of 120 (and an entity under 100 documents is not guarded: it empties).
        await source.items.delete_many({"_id": {"$gte": 3}})
        await source.items.update_one({"_id": 0}, {"$set": {"v": 1}})
        await source.small.delete_many({})
        code, events = await run_job(db, job_id)
        result = result_of(events)
        assert code == 1 and result["status"] == "failed"
        detail = next(d for d in result["details"] if d["entity"] == "items")
        assert detail["deletesRefused"] == {
            "sourceCount": 3,
            "destinationCount": 120,
            "wouldDelete": 117,
            "maxDeleteFraction": 0.5,
        }
        assert "source returned 3 of 120 documents" in detail["error"]
        assert "items: source returned 3 of 120" in result["error"]
        assert await dest.items.count_documents({}) == 120  # nothing deleted
        assert (await dest.items.find_one({"_id": 0}) or {})["v"] == 1  # the source's edits still land
        assert await dest.small.count_documents({}) == 0

        # A sane source again: 90 of 120 (25 % gone) proceeds.
        await source.items.insert_many([{"_id": i, "v": 0} for i in range(3, 90)])
        code, events = await run_job(db, job_id)
        assert code == 0
        assert result_of(events)["stats"]["entities"]["items"]["deleted"] == 30
        assert await dest.items.count_documents({}) == 90


async def test_max_delete_fraction_one_turns_the_guard_off(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i} for i in range(100)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, job_fields={"maxDeleteFraction": 1})
        assert (await run_job(db, job_id))[0] == 0
        await source.items.delete_many({"_id": {"$gte": 1}})
        code, events = await run_job(db, job_id)
        assert code == 0
        assert result_of(events)["stats"]["entities"]["items"]["deleted"] == 99


async def test_lookback_catches_an_equal_cursor_smaller_id_and_a_backdated_document(
    db: Database, mongo_uri: str
) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "v": 0, "updatedAt": at(100)} for i in range(10, 15)])
        _, without = await make_mongodb_job(db, mongo_uri, source, dest, mode="incremental")
        _, with_lookback = await make_mongodb_job(
            db, mongo_uri, source, dest, mode="incremental", job_fields={"lookbackSeconds": 60}
        )
        for job_id in (without, with_lookback):
            assert (await run_job(db, job_id))[0] == 0
        # Late arrivals: an equal cursor value with a smaller _id, and a writer whose clock lags 30 s.
        await source.items.insert_many([{"_id": 1, "v": 0, "updatedAt": at(100)}, {"_id": 2, "updatedAt": at(70)}])

        code, events = await run_job(db, without, batch_size=2)
        assert code == 0 and result_of(events)["stats"]["entities"]["items"]["read"] == 0  # what lookback is for
        assert await dest.items.count_documents({"_id": {"$in": [1, 2]}}) == 0

        code, events = await run_job(db, with_lookback, batch_size=2)
        counts = result_of(events)["stats"]["entities"]["items"]
        assert code == 0
        assert (counts["read"], counts["inserted"], counts["updated"], counts["unchanged"]) == (7, 2, 0, 5)
        assert await dest.items.count_documents({"_id": {"$in": [1, 2]}}) == 2
        # The next run re-reads only the lookback window and writes nothing.
        counts = result_of((await run_job(db, with_lookback))[1])["stats"]["entities"]["items"]
        assert (counts["read"], counts["inserted"], counts["updated"]) == (7, 0, 0)


async def test_documents_without_the_cursor_field_are_counted_or_included(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "updatedAt": at(i)} for i in range(3)])
        _, skip = await make_mongodb_job(db, mongo_uri, source, dest, mode="incremental")
        assert (await run_job(db, skip))[0] == 0
        await source.items.insert_many([{"_id": 10, "updatedAt": at(50)}, {"_id": 11, "name": "no updatedAt"}])
        code, events = await run_job(db, skip)
        result = result_of(events)
        assert code == 0 and result["status"] == "succeeded"
        assert result["stats"]["entities"]["items"]["skippedNoCursor"] == 1
        assert result["stats"]["totals"]["skippedNoCursor"] == 1
        assert result["details"][0]["warning"].startswith("1 documents without the cursor field were not synced")
        assert await dest.items.find_one({"_id": 11}) is None

    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": 1, "updatedAt": at(1)}, {"_id": 2, "name": "a"}])
        _, include = await make_mongodb_job(
            db, mongo_uri, source, dest, mode="incremental", job_fields={"onMissingCursor": "include"}
        )
        counts = result_of((await run_job(db, include))[1])["stats"]["entities"]["items"]
        assert (counts["read"], counts["inserted"], counts["skippedNoCursor"]) == (2, 2, 0)
        await source.items.update_one({"_id": 2}, {"$set": {"name": "b"}})
        await source.items.insert_one({"_id": 3, "name": "c"})
        counts = result_of((await run_job(db, include))[1])["stats"]["entities"]["items"]
        assert (counts["read"], counts["inserted"], counts["updated"], counts["skippedNoCursor"]) == (2, 1, 1, 0)
        assert (await dest.items.find_one({"_id": 2}) or {})["name"] == "b"
