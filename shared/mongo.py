"""The database connection and the indexes every process relies on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError
from syncjobs.shared.models import RunStatus

Document = dict[str, Any]
Database = AsyncDatabase[Document]
Client = AsyncMongoClient[Document]
# What a process gives its database while it stops: a SIGTERM never waits on server selection.
SHUTDOWN_DATABASE_SECONDS = 0.3


def connect(uri: str, **options: Any) -> AsyncMongoClient[Document]:
    """A client that hands back aware UTC datetimes, so no naive datetime leaks into the core."""
    options.setdefault("tz_aware", True)
    options.setdefault("serverSelectionTimeoutMS", 5000)
    options.setdefault("appname", "syncjobs")
    return AsyncMongoClient(uri, **options)


def connect_for_one_run(uri: str, **options: Any) -> AsyncMongoClient[Document]:
    """A client for a process that lives one run: its monitor polls instead of streaming, so it opens
    no round-trip-time connection (two connections per server, not three; a burst of runs opens thousands)."""
    options.setdefault("serverMonitoringMode", "poll")
    return connect(uri, **options)


# SecantusDB answers a change stream's getMore as soon as anything is written anywhere, with an empty batch
# when the write was not one the stream watches: without a pause, each write costs every open stream a
# round trip (a burst of 1,000 runs: thousands). mongod answers empty only when maxAwaitTimeMS ran out.
EMPTY_GETMORE_INTERVAL_SECONDS = 0.05


async def paced_changes(
    stream: AsyncChangeStream[Document], min_interval_seconds: float = EMPTY_GETMORE_INTERVAL_SECONDS
) -> AsyncIterator[Document]:
    """Each change of `stream`, as `async for` would give them, but after a getMore that came back empty
    sooner than `min_interval_seconds` the next waits out the rest of it: a change is at most that late."""
    while stream.alive:
        asked = time.monotonic()
        change = await stream.try_next()
        if change is not None:
            yield change
            continue
        rest = min_interval_seconds - (time.monotonic() - asked)
        if rest > 0:
            await asyncio.sleep(rest)


def shutdown_budget() -> ContextManager[None]:
    """Every database call inside (server selection included) gives up after SHUTDOWN_DATABASE_SECONDS."""
    return pymongo.timeout(SHUTDOWN_DATABASE_SECONDS)


async def close_client(client: AsyncMongoClient[Document]) -> None:
    """Close without waiting on an unreachable database: endSessions gets the shutdown budget only."""
    with shutdown_budget():
        await client.close()


@dataclass(frozen=True)
class CollectionIndexes:
    collection: str
    indexes: tuple[IndexModel, ...]


def _index(keys: list[tuple[str, int]], name: str, **options: Any) -> IndexModel:
    return IndexModel(keys, name=name, **options)


def index_plan(run_retention_days: int = 30) -> list[CollectionIndexes]:
    """Every collection of docs/DESIGN.md with its indexes (tests/unit/test_design_map.py holds the two
    equal); the unique ones are what makes duplicates impossible."""
    return [
        CollectionIndexes("workspaces", ()),
        CollectionIndexes("worker_locks", ()),
        CollectionIndexes("sync_state", ()),
        CollectionIndexes("alert_states", ()),
        CollectionIndexes("api_tokens", (_index([("workspaceId", ASCENDING)], "workspace"),)),
        CollectionIndexes(
            "data_sources",
            (_index([("workspaceId", ASCENDING), ("name", ASCENDING)], "workspace_name", unique=True),),
        ),
        CollectionIndexes(
            "destinations",
            (_index([("workspaceId", ASCENDING), ("name", ASCENDING)], "workspace_name", unique=True),),
        ),
        CollectionIndexes(
            "syncjobs",
            (
                _index([("workspaceId", ASCENDING), ("name", ASCENDING)], "workspace_name", unique=True),
                _index([("enabled", ASCENDING), ("nextRunAt", ASCENDING)], "enabled_next_run"),
                _index([("updatedAt", ASCENDING)], "updated_at"),
            ),
        ),
        CollectionIndexes(
            "job_runs",
            (
                _index(
                    [("jobId", ASCENDING), ("scheduledFor", ASCENDING), ("trigger", ASCENDING), ("attempt", ASCENDING)],
                    "fire_key",
                    unique=True,
                ),
                _index(
                    [("workspaceId", ASCENDING), ("jobId", ASCENDING), ("startedAt", DESCENDING)],
                    "workspace_job_started",
                ),
                _index([("jobId", ASCENDING), ("createdAt", DESCENDING)], "job_created"),
                _index([("workspaceId", ASCENDING), ("createdAt", DESCENDING)], "workspace_created"),
                _index([("status", ASCENDING)], "status"),
                # The per-job execution lock: at most one running run of a job whose overlap is not `allow`,
                # so claiming a run (pending -> running) takes the lock in the same write.
                _index(
                    [("jobId", ASCENDING)],
                    "job_running",
                    unique=True,
                    partialFilterExpression={"status": RunStatus.RUNNING, "exclusive": True},
                ),
                _index(
                    [("createdAt", ASCENDING)],
                    "retention_ttl",
                    expireAfterSeconds=run_retention_days * 86400,
                ),
            ),
        ),
        CollectionIndexes("webhooks", (_index([("workspaceId", ASCENDING)], "workspace"),)),
        CollectionIndexes(
            "webhook_deliveries",
            (_index([("webhookId", ASCENDING), ("createdAt", DESCENDING)], "webhook_created"),),
        ),
    ]


# A standalone mongod's reply to opening a change stream: "The $changeStream stage is only supported on
# replica sets" (code 40573). The worker then polls; every other failure to open one is an error.
NO_CHANGE_STREAMS = 40573


def no_change_streams(error: PyMongoError) -> bool:
    """The server has no change streams (as opposed to failing to open one: auth, network, ...)."""
    return isinstance(error, OperationFailure) and (
        error.code == NO_CHANGE_STREAMS or "only supported on replica sets" in str(error)
    )


async def ensure_indexes(db: Database, run_retention_days: int = 30) -> None:
    """Create the indexes idempotently; a changed TTL is applied with collMod rather than failing."""
    for plan in index_plan(run_retention_days):
        collection = db[plan.collection]
        for model in plan.indexes:
            try:
                await collection.create_indexes([model])
            except OperationFailure as exc:
                ttl = model.document.get("expireAfterSeconds")
                if ttl is None or exc.code not in (85, 86):  # IndexOptionsConflict / IndexKeySpecsConflict
                    raise
                await db.command(
                    {"collMod": plan.collection, "index": {"name": model.document["name"], "expireAfterSeconds": ttl}}
                )
