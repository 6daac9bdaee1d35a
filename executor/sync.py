"""The sync algorithm for one entity, full or incremental, written against the Source and Destination.

`full` makes the destination collection equal the source: new ids are inserted, changed content
(by hash) replaced, ids the source no longer has deleted once the whole source has been read.
`incremental` upserts what the source returns past the saved cursor and saves each batch's cursor only
after its writes are acknowledged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from syncjobs.executor.bson_ids import id_key, same_bson
from syncjobs.executor.destination import HASH_FIELD, Destination, DestinationError, content_hash
from syncjobs.executor.sources import IncrementalOptions, Record, Source, SourceError
from syncjobs.shared.models import SyncJob

SyncMode = Literal["full", "incremental"]  # per entity; `changeStream` runs per database (change_stream.py)
STAT_FIELDS = ("read", "inserted", "updated", "deleted", "unchanged", "failed", "skipped_no_cursor")


class EntitySelectionError(Exception):
    """The job's `entities` selection names something the source does not offer."""


MASS_DELETE_MIN_DOCUMENTS = 100


@dataclass(frozen=True)
class SyncOptions:
    """The job's settings the sync algorithm and its source read (the defaults are the job model's)."""

    max_delete_fraction: float = 0.5
    incremental: IncrementalOptions = field(default_factory=IncrementalOptions)
    on_history_lost: Literal["fail", "resnapshot"] = "fail"


def sync_options(job: SyncJob) -> SyncOptions:
    return SyncOptions(
        max_delete_fraction=job.max_delete_fraction,
        incremental=IncrementalOptions(
            lookback_seconds=job.lookback_seconds, include_missing_cursor=job.on_missing_cursor == "include"
        ),
        on_history_lost=job.on_history_lost,
    )


@dataclass(eq=False)
class DeletesRefused(Exception):
    """A full read that would empty too much of the destination: more likely a broken source than real."""

    source_count: int
    destination_count: int
    would_delete: int
    max_fraction: float

    def __str__(self) -> str:
        return (
            f"source returned {self.source_count:,} of {self.destination_count:,} documents: deleting"
            f" {self.would_delete:,} exceeds maxDeleteFraction {self.max_fraction:g}, nothing deleted"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "sourceCount": self.source_count,
            "destinationCount": self.destination_count,
            "wouldDelete": self.would_delete,
            "maxDeleteFraction": self.max_fraction,
        }


@dataclass
class EntityStats:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped_no_cursor: int = 0  # incremental: source documents without the cursor field, not read

    def add(self, other: EntityStats) -> None:
        for name in STAT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        counts = asdict(self)
        counts["skippedNoCursor"] = counts.pop("skipped_no_cursor")
        return counts


@dataclass
class EntityResult:
    """How one entity's sync ended; `error` set means it failed (the others still run)."""

    entity: str
    stats: EntityStats = field(default_factory=EntityStats)
    error: str | None = None
    duration_ms: int = 0
    deletes_refused: DeletesRefused | None = None
    warning: str | None = None

    @property
    def status(self) -> Literal["updated", "unchanged", "failed"]:
        if self.error is not None or self.stats.failed:
            return "failed"
        changed = self.stats.inserted + self.stats.updated + self.stats.deleted
        return "updated" if changed else "unchanged"

    def detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"entity": self.entity, "status": self.status}
        if self.status == "failed":
            detail["error"] = self.error or f"{self.stats.failed} documents failed to write"
        if self.deletes_refused is not None:
            detail["deletesRefused"] = self.deletes_refused.as_json()
        if self.warning is not None:
            detail["warning"] = self.warning
        elif self.stats.skipped_no_cursor:
            detail["warning"] = (
                f"{self.stats.skipped_no_cursor} documents without the cursor field were not synced"
                ' (onMissingCursor "include" syncs them)'
            )
        return detail


class CursorStore(Protocol):
    async def load(self, entity: str) -> Any | None: ...

    async def save(self, entity: str, cursor: Any) -> None: ...


ProgressCallback = Callable[[str, EntityStats], Awaitable[None]]


