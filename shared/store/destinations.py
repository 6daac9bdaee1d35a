"""The `destinations` collection: the MongoDB databases jobs write into."""

from __future__ import annotations

from bson import ObjectId

from shared.errors import Conflict
from shared.models import Destination, DestinationInput, from_document, keep_secrets
from shared.mongo import Database, Document
from shared.store.named import NamedCollection

_destinations = NamedCollection("destinations", "destination")


async def create_destination(db: Database, workspace_id: ObjectId, body: DestinationInput) -> Destination:
    doc = await _destinations.create(db, workspace_id, body.model_dump(by_alias=True))
    return from_document(Destination, doc)  # type: ignore[no-any-return]


async def get_destination(db: Database, workspace_id: ObjectId, destination_id: ObjectId) -> Destination:
    doc = await _destinations.get(db, workspace_id, destination_id)
    return from_document(Destination, doc)  # type: ignore[no-any-return]


async def get_destination_raw(db: Database, destination_id: ObjectId) -> Document:
    """The document with its secrets, for the executor only; never serialise it."""
    return await _destinations.get_unscoped(db, destination_id)


async def destination_exists(db: Database, workspace_id: ObjectId, destination_id: ObjectId) -> bool:
    return await _destinations.exists(db, workspace_id, destination_id)


async def list_destinations(db: Database, workspace_id: ObjectId) -> list[Destination]:
    return [from_document(Destination, doc) for doc in await _destinations.list(db, workspace_id)]


async def replace_destination(db: Database, workspace_id: ObjectId, destination_id: ObjectId,
                              body: DestinationInput) -> Destination:
    stored = await _destinations.get(db, workspace_id, destination_id)
    fields = body.model_dump(by_alias=True)
    fields["config"] = keep_secrets(fields["config"], stored.get("config"))
    doc = await _destinations.replace(db, workspace_id, destination_id, fields)
    return from_document(Destination, doc)  # type: ignore[no-any-return]


async def delete_destination(db: Database, workspace_id: ObjectId, destination_id: ObjectId) -> None:
    if await db.syncjobs.count_documents({"workspaceId": workspace_id, "destinationDatabaseId": destination_id},
                                         limit=1):
        raise Conflict("the destination is used by a sync job", [{"field": "id", "message": "in use"}])
    await _destinations.delete(db, workspace_id, destination_id)
