"""What `data_sources` and `destinations` share: connections named uniquely in a workspace, whose config
holds write-only secrets, and which jobs refer to by id."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from bson import ObjectId
from pydantic import BaseModel
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.clock import utc_now
from syncjobs.shared.errors import Conflict
from syncjobs.shared.models import OutputT, from_document
from syncjobs.shared.mongo import Database, Document, find_existing
from syncjobs.shared.paging import PageRequest, keyset_page
from syncjobs.shared.secret_fields import keep_secrets
from syncjobs.shared.secrets import open_config, seal_config
from syncjobs.shared.store.versioned import refuse, version_filter

InputT = TypeVar("InputT", bound=BaseModel)


class ConnectionStore(Generic[InputT, OutputT]):
    """Workspace-scoped CRUD for one connection collection: a foreign workspace's document is simply not
    found, and one still named by a job (`used_by` field of `syncjobs`) cannot be deleted."""

    def __init__(self, collection: str, noun: str, document: type[OutputT], *, used_by: str) -> None:
        self.collection = collection
        self.noun = noun
        self.document = document
        self.used_by = used_by

    def _out(self, doc: Document) -> OutputT:
        return from_document(self.document, doc)

    @property
    def _missing(self) -> str:
        return f"{self.noun} not found"

    def _conflict(self, name: str) -> Conflict:
        return Conflict(
            f"a {self.noun} named {name!r} already exists in this workspace",
            [{"field": "name", "message": "already exists"}],
        )

    async def _stored(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> Document:
        return await find_existing(db[self.collection], {"_id": doc_id, "workspaceId": workspace_id}, self._missing)

    async def create(
        self, db: Database, workspace_id: ObjectId, body: InputT, *, marks: dict[str, Any] | None = None
    ) -> OutputT:
        """Store a new connection, its secrets encrypted; `marks` are extra fields (who allowed a raw argv)."""
        now = utc_now()
        fields: dict[str, Any] = body.model_dump(by_alias=True)
        fields["config"] = seal_config(fields["config"])
        doc = {
            "_id": ObjectId(),
            "workspaceId": workspace_id,
            **fields,
            **(marks or {}),
            "version": 1,
            "createdAt": now,
            "updatedAt": now,
        }
        try:
            await db[self.collection].insert_one(doc)
        except DuplicateKeyError:
            raise self._conflict(fields["name"]) from None
        return self._out(doc)

    async def get(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> OutputT:
        return self._out(await self._stored(db, workspace_id, doc_id))

    async def stored_config(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> Document:
        """The stored config, secrets decrypted: what a PUT's redaction markers stand for, to check it."""
        config: Document = open_config((await self._stored(db, workspace_id, doc_id)).get("config") or {})
        return config

    async def get_sealed(self, db: Database, doc_id: ObjectId) -> Document:
        """The document as stored, its secrets sealed: what a worker hands to the executor it starts."""
        return await find_existing(db[self.collection], {"_id": doc_id}, self._missing)

    async def exists(self, db: Database, workspace_id: ObjectId, doc_id: ObjectId) -> bool:
        return await db[self.collection].count_documents({"_id": doc_id, "workspaceId": workspace_id}) > 0

    async def list(self, db: Database, workspace_id: ObjectId, page: PageRequest) -> tuple[list[OutputT], str | None]:
        """A page by name (on the unique (workspaceId, name) index)."""
        found = await keyset_page(db, self.collection, {"workspaceId": workspace_id}, "name", page)
        return [self._out(doc) for doc in found.docs], found.next

    async def replace(
        self,
        db: Database,
        workspace_id: ObjectId,
        doc_id: ObjectId,
        body: InputT,
        *,
        marks: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> OutputT:
        """Replace name, kind and config (only at `expected_version`, when given); a redaction marker sent
        back keeps the stored secret."""
        scope = {"_id": doc_id, "workspaceId": workspace_id}
        stored = await self._stored(db, workspace_id, doc_id)
        fields: dict[str, Any] = body.model_dump(by_alias=True)
        fields["config"] = seal_config(keep_secrets(fields["config"], open_config(stored.get("config"))))
        try:
            doc = await db[self.collection].find_one_and_update(
                {**scope, **version_filter(expected_version)},
                [  # a pipeline, so a document stored before versions (version 1) goes to 2; values as literals
                    {
                        "$set": {
                            k: {"$literal": v} for k, v in {**fields, **(marks or {}), "updatedAt": utc_now()}.items()
                        }
                    },
                    {"$set": {"version": {"$add": [{"$ifNull": ["$version", 1]}, 1]}}},
                ],
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise self._conflict(fields["name"]) from None
        if doc is None:
            await refuse(db, self.collection, scope, self.noun, expected_version)
        return self._out(doc)

    async def delete(
        self, db: Database, workspace_id: ObjectId, doc_id: ObjectId, expected_version: int | None = None
    ) -> None:
        scope = {"_id": doc_id, "workspaceId": workspace_id}
        if await db.syncjobs.count_documents({"workspaceId": workspace_id, self.used_by: doc_id}, limit=1):
            raise Conflict(f"the {self.noun} is used by a sync job", [{"field": "id", "message": "in use"}])
        result = await db[self.collection].delete_one({**scope, **version_filter(expected_version)})
        if result.deleted_count == 0:
            await refuse(db, self.collection, scope, self.noun, expected_version)
