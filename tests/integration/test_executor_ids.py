"""Property: every BSON type MongoDB allows as `_id` syncs in full and incremental mode, ids the server
holds equal (`1`, `1.0`, `Int64(1)`, `Decimal128("1")`) are one document, and an id that changes type
between runs is an update of that document, never a duplicate-key failure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo.errors import DuplicateKeyError
from syncjobs.executor.bson_ids import id_key
from syncjobs.executor.destination import HASH_FIELD, Destination
from syncjobs.executor.sources.mongodb import MongoSource
from syncjobs.executor.sync import EntityStats, SyncMode, sync_entity
from syncjobs.shared.mongo import Database

from tests.fixtures.executor_world import MemoryCursors, ignore_progress, scratch_databases

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENTITY = "things"
# SecantusDB compares Binary ids without their subtype and Code ids without their scope (MongoDB tells
# both apart) and embedded documents without numeric equivalence: the payloads below keep those cases
# distinct to both servers, so the test checks our identity, not the server's deviations. A NaN `_id` is
# left out too: SecantusDB refuses to replace the document it names ("_id altered", NaN unequal to itself);
# `test_ids_mongodb_holds_equal_share_a_key` checks our key for it.
BINARY_SUBTYPES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 128)


def numbers(n: int) -> list[Any]:
    """Every numeric type holding `n`: one `_id` to MongoDB."""
    return [n, Int64(n), float(n), Decimal128(str(n)), Decimal128(f"{n}.00")]


POOL: list[Any] = [
    *numbers(0),
    *numbers(1),
    *numbers(-7),
    -0.0,
    Decimal128("-0"),
    0.5,
    Decimal128("0.5"),
    float("inf"),
    Decimal128("Infinity"),
    2**53 + 1,
    Int64(2**53 + 1),
    "a",
    "1",
    Code("a"),
    Code("function () { return 1 }"),
    *[Binary(bytes([subtype]) + b"k", subtype) for subtype in BINARY_SUBTYPES],
    Regex("a.b", "i"),
    Regex("a.b"),
    MinKey(),
    MaxKey(),
    Timestamp(1, 1),
    Timestamp(1, 2),
    ObjectId("64b7f0c2a1b2c3d4e5f60718"),
    datetime(2026, 1, 1, 12, 0, 0, 123000),
    True,
    False,
    None,
    {"a": 1, "b": "x"},
    {"b": "x", "a": 1},
    {"a": {"c": [1, "z"]}, "b": MinKey()},
]

rounds = st.lists(
    st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.integers(0, 2)), max_size=14), min_size=1, max_size=3
)


async def fill(source: Database, ids: list[tuple[int, int]], tick: int) -> None:
    """The source holds these ids (the first of ids the server holds equal wins), nothing else."""
    await source[ENTITY].delete_many({})
    for index, value in ids:
        try:
            # Many share a timestamp: the incremental tie-break meets ids of every type.
            await source[ENTITY].insert_one({"_id": POOL[index], "v": value, "updatedAt": T0 + timedelta(tick)})
        except DuplicateKeyError:
            continue


async def documents(db: Database) -> list[bytes]:
    """The collection as sorted BSON bytes without our hash: equal only when every type is kept."""
    docs = await db[ENTITY].find({}).to_list()
    return sorted(bson.encode({k: v for k, v in doc.items() if k != HASH_FIELD}) for doc in docs)


async def sync(uri: str, source: Database, dest: Database, mode: SyncMode, cursors: MemoryCursors) -> EntityStats:
    reader = MongoSource({"uri": uri, "database": source.name}, batch_size=3)
    try:
        result = await sync_entity(mode, reader, Destination(dest), cursors, ENTITY, ignore_progress)
    finally:
        await reader.close()
    assert result.error is None, result.error
    return result.stats


@settings(max_examples=20, deadline=None)
@given(rounds=rounds, mode=st.sampled_from(["full", "incremental"]))
def test_every_bson_id_syncs_and_equal_ids_are_one_document(
    mongo_uri: str, rounds: list[list[tuple[int, int]]], mode: SyncMode
) -> None:
    async def scenario() -> None:
        async with scratch_databases(mongo_uri, 2) as (source, dest):
            cursors = MemoryCursors()
            for tick, ids in enumerate(rounds):
                await fill(source, ids, tick)
                await sync(mongo_uri, source, dest, mode, cursors)
                if mode == "full":
                    assert await documents(dest) == await documents(source)
                else:  # incremental never deletes: every source document is there, types and all
                    assert set(await documents(source)) <= set(await documents(dest))
                    keys = [id_key(doc["_id"]) for doc in await dest[ENTITY].find({}).to_list()]
                    assert len(keys) == len(set(keys))
            again = await sync(mongo_uri, source, dest, mode, cursors)
            assert again.inserted == again.updated == again.deleted == again.failed == 0

    asyncio.run(scenario())


def test_ids_mongodb_holds_equal_share_a_key() -> None:
    assert len({id_key(v) for v in numbers(1)}) == 1
    assert id_key(-0.0) == id_key(Decimal128("-0")) == id_key(0)
    assert id_key(float("nan")) == id_key(Decimal128("NaN"))
    assert id_key({"a": 1}) == id_key({"a": Decimal128("1.0")})
    assert id_key(2**53 + 1) != id_key(float(2**53 + 1))
    assert id_key(Code("a")) != id_key("a")
    assert id_key(Binary(b"k", 4)) != id_key(b"k")
    assert id_key(Regex("a", "i")) != id_key(Regex("a"))
    # Three numbers of five types each, -0 twice as 0, and three pairs (0.5, Infinity, 2**53 + 1).
    assert len({id_key(v) for v in POOL}) == len(POOL) - 3 * 4 - 2 - 3


async def test_an_id_that_changes_type_is_an_update_in_both_modes(mongo_uri: str) -> None:
    for mode in ("full", "incremental"):
        async with scratch_databases(mongo_uri, 2) as (source, dest):
            cursors = MemoryCursors()
            await source[ENTITY].insert_many([{"_id": 1, "v": 0, "updatedAt": T0}, {"_id": 2, "v": 0, "updatedAt": T0}])
            await sync(mongo_uri, source, dest, mode, cursors)
            await source[ENTITY].delete_one({"_id": 1})
            await source[ENTITY].insert_one({"_id": 1.0, "v": 0, "updatedAt": T0 + timedelta(1)})
            stats = await sync(mongo_uri, source, dest, mode, cursors)
            assert (stats.inserted, stats.updated, stats.deleted, stats.failed) == (0, 1, 0, 0), mode
            assert await documents(dest) == await documents(source), mode
