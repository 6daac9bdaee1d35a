"""`changeStream` mode: one change stream per source database, resumed from the token saved in `sync_state`.

The first run notes the stream's position, then snapshots every entity as `full` does; each later run
reads the stream from the saved token up to the cluster time at its start. Events name documents: each
batch of changed `_id`s is looked up in the source and written as it stands now (inserted, replaced when
its content changed, deleted when gone), which is what applying the events in order converges to, and
a state newer than the stop point is re-applied harmlessly by the next run. The token is saved behind
the writes; when the stream had nothing more, its postBatchResumeToken is saved, so an idle source's
position still advances.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bson import Timestamp
from pymongo.errors import OperationFailure, PyMongoError
from syncjobs.executor.bson_ids import id_key
from syncjobs.executor.destination import Destination, DestinationError
from syncjobs.executor.sources import SourceError
from syncjobs.executor.sources.mongodb import MongoSource
from syncjobs.executor.sync import (
    CursorStore,
    EntityResult,
    ProgressCallback,
    SyncOptions,
    plan_batch,
    sync_entity,
    write_plan,
)
from syncjobs.shared.store.sync_state import CHANGE_STREAM_KEY

DOCUMENT_EVENTS = ("insert", "update", "replace", "delete")
# Events after which the stream cannot be trusted: an entity's collection dropped or renamed.
INVALIDATING_EVENTS = ("drop", "rename", "dropDatabase", "invalidate")
HISTORY_LOST_CODES = (286, 280, 260)  # ChangeStreamHistoryLost, ChangeStreamFatalError, InvalidResumeToken
NOT_A_REPLICA_SET_CODES = (40573,)


class HistoryLost(Exception):
    """The saved resume point cannot be resumed from: the run fails, or resnapshots (`onHistoryLost`)."""


@dataclass(frozen=True)
class ResumePoint:
    """Where the next run resumes: the stream's token, the cluster time it stands for, and the entities
    whose snapshot it follows (an entity added to the job later is snapshotted before its changes apply)."""

    token: Any
    cluster_time: Timestamp
    entities: tuple[str, ...] = ()

    def to_state(self) -> dict[str, Any]:
        return {"token": self.token, "clusterTime": self.cluster_time, "entities": list(self.entities)}

    @classmethod
    def from_state(cls, state: Any) -> ResumePoint | None:
        if not isinstance(state, dict) or "token" not in state or not isinstance(state.get("clusterTime"), Timestamp):
            return None
        return cls(state["token"], state["clusterTime"], tuple(state.get("entities") or ()))


@dataclass(frozen=True)
class StreamSync:
    """What every step of a changeStream run works with: the source it reads, the destination it writes,
    where the resume point is kept, whom it tells of progress, the job's settings and the replay's batch."""

    source: MongoSource
    destination: Destination
    state: CursorStore
    on_progress: ProgressCallback
    options: SyncOptions
    batch_size: int

    async def copy(self, entity: str) -> EntityResult:
        """The entity's documents as they are now, as a `full` sync copies them."""
        return await sync_entity(
            "full", self.source, self.destination, self.state, entity, self.on_progress, self.options
        )

    async def save(self, point: ResumePoint) -> None:
        """Keep the point to resume from (behind the writes it covers); a dry run keeps none."""
        if not self.destination.dry_run:
            await self.state.save_cursor(CHANGE_STREAM_KEY, point.to_state())


class _ReplayStopped(Exception):
    """An entity's writes failed: the token is not saved past them (the next run replays them)."""


async def sync_change_stream(sync: StreamSync, entities: Sequence[str]) -> list[EntityResult]:
    """Snapshot (first run, or after history was lost with `resnapshot`) or replay the stream."""
    point = ResumePoint.from_state(await sync.state.load_cursor(CHANGE_STREAM_KEY))
    if point is None:
        return await _snapshot(sync, entities)
    results = {entity: EntityResult(entity) for entity in entities}
    for entity in entities:
        if entity not in point.entities:  # new to the job: its documents so far, then its changes
            results[entity] = await sync.copy(entity)
    covered = tuple(e for e in entities if results[e].error is None and not results[e].stats.failed)
    try:
        await _replay(sync, replace(point, entities=covered), results)
    except HistoryLost as lost:
        if sync.options.on_history_lost != "resnapshot":
            return _all_failed(entities, f"{lost}; reset the job's state (POST .../reset-state) to resnapshot")
        snapshot = await _snapshot(sync, entities)
        for result in snapshot:
            result.warning = f"{lost}: took a new snapshot"
        return snapshot
    except _ReplayStopped:
        pass
    except (SourceError, PyMongoError) as exc:
        for result in results.values():
            result.error = result.error or str(exc)
    return list(results.values())


def _all_failed(entities: Sequence[str], error: str) -> list[EntityResult]:
    return [EntityResult(entity, error=error) for entity in entities]


