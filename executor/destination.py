"""The destination database: one collection per entity, each document stamped with its content hash.

The hash lets a full sync write only what changed and an incremental one tell an update from a no-op,
without comparing whole documents field by field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError
from syncjobs.executor.bson_ids import id_key
from syncjobs.executor.sources import Record

HASH_FIELD = "_syncjobsHash"
DELETE_CHUNK = 1000
_ERRORS_KEPT = 5


class DestinationError(Exception):
    """A write or read of the destination failed as a whole (not one document)."""


def content_hash(record: Record) -> str:
    """A digest of the record as the source gave it: BSON bytes, so types and field order count."""
    content = {key: value for key, value in record.items() if key != HASH_FIELD}
    return hashlib.blake2b(bson.encode(content), digest_size=16).hexdigest()


@dataclass
class WriteCounts:
    """What one batch of inserts and replaces did (`delete` answers its own count); `failed` documents are
    counted out of the other fields."""

    inserted: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Destination:
    """Writes entities into `db`; with `dry_run` every write is counted as done but none is sent."""

    def __init__(self, db: AsyncDatabase[Any], *, dry_run: bool = False) -> None:
        self._db = db
        self.dry_run = dry_run

    async def stored_hashes(self, entity: str) -> dict[Hashable, tuple[Any, str | None]]:
        """Every document of the entity: id key -> (its `_id`, its content hash)."""
        try:
            cursor = self._db[entity].find({}, {HASH_FIELD: 1}, batch_size=10_000)
            return {id_key(doc["_id"]): (doc["_id"], doc.get(HASH_FIELD)) async for doc in cursor}
        except PyMongoError as exc:
            raise DestinationError(f"cannot read destination {entity!r}: {exc}") from None

    async def hashes_of(self, entity: str, ids: Sequence[Any]) -> dict[Hashable, tuple[Any, str | None]]:
        """Those of `ids` the entity already holds: id key -> (the stored `_id`, its content hash)."""
        try:
            cursor = self._db[entity].find({"_id": {"$in": list(ids)}}, {HASH_FIELD: 1})
            return {id_key(doc["_id"]): (doc["_id"], doc.get(HASH_FIELD)) async for doc in cursor}
        except PyMongoError as exc:
            raise DestinationError(f"cannot read destination {entity!r}: {exc}") from None

    async def write(
        self,
        entity: str,
        *,
        inserts: Iterable[Record] = (),
        replaces: Iterable[Record] = (),
        retyped: Sequence[tuple[Any, Record]] = (),
    ) -> WriteCounts:
        """Insert new documents and replace changed ones in one unordered bulk write.

        Replacements upsert, so a document deleted meanwhile comes back rather than being lost. `retyped`
        pairs (stored `_id`, record) whose `_id` is equal but of another type (`1` became `1.0`): a
        replacement cannot change an `_id`, so each is deleted and inserted in one ordered bulk write.
        """
        docs = [*inserts]
        n_inserts = len(docs)
        docs.extend(replaces)
        counts = WriteCounts(inserted=n_inserts, updated=len(docs) - n_inserts)
        if self.dry_run:
            counts.updated += len(retyped)
            return counts
        if retyped:
            await self._retype(entity, retyped, counts)
        if not docs:
            return counts
        ops: list[InsertOne[Any] | ReplaceOne[Any]] = [InsertOne(doc) for doc in docs[:n_inserts]]
        ops.extend(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs[n_inserts:])
        try:
            await self._db[entity].bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error["index"] < n_inserts:
                    counts.inserted -= 1
                else:
                    counts.updated -= 1
                counts.failed += 1
                if len(counts.errors) < _ERRORS_KEPT:
                    doc_id = docs[error["index"]]["_id"]
                    counts.errors.append(f"_id {doc_id!r}: {error.get('errmsg')}")
        except PyMongoError as exc:
            raise DestinationError(f"cannot write destination {entity!r}: {exc}") from None
        return counts

    async def _retype(self, entity: str, retyped: Sequence[tuple[Any, Record]], counts: WriteCounts) -> None:
        ops: list[DeleteOne | InsertOne[Any]] = []
        for old_id, doc in retyped:
            ops += [DeleteOne({"_id": old_id}), InsertOne(doc)]
        try:
            await self._db[entity].bulk_write(ops, ordered=True)
            counts.updated += len(retyped)
        except BulkWriteError as exc:
            done = exc.details.get("nInserted", 0)
            counts.updated += done
            counts.failed += len(retyped) - done
            for error in exc.details.get("writeErrors", [])[:_ERRORS_KEPT]:
                counts.errors.append(f"_id {retyped[error['index'] // 2][0]!r}: {error.get('errmsg')}")
        except PyMongoError as exc:
            raise DestinationError(f"cannot write destination {entity!r}: {exc}") from None

    async def delete(self, entity: str, ids: Sequence[Any]) -> int:
        """Delete these documents; the count is what the server acknowledged (or would, in a dry run)."""
        if self.dry_run:
            return len(ids)
        deleted = 0
        try:
            for start in range(0, len(ids), DELETE_CHUNK):
                chunk = list(ids[start : start + DELETE_CHUNK])
                result = await self._db[entity].bulk_write([DeleteMany({"_id": {"$in": chunk}})], ordered=False)
                deleted += result.deleted_count
        except PyMongoError as exc:
            raise DestinationError(f"cannot delete from destination {entity!r}: {exc}") from None
        return deleted
