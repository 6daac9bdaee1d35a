"""The `worker_locks` collection: the scheduler lease document, written and read.

Acquire and renew are one atomic find_one_and_update whose filter only matches a lapsed lease or our own;
lease arithmetic runs on the server's clock ($$NOW), so worker clocks may drift. How long to trust a lease,
when to renew it and when to step down is the worker's business (`worker/lease.py`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.mongo import Database, Document, durable, majority_read

LEASE_ID = "scheduler"

# lockedUntil <= the server's now, compared as epoch milliseconds: a plain {"lockedUntil": {"$lt": "$$NOW"}}
# compares with the string "$$NOW", and SecantusDB mis-compares a date field with $$NOW inside $expr.
LAPSED = {"$lte": [{"$toLong": "$lockedUntil"}, {"$toLong": "$$NOW"}]}
LIVE = {"$gt": [{"$toLong": "$lockedUntil"}, {"$toLong": "$$NOW"}]}


def _held_by(owner: str, instance: str) -> dict[str, Any]:
    # The instance (one per process) keeps two replicas misconfigured with one SYNCJOBS_WORKER_ID from
    # both renewing the same lease.
    return {"$and": [{"$eq": ["$owner", owner]}, {"$eq": ["$instance", instance]}]}


async def take_or_renew(
    db: Database, lease_id: str, *, owner: str, instance: str, ttl_seconds: float
) -> Document | None:
    """Take the lease if it lapsed, or renew it if ours: the lease document when we hold it, else None."""
    # A renewal (ours and not lapsed) keeps the token; any new leadership term gets the next one,
    # even for the same owner after a lapse: its old term's runs and locks then count as lost.
    owned = {"$and": [_held_by(owner, instance), LIVE]}
    ttl_ms = int(ttl_seconds * 1000)
    update = [
        {
            "$set": {
                "fencingToken": {"$cond": [owned, "$fencingToken", {"$add": [{"$ifNull": ["$fencingToken", 0]}, 1]}]},
                "acquiredAt": {"$cond": [owned, "$acquiredAt", "$$NOW"]},
                "owner": owner,
                "instance": instance,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "lockedUntil": {"$dateAdd": {"startDate": "$$NOW", "unit": "millisecond", "amount": ttl_ms}},
                "heartbeatAt": "$$NOW",
            }
        }
    ]
    try:
        doc = await durable(db.worker_locks).find_one_and_update(
            {"_id": lease_id, "$expr": {"$or": [LAPSED, _held_by(owner, instance)]}},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:  # another owner holds it: the upsert collided with its document
        return None
    if doc is None or doc.get("instance") != instance:
        return None
    return doc


async def release(db: Database, lease_id: str, *, owner: str, instance: str) -> None:
    """Let a standby take over at once: lockedUntil = now, only if the lease is still ours."""
    await durable(db.worker_locks).update_one(
        {"_id": lease_id, "owner": owner, "instance": instance},
        [{"$set": {"lockedUntil": "$$NOW", "heartbeatAt": "$$NOW"}}],
    )


async def current(db: Database, lease_id: str = LEASE_ID) -> Document | None:
    """The lease document as stored: who leads, with which token, until when."""
    return await majority_read(db.worker_locks).find_one({"_id": lease_id})
