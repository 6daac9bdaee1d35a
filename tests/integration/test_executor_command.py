"""The `command` source: a Singer tap (tests/fixtures/singer_tap.py) run by the executor."""

from __future__ import annotations

from typing import Any

from syncjobs.shared.mongo import Database

from tests.fixtures.executor_world import contents, make_tap_job, result_of, run_job, scratch_databases


def people(first: int, last: int) -> list[dict[str, Any]]:
    return [{"id": i, "seq": i, "name": f"p{i}"} for i in range(first, last)]


async def test_singer_tap_full_and_incremental(db: Database, mongo_uri: str) -> None:
    tap_config = {
        "streams": {"people": people(0, 5), "pets": [{"owner": 1, "name": "rex", "seq": 0}]},
        "keys": {"pets": ["owner", "name"]},
        "stateEvery": 2,
    }
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config, mode="incremental")
        code, events = await run_job(db, job_id, batch_size=3)
        assert code == 0, result_of(events)
        assert await contents(dest, "people") == {p["id"]: {"_id": p["id"], **p} for p in people(0, 5)}
        pets = await dest.pets.find({}).to_list()
        assert [pet["_id"] for pet in pets] == [{"owner": 1, "name": "rex"}]
        state = await db.sync_state.find_one({"_id": {"jobId": job_id, "entity": "people"}})
        assert state["cursor"]["bookmarks"]["people"] == {"seq": 4}

        tap_config["streams"]["people"] = people(0, 8)
        await db.data_sources.update_one({}, {"$set": {"config.config": tap_config}})
        code, events = await run_job(db, job_id, batch_size=3)
        stats = result_of(events)["stats"]["entities"]
        assert (code, stats["people"]["read"], stats["people"]["inserted"]) == (0, 3, 3)
        assert stats["pets"]["read"] == 0
        assert len(await contents(dest, "people")) == 8


async def test_a_failing_tap_keeps_what_its_last_state_covered(db: Database, mongo_uri: str) -> None:
    tap_config: dict[str, Any] = {"streams": {"people": people(0, 9)}, "stateEvery": 2, "failAfter": 5}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config, mode="incremental")
        code, events = await run_job(db, job_id, batch_size=100)
        assert code == 1
        detail = result_of(events)["details"][0]
        assert detail["status"] == "failed"
        assert "tap exited with 3" in detail["error"] and "failing on purpose" in detail["error"]
        state = await db.sync_state.find_one({"_id": {"jobId": job_id, "entity": "people"}})
        assert state["cursor"]["bookmarks"]["people"] == {"seq": 3}
        assert len(await contents(dest, "people")) == 4

        del tap_config["failAfter"]
        await db.data_sources.update_one({}, {"$set": {"config.config": tap_config}})
        code, events = await run_job(db, job_id)
        assert (code, result_of(events)["stats"]["entities"]["people"]["read"]) == (0, 5)
        assert await contents(dest, "people") == {p["id"]: {"_id": p["id"], **p} for p in people(0, 9)}


async def test_streams_come_from_discovery_and_a_missing_one_fails_the_run(db: Database, mongo_uri: str) -> None:
    tap_config = {"streams": {"people": people(0, 1)}}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config, include=["people", "planets"])
        code, events = await run_job(db, job_id)
        assert code == 1
        assert "planets" in result_of(events)["error"] and "offers: people" in result_of(events)["error"]


async def test_full_mode_deletes_what_the_tap_no_longer_sends(db: Database, mongo_uri: str) -> None:
    tap_config = {"streams": {"people": people(0, 4)}}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config)
        await run_job(db, job_id)
        tap_config["streams"]["people"] = people(1, 4)
        await db.data_sources.update_one({}, {"$set": {"config.config": tap_config}})
        code, events = await run_job(db, job_id)
        stats = result_of(events)["stats"]["entities"]["people"]
        assert (code, stats["deleted"], stats["unchanged"]) == (0, 1, 3)
        assert sorted(await contents(dest, "people")) == [1, 2, 3]
