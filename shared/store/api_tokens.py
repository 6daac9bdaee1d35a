"""The `api_tokens` collection: only the sha256 of a token is ever stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from bson import ObjectId
from syncjobs.shared.clock import utc_now
from syncjobs.shared.mongo import Database

TOKEN_PREFIX = "sjt_"


@dataclass(frozen=True)
class TokenGrant:
    """What a presented token may do: act in one workspace, or (admin) in any."""

    name: str
    workspace_id: ObjectId | None

    @property
    def is_admin(self) -> bool:
        return self.workspace_id is None

    def may_access(self, workspace_id: ObjectId) -> bool:
        return self.is_admin or self.workspace_id == workspace_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(db: Database, workspace_id: ObjectId | None, name: str) -> str:
    """Store a new token and return its value: the only time it is ever seen."""
    token = new_token_value()
    await store_token(db, token, workspace_id, name)
    return token


async def store_token(db: Database, token: str, workspace_id: ObjectId | None, name: str) -> None:
    """Register a given token value (idempotent: the admin token from the environment on every start)."""
    await db.api_tokens.update_one(
        {"_id": hash_token(token)},
        {"$set": {"workspaceId": workspace_id, "name": name}, "$setOnInsert": {"createdAt": utc_now()}},
        upsert=True,
    )


async def resolve_token(db: Database, token: str) -> TokenGrant | None:
    doc = await db.api_tokens.find_one({"_id": hash_token(token)})
    if doc is None:
        return None
    return TokenGrant(name=doc.get("name", ""), workspace_id=doc.get("workspaceId"))
