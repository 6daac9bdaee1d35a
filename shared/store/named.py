"""What `data_sources` and `destinations` share: documents named uniquely within a workspace."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.clock import utc_now
from shared.errors import Conflict, NotFound
from shared.mongo import Database, Document

LIST_LIMIT = 1000


class NamedCollection:
    """Workspace-scoped CRUD for one collection; a foreign workspace's document is simply not found."""

    def __init__(self, collection: str, noun: str) -> None:
        self.collection = collection
        self.noun = noun

    def _not_found(self) -> NotFound:
        return NotFound(f"{self.noun} not found")

    def _conflict(self, name: str) -> Conflict:
        return Conflict(f"a {self.noun} named {name!r} already exists in this workspace",
                        [{"field": "name", "message": "already exists"}])

    async def create(self, db: Database, workspace_id: ObjectId, fields: dict[str, Any]) -> Document:
        now = utc_now()
        doc = {"_id": ObjectId(), "workspaceId": workspace_id, **fields, "createdAt": now, "updatedAt": now}
        try:
            await db[self.collection].insert_one(doc)
        except DuplicateKeyError:
            raise self._conflict(fields["name"]) from None
        return doc

    async def get(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> Document:
        doc = await db[self.collection].find_one({"_id": doc_id, "workspaceId": workspace_id})
        if doc is None:
            raise self._not_found()
        return doc

    async def get_unscoped(self, db: Database, doc_id: ObjectId) -> Document:
        """For the executor, which is handed ids by a run and belongs to no workspace."""
        doc = await db[self.collection].find_one({"_id": doc_id})
        if doc is None:
            raise self._not_found()
        return doc

    async def exists(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> bool:
        return await db[self.collection].count_documents({"_id": doc_id, "workspaceId": workspace_id}) > 0

    async def list(self, db: Database, workspace_id: ObjectId) -> list[Document]:
        cursor = db[self.collection].find({"workspaceId": workspace_id}).sort("name", 1).limit(LIST_LIMIT)
        return await cursor.to_list()

    async def replace(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId,
                      fields: dict[str, Any]) -> Document:
        try:
            doc = await db[self.collection].find_one_and_update(
                {"_id": doc_id, "workspaceId": workspace_id},
                {"$set": {**fields, "updatedAt": utc_now()}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise self._conflict(fields["name"]) from None
        if doc is None:
            raise self._not_found()
        return doc

    async def delete(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> None:
        result = await db[self.collection].delete_one({"_id": doc_id, "workspaceId": workspace_id})
        if result.deleted_count == 0:
            raise self._not_found()
