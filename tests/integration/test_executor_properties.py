"""Property: after random inserts, updates and deletes on the source, a sync makes the destination equal
the source (full), or hold every inserted and updated document (incremental), even when a run dies
between batches and is re-run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from syncjobs.executor.destination import Destination, DestinationError, WriteCounts
from syncjobs.executor.sources import Batch, SourceError
from syncjobs.executor.sources.mongodb import MongoSource
from syncjobs.executor.sync import EntityStats, SyncMode, sync_entity

from tests.fixtures.executor_world import MemoryCursors, contents, ignore_progress, scratch_databases

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENTITY = "things"

ids = st.integers(min_value=0, max_value=15)
# The last field moves the clock on; mostly it does not, so many documents share a timestamp.
puts = st.tuples(st.just("put"), ids, st.integers(min_value=0, max_value=3), st.sampled_from([False, False, True]))
# Where a run dies (None: it does not); 1 and 2 weigh more, they cut a read between saved cursors.
crash_points = st.one_of(st.none(), st.integers(0, 3), st.integers(1, 2))
# Which bulk write of a run loses its connection halfway (None: none does).
write_failures = st.one_of(st.none(), st.integers(1, 3))
deletes = st.tuples(st.just("del"), ids, st.just(0), st.just(False))


class DiesAfter:
    """A source that dies after `batches` batches: what a killed executor leaves behind."""

    def __init__(self, inner: MongoSource, batches: int | None) -> None:
        self.inner = inner
        self.batches = batches

    async def list_entities(self) -> list[str]:
        return await self.inner.list_entities()

    async def read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        count = 0
        async for batch in self.inner.read(entity, incremental=incremental, cursor=cursor):
            if self.batches is not None and count >= self.batches:
                raise SourceError("killed between batches")
            count += 1
            yield batch

    async def close(self) -> None:
        await self.inner.close()


class WritesFailAt(Destination):
    """A destination whose `fails_at`-th bulk write lands half its documents, then loses the connection."""

    def __init__(self, db: Any, fails_at: int | None) -> None:
        super().__init__(db)
        self.fails_at = fails_at
        self.calls = 0

    async def write(self, entity: str, *, inserts: Any = (), replaces: Any = (), retyped: Any = ()) -> WriteCounts:
        self.calls += 1
        if self.calls != self.fails_at:
            return await super().write(entity, inserts=inserts, replaces=replaces, retyped=retyped)
        inserts, replaces = list(inserts), list(replaces)
        await super().write(entity, inserts=inserts[: len(inserts) // 2], replaces=replaces[: len(replaces) // 2])
        raise DestinationError("connection lost during a bulk write")


class World:
    """Source and destination databases plus a logical clock for `updatedAt` (ties are common)."""

    def __init__(self, uri: str, source: Any, dest: Any, batch_size: int) -> None:
        self.uri, self.source, self.dest, self.batch_size = uri, source, dest, batch_size
        self.cursors = MemoryCursors()
        self.tick = 0

    async def apply(self, ops: list[tuple[str, int, int, bool]]) -> None:
        for kind, doc_id, value, advance in ops:
            if kind == "del":
                await self.source[ENTITY].delete_one({"_id": doc_id})
                continue
            self.tick += int(advance)
            await self.source[ENTITY].replace_one(
                {"_id": doc_id}, {"v": value, "updatedAt": T0 + timedelta(seconds=self.tick)}, upsert=True
            )

    async def sync(
        self, mode: SyncMode, dies_after: int | None = None, write_fails_at: int | None = None
    ) -> EntityStats:
        source = DiesAfter(
            MongoSource({"uri": self.uri, "database": self.source.name}, batch_size=self.batch_size), dies_after
        )
        try:
            destination = WritesFailAt(self.dest, write_fails_at)
            result = await sync_entity(mode, source, destination, self.cursors, ENTITY, ignore_progress)
        finally:
            await source.close()
        if dies_after is None and write_fails_at is None:
            assert result.error is None, result.error
        self.tick += 1  # time moves on between runs
        return result.stats

    async def recover(self, mode: SyncMode, dies_after: int | None, write_fails_at: int | None) -> EntityStats:
        """A sync that goes wrong as drawn, then the clean re-run that must repair it; the re-run's stats."""
        await self.sync(mode, dies_after, write_fails_at)
        return await self.sync(mode)


@settings(max_examples=15, deadline=None)
@given(
    first=st.lists(puts, max_size=12),
    second=st.lists(st.one_of(puts, deletes), max_size=12),
    batch_size=st.integers(min_value=1, max_value=4),
    dies_after=crash_points,
    write_fails_at=write_failures,
)
def test_full_sync_makes_destination_equal_source(
    mongo_uri: str,
    first: list[Any],
    second: list[Any],
    batch_size: int,
    dies_after: int | None,
    write_fails_at: int | None,
) -> None:
    async def scenario() -> None:
        async with scratch_databases(mongo_uri, 2) as (source, dest):
            world = World(mongo_uri, source, dest, batch_size)
            await world.apply(first)
            await world.recover("full", dies_after, write_fails_at)
            assert await contents(dest, ENTITY) == await contents(source, ENTITY)

            before = await contents(source, ENTITY)
            await world.apply(second)
            after = await contents(source, ENTITY)
            stats = await world.sync("full")
            assert await contents(dest, ENTITY) == after
            assert stats.inserted == len(after.keys() - before.keys())
            assert stats.deleted == len(before.keys() - after.keys())
            assert stats.updated == sum(1 for k in after.keys() & before.keys() if after[k] != before[k])
            assert stats.unchanged == len(after) - stats.inserted - stats.updated
            assert stats.failed == 0

    asyncio.run(scenario())


@settings(max_examples=15, deadline=None)
@given(
    first=st.lists(puts, max_size=12),
    second=st.lists(puts, max_size=12),
    batch_size=st.integers(min_value=1, max_value=4),
    dies_after=crash_points,
    write_fails_at=write_failures,
)
def test_incremental_sync_loses_nothing_across_crashes_and_equal_timestamps(
    mongo_uri: str,
    first: list[Any],
    second: list[Any],
    batch_size: int,
    dies_after: int | None,
    write_fails_at: int | None,
) -> None:
    async def scenario() -> None:
        async with scratch_databases(mongo_uri, 2) as (source, dest):
            world = World(mongo_uri, source, dest, batch_size)
            await world.apply(first)
            await world.recover("incremental", dies_after, write_fails_at)
            assert await contents(dest, ENTITY) == await contents(source, ENTITY)

            await world.apply(second)
            touched = {doc_id for _, doc_id, _, _ in second}
            stats = await world.recover("incremental", dies_after, write_fails_at)
            assert await contents(dest, ENTITY) == await contents(source, ENTITY)
            if dies_after is None and write_fails_at is None:
                assert stats.read == 0
            assert stats.read <= len(touched)
            assert (await world.sync("incremental")).read == 0

    asyncio.run(scenario())