async def _snapshot(sync: StreamSync, entities: Sequence[str]) -> list[EntityResult]:
    """Note the stream's position first, copy every entity as `full`, then save the position: changes
    made during the copy are replayed by the next run (idempotently, by content hash)."""
    try:
        point = await _current_point(sync.source, entities)
    except (SourceError, PyMongoError) as exc:
        return _all_failed(entities, str(exc))
    results = [await sync.copy(entity) for entity in entities]
    if all(result.error is None and not result.stats.failed for result in results):
        await sync.save(point)
    return results


def _pipeline(entities: Sequence[str]) -> list[dict[str, Any]]:
    """Only the job's entities' events (and those that end the stream), filtered by the server."""
    return [
        {
            "$match": {
                "$or": [
                    {"ns.coll": {"$in": list(entities)}},
                    {"operationType": {"$in": ["dropDatabase", "invalidate"]}},
                ]
            }
        }
    ]


async def _current_point(source: MongoSource, entities: Sequence[str]) -> ResumePoint:
    client = source.database.client
    async with client.start_session() as session:
        async with await _watch(source, entities, session=session) as stream:
            await stream.try_next()
            token = stream.resume_token
        cluster_time = session.operation_time
    if token is None or cluster_time is None:
        raise SourceError("the source's change stream gave no resume token")
    return ResumePoint(token, cluster_time, tuple(entities))


async def _watch(source: MongoSource, entities: Sequence[str], **kwargs: Any) -> Any:
    try:
        return await source.database.watch(_pipeline(entities), max_await_time_ms=50, **kwargs)
    except OperationFailure as exc:
        raise stream_error(exc) from None


def stream_error(exc: OperationFailure) -> Exception:
    if exc.code in HISTORY_LOST_CODES or "resume token" in str(exc):
        return HistoryLost(f"change stream history lost: {exc.details.get('errmsg') if exc.details else exc}")
    if exc.code in NOT_A_REPLICA_SET_CODES:
        return SourceError("changeStream needs a replica set (or SecantusDB) source; this server is standalone")
    return SourceError(f"cannot read the source's change stream: {exc}")


async def _replay(sync: StreamSync, point: ResumePoint, results: dict[str, EntityResult]) -> None:
    """Apply the changes from `point` up to the cluster time at the start, saving the token behind them."""
    source = sync.source
    client = source.database.client
    pending = _Pending(sync.batch_size)
    async with client.start_session() as session:
        await source.database.command("ping", session=session)
        stop = session.operation_time
        async with await _watch(source, list(results), resume_after=point.token, session=session) as stream:
            last = point
            while True:
                try:
                    change = await stream.try_next()
                except OperationFailure as exc:
                    raise stream_error(exc) from None
                if change is None:  # nothing more now: the stream's postBatchResumeToken covers the quiet
                    await _flush(sync, pending, results)
                    last = replace(last, token=stream.resume_token, cluster_time=max(stop, last.cluster_time))
                    break
                if change["clusterTime"] > stop:
                    break
                operation, entity = change["operationType"], change.get("ns", {}).get("coll")
                if operation in INVALIDATING_EVENTS:
                    raise HistoryLost(f"change stream invalidated: {operation} of {entity or 'the database'}")
                if operation in DOCUMENT_EVENTS and entity in results:
                    pending.add(entity, change["documentKey"]["_id"])
                if pending.full:
                    await _flush(sync, pending, results)
                    await sync.save(last)
                last = replace(last, token=change["_id"], cluster_time=change["clusterTime"])
    await _flush(sync, pending, results)
    await sync.save(last)


class _Pending:
    """Changed ids per entity, deduplicated, until a batch is full."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.ids: dict[str, dict[Hashable, Any]] = {}
        self.count = 0

    def add(self, entity: str, doc_id: Any) -> None:
        by_key = self.ids.setdefault(entity, {})
        key = id_key(doc_id)
        if key not in by_key:
            by_key[key] = doc_id
            self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= self.batch_size

    def take(self) -> dict[str, dict[Hashable, Any]]:
        taken, self.ids, self.count = self.ids, {}, 0
        return taken


async def _flush(sync: StreamSync, pending: _Pending, results: dict[str, EntityResult]) -> None:
    """Write each changed document as the source has it now; delete those the source no longer has."""
    source, destination = sync.source, sync.destination
    for entity, by_key in pending.take().items():
        result = results[entity]
        if result.error is not None:
            continue
        ids = list(by_key.values())
        try:
            current = await source.documents(entity, ids)
            stored = await destination.hashes_of(entity, ids)
            known = {key: digest for key, (_, digest) in stored.items()}
            stored_ids = {key: doc_id for key, (doc_id, _) in stored.items()}
            result.stats.read += len(current)
            plan = plan_batch(current, known, stored_ids)
            errors = await write_plan(destination, entity, plan, result.stats)
            present = set(plan.keys)
            gone = [doc_id for key, (doc_id, _) in stored.items() if key not in present]
            if gone:
                result.stats.deleted += await destination.delete(entity, gone)
        except (SourceError, DestinationError) as exc:
            result.error = str(exc)
            raise _ReplayStopped from None
        if errors:
            result.error = f"{result.stats.failed} documents failed to write: " + "; ".join(errors)
            raise _ReplayStopped
        await sync.on_progress(entity, result.stats)
