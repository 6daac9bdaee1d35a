"""The `api_tokens` collection: only the sha256 of a token is ever stored.

Each request reads its token's document afresh (no cache): a token deleted (revoked) or past its
`expiresAt` is refused by every api replica from the next request on. Admin tokens (no workspace) are
tokens like the others, listed and revoked by an admin; a revoked admin token keeps its document with
`revokedAt`, so an api started again with that value in `SYNCJOBS_ADMIN_TOKEN` does not bring it back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypedDict, Unpack

from bson import ObjectId
from pymongo import ReturnDocument
from syncjobs.shared.clock import to_ms, utc_now
from syncjobs.shared.errors import NotFound
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.paging import PageRequest, keyset_page

TOKEN_PREFIX = "sjt_"
# lastUsedAt is written at most this often per token, so busy clients do not turn reads into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)

TokenScope = Literal["full", "read"]


@dataclass(frozen=True)
class TokenGrant:
    """What a presented token may do: act in one workspace, or (admin) in any; `read` tokens only read."""

    name: str
    workspace_id: ObjectId | None
    scope: TokenScope = "full"
    token_hash: str = ""
    last_used_at: datetime | None = None
    token_id: ObjectId | None = None  # the id a client sees (never the hash): what a change log names

    @property
    def is_admin(self) -> bool:
        return self.workspace_id is None

    @property
    def read_only(self) -> bool:
        return self.scope == "read"

    def may_access(self, workspace_id: ObjectId) -> bool:
        return self.is_admin or self.workspace_id == workspace_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenTerms(TypedDict, total=False):
    """What a new token may do and until when (store_token's defaults: `full`, never expires)."""

    scope: TokenScope
    expires_at: datetime | None


async def create_token(db: Database, workspace_id: ObjectId | None, name: str, **terms: Unpack[TokenTerms]) -> str:
    """Store a new token and return its value: the only time it is ever seen."""
    token = new_token_value()
    await store_token(db, token, workspace_id, name, **terms)
    return token


async def store_token(
    db: Database,
    token: str,
    workspace_id: ObjectId | None,
    name: str,
    *,
    scope: TokenScope = "full",
    expires_at: datetime | None = None,
) -> Document:
    """Register a given token value (idempotent: the admin token from the environment on every start)."""
    fields = {"workspaceId": workspace_id, "name": name, "scope": scope, "expiresAt": expires_at and to_ms(expires_at)}
    doc = await db.api_tokens.find_one_and_update(
        {"_id": hash_token(token)},
        {"$set": fields, "$setOnInsert": {"tokenId": ObjectId(), "createdAt": to_ms(utc_now())}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return doc or {}


async def resolve_token(db: Database, token: str, now: datetime | None = None) -> TokenGrant | None:
    """The grant of a presented token; None for an unknown, revoked or expired one."""
    now = now or utc_now()
    doc = await db.api_tokens.find_one({"_id": hash_token(token)})
    if doc is None or doc.get("revokedAt") is not None:
        return None
    if doc.get("expiresAt") is not None and doc["expiresAt"] <= now:
        return None
    scope: TokenScope = "read" if doc.get("scope") == "read" else "full"
    return TokenGrant(
        name=doc.get("name", ""),
        workspace_id=doc.get("workspaceId"),
        scope=scope,
        token_hash=doc["_id"],
        last_used_at=doc.get("lastUsedAt"),
        token_id=doc.get("tokenId"),
    )


async def record_use(db: Database, grant: TokenGrant, now: datetime) -> None:
    """Note a successful use of the token (a refused request writes nothing), at most once a minute."""
    if grant.last_used_at is None or now - grant.last_used_at >= LAST_USED_RESOLUTION:
        await db.api_tokens.update_one({"_id": grant.token_hash}, {"$set": {"lastUsedAt": to_ms(now)}})


async def list_tokens(db: Database, workspace_id: ObjectId, page: PageRequest) -> tuple[list[Document], str | None]:
    """The workspace's tokens (hashes left out), oldest first by `tokenId`; one stored before tokens had
    ids gets one first."""
    for doc in await db.api_tokens.find({"workspaceId": workspace_id, "tokenId": None}, {"_id": 1}).to_list():
        await db.api_tokens.update_one({"_id": doc["_id"], "tokenId": None}, {"$set": {"tokenId": ObjectId()}})
    found = await keyset_page(db, "api_tokens", {"workspaceId": workspace_id}, "tokenId", page)
    return [{k: v for k, v in doc.items() if k != "_id"} for doc in found.docs], found.next


async def revoke_token(db: Database, workspace_id: ObjectId, token_id: ObjectId) -> None:
    """Delete the token: the next request that presents it is a 401, on every replica."""
    result = await db.api_tokens.delete_one({"tokenId": token_id, "workspaceId": workspace_id})
    if result.deleted_count == 0:
        raise NotFound("token not found")


ENVIRONMENT_ADMIN_NAME = "admin (SYNCJOBS_ADMIN_TOKEN)"
_ACTIVE_ADMIN = {"workspaceId": None, "revokedAt": None}
ADMIN_TOKENS_LIMIT = 1000  # admin tokens are few: one list, no pages


async def register_environment_admin_token(db: Database, token: str) -> bool:
    """Make `SYNCJOBS_ADMIN_TOKEN` an admin token and retire any earlier one from the environment; False
    (and nothing changed) when this value was revoked, which a restart must not undo."""
    digest = hash_token(token)
    existing = await db.api_tokens.find_one({"_id": digest}, {"revokedAt": 1})
    if existing is not None and existing.get("revokedAt") is not None:
        return False
    await store_token(db, token, None, ENVIRONMENT_ADMIN_NAME)
    await db.api_tokens.update_one({"_id": digest}, {"$set": {"fromEnvironment": True}})
    await db.api_tokens.update_many(
        {**_ACTIVE_ADMIN, "name": ENVIRONMENT_ADMIN_NAME, "_id": {"$ne": digest}},
        {"$set": {"revokedAt": to_ms(utc_now())}},
    )
    return True


async def list_admin_tokens(db: Database) -> list[Document]:
    """The admin tokens still in force (hashes left out), oldest first."""
    cursor = db.api_tokens.find(_ACTIVE_ADMIN).sort("createdAt", 1).limit(ADMIN_TOKENS_LIMIT)
    return [{k: v for k, v in doc.items() if k != "_id"} for doc in await cursor.to_list()]


async def create_admin_token(db: Database, name: str, *, expires_at: datetime | None = None) -> Document:
    """A new admin token's document, with its value under `token` (the only time it is seen)."""
    token = new_token_value()
    doc = await store_token(db, token, None, name, expires_at=expires_at)
    return {**{k: v for k, v in doc.items() if k != "_id"}, "token": token}


async def revoke_admin_token(db: Database, token_id: ObjectId) -> None:
    """Refuse the admin token from the next request on, on every replica (its document stays, revoked)."""
    result = await db.api_tokens.update_one(
        {**_ACTIVE_ADMIN, "tokenId": token_id}, {"$set": {"revokedAt": to_ms(utc_now())}}
    )
    if result.matched_count == 0:
        raise NotFound("admin token not found")


async def rotate_admin_tokens(db: Database, name: str) -> str:
    """A new admin token; every other admin token (the environment's included) is revoked."""
    created = await create_admin_token(db, name)
    await db.api_tokens.update_many(
        {**_ACTIVE_ADMIN, "tokenId": {"$ne": created["tokenId"]}}, {"$set": {"revokedAt": to_ms(utc_now())}}
    )
    return str(created["token"])
