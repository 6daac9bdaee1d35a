"""`paced_changes`: SecantusDB answers a change stream's getMore on any write, so while other collections
are written the stream asks again at most once an interval, and still delivers every change it watches."""

from __future__ import annotations

import asyncio
import time

from syncjobs.shared.mongo import Database, Document, connect, paced_changes

from tests.fixtures.command_log import CommandLog
from tests.fixtures.eventually import eventually

INTERVAL = 0.2
OTHER_WRITES = 40


async def test_a_stream_asks_at_most_once_an_interval_while_other_collections_are_written(
    db: Database, mongo_uri: str
) -> None:
    sent = CommandLog()
    watcher = connect(mongo_uri, event_listeners=[sent])
    seen: list[Document] = []

    stream = await watcher[db.name].watched.watch([{"$match": {"operationType": "insert"}}])

    async def watch() -> None:
        async for change in paced_changes(stream, INTERVAL):
            seen.append(change["fullDocument"])

    watching = asyncio.create_task(watch())
    try:
        await db.watched.insert_one({"n": 0})
        await eventually(lambda: _seen(seen, 1))
        before, started = sent.names.count("getMore"), time.monotonic()
        for n in range(OTHER_WRITES):
            await db.elsewhere.insert_one({"n": n})
        await db.watched.insert_one({"n": 1})
        await eventually(lambda: _seen(seen, 2))
        asked, elapsed = sent.names.count("getMore") - before, time.monotonic() - started
        # Unpaced, each of the 40 writes elsewhere costs a getMore; paced, one per interval at most.
        assert asked <= elapsed / INTERVAL + 3, (asked, elapsed)
        assert [doc["n"] for doc in seen] == [0, 1]
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await stream.close()
        await watcher.close()


async def _seen(seen: list[Document], count: int) -> bool:
    return len(seen) >= count
