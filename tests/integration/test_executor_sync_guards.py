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
