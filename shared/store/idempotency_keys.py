"""The `idempotency_keys` collection: per workspace, a client's `Idempotency-Key`, the hash of the request
it came with and the first answer, kept 24 h (a TTL index on `createdAt`).

A key is taken by inserting its document (`_id` = {workspaceId, key}): the unique `_id` decides which of two
concurrent requests goes on; the other sees it in flight (409) or answered (the same answer again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bson import ObjectId
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.clock import to_ms
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.secrets import open_sealed, seal

# A request whose key stays in flight this long died with its process: the next one with the key goes on.
ABANDONED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    etag: str | None


@dataclass(frozen=True)
class KeyState:
    """What a request finds under its key: `new` (it goes on), `in_flight`, `other_request` (the key was
    used with another request) or `answered` (with the first answer)."""

    state: Literal["new", "in_flight", "other_request", "answered"]
    answer: StoredAnswer | None = None


def _id(workspace_id: ObjectId, key: str) -> Document:
    return {"workspaceId": workspace_id, "key": key}


async def begin(db: Database, workspace_id: ObjectId, key: str, request_hash: str, now: datetime) -> KeyState:
    """Take the key for this request, or say why not."""
    doc_id = _id(workspace_id, key)
    fresh = {"_id": doc_id, "requestHash": request_hash, "state": "in_flight", "createdAt": to_ms(now)}
    try:
        await db.idempotency_keys.insert_one(fresh)
        return KeyState("new")
    except DuplicateKeyError:
        pass
    found = await db.idempotency_keys.find_one({"_id": doc_id})
    if found is None:  # expired or released between the insert and the read
        return await begin(db, workspace_id, key, request_hash, now)
    if found["state"] == "in_flight":
        if found["createdAt"] > to_ms(now - ABANDONED_AFTER):
            return KeyState("in_flight")
        taken = await db.idempotency_keys.update_one(
            {"_id": doc_id, "state": "in_flight", "createdAt": found["createdAt"]},
            {"$set": {"createdAt": to_ms(now), "requestHash": request_hash}},
        )
        return KeyState("new" if taken.modified_count == 1 else "in_flight")
    if found["requestHash"] != request_hash:
        return KeyState("other_request")
    answer = found["answer"]
    body = open_sealed(answer["body"]).encode()
    return KeyState("answered", StoredAnswer(answer["status"], body, answer.get("etag")))


async def answered(db: Database, workspace_id: ObjectId, key: str, answer: StoredAnswer) -> None:
    """Keep the first answer, sealed: a token's or a webhook's create answers its secret, once."""
    body = {"status": answer.status, "body": seal(answer.body.decode()), "etag": answer.etag}
    await db.idempotency_keys.update_one(
        {"_id": _id(workspace_id, key)}, {"$set": {"state": "answered", "answer": body}}
    )


async def release(db: Database, workspace_id: ObjectId, key: str) -> None:
    """The request failed: the key is free again (a refused request leaves nothing behind)."""
    await db.idempotency_keys.delete_one({"_id": _id(workspace_id, key), "state": "in_flight"})
