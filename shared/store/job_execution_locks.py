"""The `job_execution_locks` collection, the per-job lock: at most one run of a job at a time (unless `allow`).

The lease pattern again, keyed by job id: one atomic find_one_and_update that matches only a lapsed
lock, one taken under an earlier leadership (lower fencing token: its leader is gone), or our own run's
lock (a renewal). A duplicate-key error on the upsert means another run holds it.
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.store.worker_locks import LAPSED

# Beyond the job's timeout: time to kill the executor and record its outcome.
LOCK_MARGIN_SECONDS = 60


async def acquire(db: Database, job_id: object, run_id: object, *, owner: str, token: int, seconds: float) -> bool:
    """Take (or extend, for the same run) the job's lock for `seconds`; False if another run holds it."""
    takeable = {
        "$or": [
            LAPSED,
            {"$lt": ["$fencingToken", token]},
            {"$eq": ["$runId", run_id]},
        ]
    }
    update = [
        {
            "$set": {
                "runId": {"$literal": run_id},
                "owner": {"$literal": owner},
                "fencingToken": token,
                "lockedUntil": {
                    "$dateAdd": {"startDate": "$$NOW", "unit": "millisecond", "amount": int(seconds * 1000)}
                },
            }
        }
    ]
    try:
        await db.job_execution_locks.find_one_and_update({"_id": job_id, "$expr": takeable}, update, upsert=True)
    except DuplicateKeyError:
        return False
    return True


async def release(db: Database, job_id: object, run_id: object) -> None:
    """Free the lock if our run still holds it (a new leader may have taken it over)."""
    await db.job_execution_locks.delete_one({"_id": job_id, "runId": run_id})


async def holder(db: Database, job_id: object) -> Document | None:
    """The lock document of the job's running run, None when no run holds it."""
    return await db.job_execution_locks.find_one({"_id": job_id})
