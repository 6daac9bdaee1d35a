"""Collections of another MongoDB database as a data source.

The incremental cursor is (cursorField, _id): reading sorts on both and resumes strictly after the pair,
so documents sharing a timestamp are neither skipped nor read twice.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import PyMongoError
from syncjobs.executor.sources import Batch, Record, SourceError
from syncjobs.shared.mongo import connect_for_one_run

DEFAULT_CURSOR_FIELD = "updatedAt"


class MongoSource:
    """Reads `config.database` at `config.uri`; each collection is an entity."""

    def __init__(self, config: Mapping[str, Any], *, batch_size: int, client: Any = None) -> None:
        """`client`, when given, is already connected to `config.uri` and belongs to the caller."""
        try:
            self._uri = str(config["uri"])
            self._database = str(config["database"])
        except KeyError as missing:
            raise SourceError(f"mongodb source config lacks {missing.args[0]!r}") from None
        self._entity_config: Mapping[str, Any] = config.get("entities") or {}
        self._batch_size = batch_size
        self._owns_client = client is None
        self._client = connect_for_one_run(self._uri) if client is None else client

    @property
    def client(self) -> Any:
        """The client, for the executor's check of what it connected to before any data moves."""
        return self._client

    def cursor_field(self, entity: str) -> str:
        return str((self._entity_config.get(entity) or {}).get("cursorField", DEFAULT_CURSOR_FIELD))

    async def list_entities(self) -> list[str]:
        try:
            names = await self._client[self._database].list_collection_names()
        except PyMongoError as exc:
            raise SourceError(f"cannot list collections of {self._database!r}: {exc}") from None
        return sorted(name for name in names if not name.startswith("system."))

    async def read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        collection = self._client[self._database][entity]
        field = self.cursor_field(entity)
        query: dict[str, Any] = {}
        find_kwargs: dict[str, Any] = {}
        if incremental:
            if cursor is not None and cursor.get("field") == field:
                query = past_cursor_filter(field, cursor.get("value"), cursor["id"])
            find_kwargs["sort"] = [(field, ASCENDING), ("_id", ASCENDING)]
        try:
            records: list[Record] = []
            async for doc in collection.find(query, batch_size=self._batch_size, **find_kwargs):
                records.append(doc)
                if len(records) >= self._batch_size:
                    yield Batch(records, _cursor_after(field, records[-1]) if incremental else None)
                    records = []
            if records:
                yield Batch(records, _cursor_after(field, records[-1]) if incremental else None)
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
