"""Executor throughput: a full sync of N documents and a no-change re-sync, beside raw `insert_many` of
the same documents on the same server; after 1% of the documents change, a full re-sync, a cursor
incremental run and a changeStream run.

    python bench/executor_sync.py --docs 100000            # starts its own SecantusDB (in memory)
    python bench/executor_sync.py --docs 100000 --uri mongodb://127.0.0.1:27017/?directConnection=true
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncjobs.executor.change_stream import StreamSync, sync_change_stream
from syncjobs.executor.destination import Destination
from syncjobs.executor.sources.mongodb import MongoSource
from syncjobs.executor.sync import EntityStats, SyncMode, SyncOptions, sync_entity
from syncjobs.shared.embedded import start_embedded
from syncjobs.shared.mongo import connect

from tests.fixtures.executor_world import MemoryCursors, ignore_progress

ENTITY = "customers"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_docs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "_id": i,
            "name": f"customer {i}",
            "email": f"c{i}@example.test",
            "balance": rng.randint(0, 10**6) / 100,
            "tags": rng.sample(["a", "b", "c", "d", "e"], 2),
            "address": {"city": rng.choice(["Lyon", "Oslo", "Lima"]), "zip": f"{rng.randint(0, 99999):05d}"},
            "updatedAt": T0 + timedelta(seconds=i),
        }
        for i in range(count)
    ]


class NoCursors:
    async def load_cursor(self, entity: str) -> Any | None:
        return None

    async def save_cursor(self, entity: str, cursor: Any) -> None:
        return None


async def timed_sync(
    uri: str, source_db: str, dest: Any, mode: SyncMode, batch: int, cursors: Any = None
) -> tuple[float, EntityStats]:
    source = MongoSource({"uri": uri, "database": source_db}, batch_size=batch)
    started = time.perf_counter()
    result = await sync_entity(mode, source, Destination(dest), cursors or NoCursors(), ENTITY, ignore_progress)
    elapsed = time.perf_counter() - started
    await source.close()
    assert result.error is None, result.error
    return elapsed, result.stats


async def timed_stream(
    uri: str, source_db: str, dest: Any, batch: int, state: MemoryCursors
) -> tuple[float, EntityStats]:
    source = MongoSource({"uri": uri, "database": source_db}, batch_size=batch)
    started = time.perf_counter()
    sync = StreamSync(source, Destination(dest), state, ignore_progress, SyncOptions(), batch)
    [result] = await sync_change_stream(sync, [ENTITY])
    elapsed = time.perf_counter() - started
    await source.close()
    assert result.error is None, result.error
    return elapsed, result.stats


async def bench(uri: str, count: int, batch: int) -> None:
    client = connect(uri)
    names = {k: f"bench_{k}_{uuid.uuid4().hex[:8]}" for k in ("source", "raw", "dest", "inc", "cs")}
    try:
        docs = make_docs(count)
        source, raw, dest = (client[names[k]] for k in ("source", "raw", "dest"))
        await source[ENTITY].insert_many([dict(d) for d in docs], ordered=False)

        started = time.perf_counter()
        await raw[ENTITY].insert_many([dict(d) for d in docs], ordered=False)
        raw_seconds = time.perf_counter() - started

        # The floor for any copy: read the source with find, write with insert_many, nothing else.
        await raw[ENTITY].drop()
        started = time.perf_counter()
        await raw[ENTITY].insert_many(await source[ENTITY].find({}).to_list(), ordered=False)
        copy_seconds = time.perf_counter() - started

        full_seconds, full = await timed_sync(uri, names["source"], dest, "full", batch)
        assert full.inserted == count
        again_seconds, again = await timed_sync(uri, names["source"], dest, "full", batch)
        assert again.unchanged == count and again.inserted == again.updated == again.deleted == 0

        cursors, stream_state = MemoryCursors(), MemoryCursors()
        await source[ENTITY].create_index([("updatedAt", 1), ("_id", 1)])  # as the README advises
        await timed_sync(uri, names["source"], client[names["inc"]], "incremental", batch, cursors)
        await timed_stream(uri, names["source"], client[names["cs"]], batch, stream_state)  # the snapshot
        # A quiet run moves the resume point past the snapshot's own writes: a steady state, where a
        # run scans the oplog entries since the last run (of every database on the server).
        await timed_stream(uri, names["source"], client[names["cs"]], batch, stream_state)

        edits = max(1, count // 100)
        started = time.perf_counter()  # what the changes themselves cost: one write each
        for i in random.Random(1).sample(range(count), edits):
            await source[ENTITY].update_one(
                {"_id": i}, {"$set": {"balance": -1.0, "updatedAt": T0 + timedelta(seconds=count + i)}}
            )
        edits_seconds = time.perf_counter() - started
        edit_seconds, edited = await timed_sync(uri, names["source"], dest, "full", batch)
        assert edited.updated == edits
        inc_seconds, inc = await timed_sync(uri, names["source"], client[names["inc"]], "incremental", batch, cursors)
        assert inc.updated == edits
        cs_seconds, cs = await timed_stream(uri, names["source"], client[names["cs"]], batch, stream_state)
        assert cs.updated == edits and cs.read == edits

        rows = [
            ("raw insert_many (same docs)", raw_seconds, count),
            ("raw find + insert_many (naive copy)", copy_seconds, count),
            ("full sync into empty destination", full_seconds, count),
            ("full re-sync, no change", again_seconds, count),
            (f"full re-sync, {edits} docs edited", edit_seconds, count),
            (f"incremental (cursor), {edits} edited", inc_seconds, edits),
            (f"changeStream, {edits} edited", cs_seconds, edits),
        ]
        # The measure for a changeStream run: about what its changes cost to apply, not a scan.
        apply_row = (f"the {edits} edits themselves (update_one each)", edits_seconds, edits)
        print(f"documents: {count}, batch size: {batch}, server: {uri}")
        # The ratio is to raw insert_many of as many documents as the case moves (all, or the edited ones).
        print(f"{'case':38} {'seconds':>8} {'docs/s':>9} {'x insert_many of n':>19}")
        for label, seconds, n in [*rows, apply_row]:
            print(f"{label:38} {seconds:8.2f} {n / seconds:9.0f} {seconds / (raw_seconds * n / count):19.2f}")
        print(f"changeStream run / its edits applied one by one: {cs_seconds / edits_seconds:.2f}")
        print(f"changeStream run / full re-sync of the same change: {cs_seconds / edit_seconds:.2f}")
    finally:
        for name in names.values():
            await client.drop_database(name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--uri", help="an existing server; default: start SecantusDB in memory")
    args = parser.parse_args()
    if args.uri:
        asyncio.run(bench(args.uri, args.docs, args.batch_size))
        return
    # The oplog holds every write of the run (source, raw copies, destinations: ~5x the documents) so the
    # changeStream case resumes inside it; SecantusDB keeps 100,000 entries by default.
    server = start_embedded(":memory:", extra_args=["--oplog-max-entries", str(max(100_000, 8 * args.docs))])
    try:
        asyncio.run(bench(server.uri, args.docs, args.batch_size))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
