"""The `data_sources` collection: where a job reads from (mongodb, http or a Singer tap command)."""

from __future__ import annotations

from bson import ObjectId

from shared.errors import Conflict
from shared.models import DataSource, DataSourceInput, from_document, keep_secrets
from shared.mongo import Database, Document
from shared.store.named import NamedCollection

_sources = NamedCollection("data_sources", "data source")


async def create_source(db: Database, workspace_id: ObjectId, body: DataSourceInput) -> DataSource:
    doc = await _sources.create(db, workspace_id, body.model_dump(by_alias=True))
    return from_document(DataSource, doc)  # type: ignore[no-any-return]


async def get_source(db: Database, workspace_id: ObjectId, source_id: ObjectId) -> DataSource:
    return from_document(DataSource, await _sources.get(db, workspace_id, source_id))  # type: ignore[no-any-return]


async def get_source_raw(db: Database, source_id: ObjectId) -> Document:
    """The document with its secrets, for the executor only; never serialise it."""
    return await _sources.get_unscoped(db, source_id)


async def source_exists(db: Database, workspace_id: ObjectId, source_id: ObjectId) -> bool:
    return await _sources.exists(db, workspace_id, source_id)


async def list_sources(db: Database, workspace_id: ObjectId) -> list[DataSource]:
    return [from_document(DataSource, doc) for doc in await _sources.list(db, workspace_id)]


async def replace_source(db: Database, workspace_id: ObjectId, source_id: ObjectId,
                         body: DataSourceInput) -> DataSource:
    stored = await _sources.get(db, workspace_id, source_id)
    fields = body.model_dump(by_alias=True)
    fields["config"] = keep_secrets(fields["config"], stored.get("config"))
    return from_document(DataSource, await _sources.replace(db, workspace_id, source_id, fields))  # type: ignore[no-any-return]


async def delete_source(db: Database, workspace_id: ObjectId, source_id: ObjectId) -> None:
    if await db.syncjobs.count_documents({"workspaceId": workspace_id, "dataSourceId": source_id}, limit=1):
        raise Conflict("the data source is used by a sync job", [{"field": "id", "message": "in use"}])
    await _sources.delete(db, workspace_id, source_id)
