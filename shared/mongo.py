"""The database connection and the indexes every process relies on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReadPreference, WriteConcern
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from syncjobs.shared.errors import ArbitersRefused, NotFound
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import RunStatus
from syncjobs.shared.waits import Turns

log = get_logger(__name__)

Document = dict[str, Any]
Database = AsyncDatabase[Document]
Client = AsyncMongoClient[Document]
Collection = AsyncCollection[Document]
# What a process gives its database while it stops: a SIGTERM never waits on server selection.
SHUTDOWN_DATABASE_SECONDS = 0.3
IDEMPOTENCY_KEY_SECONDS = 24 * 3600  # how long an Idempotency-Key and its first answer are kept


def connect(uri: str, **options: Any) -> AsyncMongoClient[Document]:
    """A client that hands back aware UTC datetimes, so no naive datetime leaks into the core."""
    options.setdefault("tz_aware", True)
    options.setdefault("serverSelectionTimeoutMS", 5000)
    options.setdefault("appname", "syncjobs")
    return AsyncMongoClient(uri, **options)


# --- write and read concerns: what the scheduler relies on, named once ---
# Jepsen's MongoDB analyses (3.6.4, 4.2.6): a single-document operation is linearizable only with
# w:"majority" writes and majority reads. A write acknowledged by the primary alone can be rolled back by an
# election, and two leaders would then both hold "the" lease. Other reads (the api's, the claimers' scans)
# stay local: a stale one costs a round of polling, never a double run.

# The lease (take, renew, release), fire inserts, claims, run and job outcomes, run-lease renewals:
# acknowledged once a majority of the replica set has journaled them, so no election rolls them back.
DURABLE_WRITE = WriteConcern(w="majority", j=True)
# The lease and the runs the leader judges lost: what a majority holds, asked of the primary (a secondary's
# majority view may lag, and judging a run lost on an old heartbeat would kill a live run).
MAJORITY_READ = ReadConcern("majority")


def durable(collection: Collection) -> Collection:
    """`collection` whose writes use DURABLE_WRITE."""
    return collection.with_options(write_concern=DURABLE_WRITE)


def majority_read(collection: Collection) -> Collection:
    """`collection` whose reads use MAJORITY_READ on the primary."""
    return collection.with_options(read_concern=MAJORITY_READ, read_preference=ReadPreference.PRIMARY)


async def find_existing(collection: Collection, query: Document, missing: str) -> Document:
    """The document `query` names, or NotFound(missing): every store's get of one object."""
    doc = await collection.find_one(query)
    if doc is None:
        raise NotFound(missing)
    return doc


ALLOW_ARBITERS_ENV = "SYNCJOBS_ALLOW_ARBITERS"


async def check_replica_set(client: Client, *, allow_arbiters: bool) -> None:
    """At start: the replica set the client reaches is one syncjobs' concerns hold on (refuse_arbiters)."""
    refuse_arbiters(await client.admin.command("hello"), allow_arbiters=allow_arbiters)


def refuse_arbiters(hello: Document, *, allow_arbiters: bool) -> None:
    """ArbitersRefused for a replica set with arbiters, unless allowed: an arbiter votes but holds no data,
    so with one data-bearing member down no write reaches a majority and no one can lead."""
    arbiters = hello.get("arbiters") or []
    if not arbiters:
        return
    if not allow_arbiters:
        raise ArbitersRefused(
            f"the replica set has arbiters ({', '.join(arbiters)}): syncjobs writes its lease, fires and "
            'claims with w:"majority", which an arbiter cannot acknowledge; with one data-bearing member '
            "down no write lands and no worker can lead (and MongoDB's default write concern falls back to "
            f"w:1 with arbiters). Replace the arbiter with a data-bearing member, or set {ALLOW_ARBITERS_ENV}=1 "
            "to run anyway, accepting that scheduling stops whenever a data-bearing member is down"
        )
    log.warning("replica_set_has_arbiters", arbiters=arbiters, allowed_by=ALLOW_ARBITERS_ENV)


# A change stream's getMore waits up to a second for changes (mongod's and SecantusDB's default): every
# network wait must outlast it.
MIN_NETWORK_WAIT_SECONDS = 2.0


