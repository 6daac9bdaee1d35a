"""The `workspaces` collection: the tenant every other document belongs to."""

from __future__ import annotations

from bson import ObjectId
from syncjobs.shared.clock import utc_now
from syncjobs.shared.models import Workspace, from_document
from syncjobs.shared.mongo import Database, find_existing
from syncjobs.shared.paging import PageRequest, keyset_page


async def create_workspace(db: Database, name: str) -> Workspace:
    doc = {"_id": ObjectId(), "name": name, "createdAt": utc_now()}
    await db.workspaces.insert_one(doc)
    return from_document(Workspace, doc)


async def get_workspace(db: Database, workspace_id: ObjectId) -> Workspace:
    return from_document(Workspace, await find_existing(db.workspaces, {"_id": workspace_id}, "workspace not found"))


async def list_workspaces(db: Database, page: PageRequest) -> tuple[list[Workspace], str | None]:
    """Oldest first, by id (time-ordered)."""
    found = await keyset_page(db, "workspaces", {}, "_id", page)
    return [from_document(Workspace, doc) for doc in found.docs], found.next


async def find_workspace_by_name(db: Database, name: str) -> Workspace | None:
    doc = await db.workspaces.find_one({"name": name}, sort=[("createdAt", 1)])
    return from_document(Workspace, doc) if doc else None


async def ensure_workspace(db: Database, name: str) -> tuple[Workspace, bool]:
    """The named workspace, created on first start; returns (workspace, created)."""
    existing = await find_workspace_by_name(db, name)
    if existing is not None:
        return existing, False
    return await create_workspace(db, name), True


async def several_workspaces(db: Database) -> bool:
    """More than one workspace exists: the worker then keeps a slot free for a tenant's later run."""
    return await db.workspaces.count_documents({}, limit=2) > 1
