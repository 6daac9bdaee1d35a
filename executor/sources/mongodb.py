"""Collections of another MongoDB database as a data source.

The incremental cursor is (cursorField, _id): reading sorts on both and resumes strictly after the pair,
so documents sharing a timestamp are neither skipped nor read twice. With a lookback the read starts
at (cursor value - lookback) inclusive instead, so a document written late (an equal timestamp with a
smaller `_id`, a lagging clock, a transaction committed after a later one) is still read; the sync
writes only those whose content changed. Documents without the cursor field are counted, or re-read
each run with `include_missing_cursor`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import Timestamp
from pymongo import ASCENDING
from pymongo.errors import PyMongoError
from syncjobs.executor.sources import Batch, IncrementalOptions, Record, SourceError
from syncjobs.shared.mongo import connect_for_one_run

DEFAULT_CURSOR_FIELD = "updatedAt"


class MongoSource:
    """Reads `config.database` at `config.uri`; each collection is an entity."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        batch_size: int,
        client: Any = None,
        options: IncrementalOptions | None = None,
    ) -> None:
        """`client`, when given, is already connected to `config.uri` and belongs to the caller."""
        self._options = options or IncrementalOptions()
        try:
            self._uri = str(config["uri"])
            self._database = str(config["database"])
        except KeyError as missing:
            raise SourceError(f"mongodb source config lacks {missing.args[0]!r}") from None
        self._entity_config: Mapping[str, Any] = config.get("entities") or {}
        self._batch_size = batch_size
        self._owns_client = client is None
        self._client = connect_for_one_run(self._uri) if client is None else client
        self._check_when_empty = False

    @property
    def client(self) -> Any:
        """The client, for the executor's check of what it connected to before any data moves."""
        return self._client

    @property
    def database(self) -> Any:
        """The source database, for its change stream."""
        return self._client[self._database]

    async def documents(self, entity: str, ids: list[Any]) -> list[Record]:
        """The entity's current documents with these ids (those that still exist)."""
        try:
            return await self._client[self._database][entity].find({"_id": {"$in": ids}}).to_list()
        except PyMongoError as exc:
            raise SourceError(f"cannot read {self._database}.{entity}: {exc}") from None

    def cursor_field(self, entity: str) -> str:
        return str((self._entity_config.get(entity) or {}).get("cursorField", DEFAULT_CURSOR_FIELD))

    def check_when_empty(self) -> None:
        """The entities were named, not listed: a read that finds no document checks its collection
        exists, and fails as an entity not offered if not (before a full sync deletes anything)."""
        self._check_when_empty = True

    async def list_entities(self) -> list[str]:
        try:
            names = await self._client[self._database].list_collection_names()
        except PyMongoError as exc:
            raise SourceError(f"cannot list collections of {self._database!r}: {exc}") from None
        return sorted(name for name in names if not name.startswith("system."))

    async def read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        found = False
        async for batch in self._read(entity, incremental=incremental, cursor=cursor):
            found = found or bool(batch.records) or batch.skipped_no_cursor > 0
            if not found and self._check_when_empty:
                await self._check_offered(entity)
            yield batch
        if not found and self._check_when_empty:
            await self._check_offered(entity)

    async def _check_offered(self, entity: str) -> None:
        offered = await self.list_entities()
        if entity not in offered:
            raise SourceError(
                f"entities not offered by the data source: {entity} (it offers: {', '.join(offered) or 'none'})"
            )

    async def _read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        collection = self._client[self._database][entity]
        field = self.cursor_field(entity)
        if not incremental:
            async for batch in self._batches(collection, entity, {}, {}, None):
                yield batch
            return
        include_missing = self._options.include_missing_cursor
        query = self._incremental_query(field, cursor if cursor and cursor.get("field") == field else None)
        if include_missing:
            query = {"$and": [query, {field: {"$ne": None}}]} if query else {field: {"$ne": None}}
        sort = {"sort": [(field, ASCENDING), ("_id", ASCENDING)]}
        read_without_field = 0
        async for batch in self._batches(collection, entity, query, sort, field):
            read_without_field += sum(1 for record in batch.records if record.get(field) is None)
            yield batch
        if include_missing:  # after the cursor pass: these batches save no cursor
            sort = {"sort": [("_id", ASCENDING)]}
            async for batch in self._batches(collection, entity, {field: None}, sort, None):
                yield batch
            return
        try:
            without_field = await collection.count_documents({field: None})
        except PyMongoError as exc:
            raise SourceError(f"cannot count {self._database}.{entity}: {exc}") from None
        yield Batch([], None, skipped_no_cursor=max(without_field - read_without_field, 0))

    def _incremental_query(self, field: str, cursor: Mapping[str, Any] | None) -> dict[str, Any]:
        """Past the cursor, or from (cursor value - lookback) inclusive when a lookback is set."""
        if cursor is None:
            return {}
        value, lookback = cursor.get("value"), self._options.lookback_seconds
        if lookback > 0 and isinstance(value, datetime):
            return {field: {"$gte": value - timedelta(seconds=lookback)}}
        if lookback > 0 and isinstance(value, Timestamp):
            return {field: {"$gte": Timestamp(max(value.time - int(lookback), 0), 0)}}
        return past_cursor_filter(field, value, cursor["id"])

    async def _batches(
        self, collection: Any, entity: str, query: dict[str, Any], sort: dict[str, Any], field: str | None
    ) -> AsyncGenerator[Batch, None]:
        """The query's documents in batches, each with the cursor after its last one when `field` is set."""
        try:
            records: list[Record] = []
            async for doc in collection.find(query, batch_size=self._batch_size, **sort):
                records.append(doc)
                if len(records) >= self._batch_size:
                    yield Batch(records, _cursor_after(field, records[-1]) if field else None)
                    records = []
            if records:
                yield Batch(records, _cursor_after(field, records[-1]) if field else None)
        except PyMongoError as exc:
            raise SourceError(f"cannot read {self._database}.{entity}: {exc}") from None

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


def past_cursor_filter(field: str, value: Any, last_id: Any) -> dict[str, Any]:
    """Documents strictly after (value, last_id) in (field, _id) order; null/missing sorts first.

    The `_id` tie-break is an `$expr`: a query's `$gt` only matches ids of the same BSON type, while an
    aggregation comparison follows the sort order across types (a `Decimal128` after an `int`, a
    string after a number), so equal-cursor documents with ids of mixed types are not skipped.
    """
    after_id = {"$expr": {"$gt": ["$_id", {"$literal": last_id}]}}
    if value is None:
        return {"$or": [{field: None, **after_id}, {field: {"$ne": None}}]}
    return {"$or": [{field: {"$gt": value}}, {field: value, **after_id}]}


def _cursor_after(field: str, doc: Record) -> dict[str, Any]:
    return {"field": field, "value": doc.get(field), "id": doc["_id"]}