def bounded_waits(lease_seconds: float) -> dict[str, int]:
    """Client options for a process whose calls must not outlast a lease: connecting and each wait for an
    answer give up after a third of it. A partition drops packets rather than refusing them, and pymongo
    has no socket timeout by default: a request lost on the way would be waited on forever."""
    wait_ms = int(max(MIN_NETWORK_WAIT_SECONDS, lease_seconds / 3) * 1000)
    return {"socketTimeoutMS": wait_ms, "connectTimeoutMS": wait_ms}


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
    sooner than `min_interval_seconds` the next waits out the rest of it: a change is at most that late.
    A batch's changes come from the driver's buffer without a pause: the loop is handed back between them
    whenever a turn is up (`Turns`: a burst's thousand changes must not hold up the lease's renewal)."""
    turns = Turns()
    while stream.alive:
        asked = time.monotonic()
        change = await stream.try_next()
        if change is not None:
            yield change
            await turns.take()
            continue
        rest = min_interval_seconds - (time.monotonic() - asked)
        if rest > 0:
            await asyncio.sleep(rest)


def shutdown_budget() -> ContextManager[None]:
    """Every database call inside (server selection included) gives up after SHUTDOWN_DATABASE_SECONDS."""
    return pymongo.timeout(SHUTDOWN_DATABASE_SECONDS)


async def close_client(client: AsyncMongoClient[Document], *, reachable: bool = True) -> None:
    """Close without waiting on an unreachable database: endSessions gets the shutdown budget only, and
    is not sent at all to a database the caller found gone (`reachable=False`) or that the client knows
    no server of (its last contact failed): pymongo's server selection rechecks its deadline only once
    per 0.5 s heartbeat, so a 0.3 s budget still waited 0.5 s of a 2 s stop. The server expires sessions
    nobody ends by itself (after 30 minutes on mongod)."""
    topology = client._topology
    known = client.topology_description.has_readable_server(ReadPreference.PRIMARY_PREFERRED)
    if (not reachable or not known) and topology is not None:
        topology.pop_all_sessions()  # no public way to close without endSessions
    with shutdown_budget():
        await client.close()


@dataclass(frozen=True)
class CollectionIndexes:
    """A collection's indexes; `retired` names the ones an earlier version created that `ensure_indexes`
    drops (by name: an index someone added by hand is left alone)."""

    collection: str
    indexes: tuple[IndexModel, ...]
    retired: tuple[str, ...] = ()


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
        CollectionIndexes(
            "api_tokens",
            (
                _index([("workspaceId", ASCENDING)], "workspace"),
                _index([("workspaceId", ASCENDING), ("tokenId", ASCENDING)], "workspace_token_id"),
            ),
        ),
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
                # The job list's filters, each in name order (the list's keyset).
                _index([("workspaceId", ASCENDING), ("enabled", ASCENDING), ("name", ASCENDING)], "workspace_enabled"),
                _index(
                    [("workspaceId", ASCENDING), ("dataSourceId", ASCENDING), ("name", ASCENDING)], "workspace_source"
                ),
                _index(
                    [("workspaceId", ASCENDING), ("destinationDatabaseId", ASCENDING), ("name", ASCENDING)],
                    "workspace_destination",
                ),
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
                _index([("jobId", ASCENDING), ("createdAt", DESCENDING)], "job_created"),
                # The run list's filters: status ("the failed runs"), trigger; scheduledFor uses fire_key.
                _index([("jobId", ASCENDING), ("status", ASCENDING), ("createdAt", DESCENDING)], "job_status_created"),
                _index(
                    [("jobId", ASCENDING), ("trigger", ASCENDING), ("createdAt", DESCENDING)], "job_trigger_created"
                ),
                _index([("workspaceId", ASCENDING), ("createdAt", DESCENDING)], "workspace_created"),
                # The runs the worker scans: pending ones to claim, running ones for the lost-run sweep and the
                # per-workspace cap.
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
            # Dropped in issue 22 (every index costs each write of a run): it served no query.
            retired=("workspace_job_started",),
        ),
        CollectionIndexes(
            "job_changes",
            (
                _index([("workspaceId", ASCENDING), ("jobId", ASCENDING), ("_id", DESCENDING)], "workspace_job_id"),
                _index([("at", ASCENDING)], "retention_ttl", expireAfterSeconds=run_retention_days * 86400),
            ),
        ),
        CollectionIndexes(
            "idempotency_keys",
            (_index([("createdAt", ASCENDING)], "keep_ttl", expireAfterSeconds=IDEMPOTENCY_KEY_SECONDS),),
        ),
        CollectionIndexes(
            "webhooks",
            (
                _index([("workspaceId", ASCENDING)], "workspace"),
                _index([("workspaceId", ASCENDING), ("_id", ASCENDING)], "workspace_id"),
            ),
        ),
        CollectionIndexes(
            "webhook_deliveries",
            (
                _index([("webhookId", ASCENDING), ("createdAt", DESCENDING)], "webhook_created"),
                _index([("webhookId", ASCENDING), ("_id", DESCENDING)], "webhook_id"),
            ),
        ),
        CollectionIndexes("webhook_events", (_index([("claimedUntil", ASCENDING), ("_id", ASCENDING)], "claimable"),)),
    ]


# A standalone mongod's reply to opening a change stream: "The $changeStream stage is only supported on
# replica sets" (code 40573). The worker then polls; every other failure to open one is an error.
NO_CHANGE_STREAMS = 40573


def no_change_streams(error: PyMongoError) -> bool:
    """The server has no change streams (as opposed to failing to open one: auth, network, ...)."""
    return isinstance(error, OperationFailure) and (
        error.code == NO_CHANGE_STREAMS or "only supported on replica sets" in str(error)
    )


UNAUTHORIZED = 13
INDEX_NOT_FOUND = 27


async def ensure_indexes(db: Database, run_retention_days: int = 30) -> None:
    """Create the indexes idempotently; a changed TTL is applied with collMod rather than failing. Then
    drop the retired ones still there: after the new ones exist, so no query is left without its index
    while a database is upgraded."""
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
        if plan.retired:
            await _drop_retired(collection, plan.retired)


async def _drop_retired(collection: Collection, retired: tuple[str, ...]) -> None:
    """A retired index left in place costs writes, not answers: a user without `dropIndex` still starts."""
    present = {index["name"] async for index in await collection.list_indexes()}
    for name in sorted(present.intersection(retired)):
        try:
            await collection.drop_index(name)
        except OperationFailure as exc:
            if exc.code == UNAUTHORIZED:
                log.warning("retired_index_kept", collection=collection.name, index=name, reason=str(exc))
            elif exc.code != INDEX_NOT_FOUND:  # another process starting beside us dropped it first
                raise