def select_entities(
    available: Sequence[str], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[str]:
    """The entities a job syncs: `include` (all when None) minus `exclude`, in the order given."""
    if include is None:
        chosen = list(available)
    else:
        missing = [name for name in include if name not in available]
        if missing:
            raise EntitySelectionError(
                f"entities not offered by the data source: {', '.join(missing)}"
                f" (it offers: {', '.join(available) or 'none'})"
            )
        chosen = list(dict.fromkeys(include))
    excluded = set(exclude or ())
    return [name for name in chosen if name not in excluded]


@dataclass
class BatchPlan:
    """What to write for one batch of source records, given the hashes the destination holds."""

    keys: list[Hashable] = field(default_factory=list)
    inserts: list[Record] = field(default_factory=list)
    replaces: list[Record] = field(default_factory=list)
    retyped: list[tuple[Any, Record]] = field(default_factory=list)
    unchanged: int = 0


def plan_batch(
    records: Sequence[Record], known: dict[Hashable, str | None], stored_ids: dict[Hashable, Any] | None = None
) -> BatchPlan:
    """Sort records into inserts, replacements and no-ops; `known` (and `stored_ids`, the destination's
    `_id` of each key) are updated to what will be stored. A record whose `_id` equals a stored one of
    another type (`1` and `1.0`) is `retyped`: one document whose id changed type, never a second one."""
    plan = BatchPlan()
    stored_ids = {} if stored_ids is None else stored_ids
    for record in records:
        if "_id" not in record:
            raise SourceError("a source record has no _id")
        digest = content_hash(record)
        key = id_key(record["_id"])
        plan.keys.append(key)
        if key not in known:
            plan.inserts.append({**record, HASH_FIELD: digest})
        elif known[key] == digest:
            plan.unchanged += 1
        elif key in stored_ids and not same_bson(stored_ids[key], record["_id"]):
            plan.retyped.append((stored_ids[key], {**record, HASH_FIELD: digest}))
        else:
            plan.replaces.append({**record, HASH_FIELD: digest})
        known[key] = digest
        stored_ids[key] = record["_id"]
    return plan


async def write_plan(destination: Destination, entity: str, plan: BatchPlan, stats: EntityStats) -> list[str]:
    counts = await destination.write(entity, inserts=plan.inserts, replaces=plan.replaces, retyped=plan.retyped)
    stats.inserted += counts.inserted
    stats.updated += counts.updated
    stats.unchanged += plan.unchanged
    stats.failed += counts.failed
    return counts.errors


async def sync_full(
    source: Source,
    destination: Destination,
    entity: str,
    stats: EntityStats,
    on_progress: ProgressCallback,
    max_delete_fraction: float = 1.0,
) -> list[str]:
    """Make the destination entity equal the source; returns per-document write errors. Deleting more
    than `max_delete_fraction` of an entity of at least 100 documents raises DeletesRefused instead."""
    stored = await destination.stored_hashes(entity)
    known = {key: digest for key, (_, digest) in stored.items()}
    stored_ids = {key: doc_id for key, (doc_id, _) in stored.items()}
    seen: set[Hashable] = set()
    errors: list[str] = []
    async with aclosing(source.read(entity, incremental=False, cursor=None)) as batches:
        async for batch in batches:
            stats.read += len(batch.records)
            plan = plan_batch(batch.records, known, stored_ids)
            seen.update(plan.keys)
            errors.extend(await write_plan(destination, entity, plan, stats))
            await on_progress(entity, stats)
    gone = [doc_id for key, (doc_id, _) in stored.items() if key not in seen]
    too_many = len(gone) > max_delete_fraction * len(stored) and max_delete_fraction < 1
    if too_many and len(stored) >= MASS_DELETE_MIN_DOCUMENTS:
        raise DeletesRefused(len(seen), len(stored), len(gone), max_delete_fraction)
    if gone:
        stats.deleted += await destination.delete(entity, gone)
        await on_progress(entity, stats)
    return errors


async def sync_incremental(
    source: Source,
    destination: Destination,
    cursors: CursorStore,
    entity: str,
    stats: EntityStats,
    on_progress: ProgressCallback,
) -> list[str]:
    """Upsert what the source returns past the saved cursor, saving the cursor behind the writes."""
    cursor = await cursors.load(entity)
    async with aclosing(source.read(entity, incremental=True, cursor=cursor)) as batches:
        async for batch in batches:
            stats.read += len(batch.records)
            stats.skipped_no_cursor += batch.skipped_no_cursor
            if batch.records:
                ids = [r["_id"] for r in batch.records if "_id" in r]
                stored = await destination.hashes_of(entity, ids)
                known = {key: digest for key, (_, digest) in stored.items()}
                stored_ids = {key: doc_id for key, (doc_id, _) in stored.items()}
                plan = plan_batch(batch.records, known, stored_ids)
                errors = await write_plan(destination, entity, plan, stats)
                if errors:
                    # Stop before a later cursor could be saved past the documents that failed.
                    return errors
            if batch.cursor is not None and not destination.dry_run:
                await cursors.save(entity, batch.cursor)
            await on_progress(entity, stats)
    return []


async def sync_entity(
    mode: SyncMode,
    source: Source,
    destination: Destination,
    cursors: CursorStore,
    entity: str,
    on_progress: ProgressCallback,
    options: SyncOptions | None = None,
) -> EntityResult:
    """Sync one entity, turning any source or destination failure into a failed result."""
    options = options or SyncOptions()
    result = EntityResult(entity)
    try:
        if mode == "full":
            errors = await sync_full(
                source, destination, entity, result.stats, on_progress, options.max_delete_fraction
            )
        else:
            errors = await sync_incremental(source, destination, cursors, entity, result.stats, on_progress)
    except DeletesRefused as exc:
        result.error, result.deletes_refused = str(exc), exc
    except (SourceError, DestinationError, EntitySelectionError) as exc:
        result.error = str(exc)
    except MemoryError:
        raise  # past the executor's memory limit: the whole run fails saying so
    except Exception as exc:  # one entity's surprise must not stop the others
        result.error = f"{type(exc).__name__}: {exc}"
    else:
        if errors:
            result.error = f"{result.stats.failed} documents failed to write: " + "; ".join(errors)
    return result
