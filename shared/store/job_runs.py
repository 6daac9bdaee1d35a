"""The `job_runs` collection: one document per fire; (jobId, scheduledFor, trigger, attempt) is unique."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.clock import to_ms
from syncjobs.shared.errors import Conflict, NotFound
from syncjobs.shared.models import ACTIVE_STATUSES, NOT_EXECUTED_STATUSES, JobRun, RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document

MAX_PAGE = 100


def new_run_document(
    job: SyncJob | Document,
    *,
    trigger: str,
    scheduled_for: datetime,
    attempt: int = 1,
    status: RunStatus = RunStatus.PENDING,
    now: datetime,
) -> Document:
    """A run as first written; the fire key fields make a second insert of the same fire fail."""
    job_id = job["_id"] if isinstance(job, dict) else ObjectId(job.id)
    workspace_id = job["workspaceId"] if isinstance(job, dict) else ObjectId(job.workspace_id)
    return {
        "_id": ObjectId(),
        "jobId": job_id,
        "workspaceId": workspace_id,
        "trigger": trigger,
        "scheduledFor": to_ms(scheduled_for),
        "attempt": attempt,
        "status": status,
        "workerId": None,
        "fencingToken": None,
        "createdAt": to_ms(now),
        "startedAt": None,
        "finishedAt": None,
        "durationMs": None,
        "exitCode": None,
        "error": None,
        "stats": None,
        "details": None,
    }


MANUAL_RUNS_PER_MS = 100


async def create_manual_run(db: Database, job: SyncJob, now: datetime) -> JobRun:
    """A pending run that the active worker picks up (through the change stream or its poll).

    Two asks within one millisecond are two runs: the second takes the next free millisecond of the fire key.
    """
    for offset in range(MANUAL_RUNS_PER_MS):
        doc = new_run_document(job, trigger="manual", scheduled_for=now + timedelta(milliseconds=offset), now=now)
        try:
            await db.job_runs.insert_one(doc)
        except DuplicateKeyError:
            continue
        return from_document(JobRun, doc)
    raise Conflict("too many manual runs asked at once", [{"field": "id", "message": "try again"}])


async def get_run(db: Database, run_id: ObjectId) -> JobRun:
    doc = await db.job_runs.find_one({"_id": run_id})
    if doc is None:
        raise NotFound("run not found")
    return from_document(JobRun, doc)


async def list_runs(
    db: Database, job_id: ObjectId, limit: int = 20, before: ObjectId | None = None
) -> tuple[list[JobRun], str | None]:
    """Newest first; `before` is the `next` cursor of the previous page (a run id)."""
    limit = max(1, min(limit, MAX_PAGE))
    query: dict[str, Any] = {"jobId": job_id}
    if before is not None:
        anchor = await db.job_runs.find_one({"_id": before, "jobId": job_id}, {"createdAt": 1})
        if anchor is None:
            raise NotFound("no run matches the `before` cursor")
        query["$or"] = [
            {"createdAt": {"$lt": anchor["createdAt"]}},
            {"createdAt": anchor["createdAt"], "_id": {"$lt": before}},
        ]
    cursor = db.job_runs.find(query).sort([("createdAt", -1), ("_id", -1)]).limit(limit + 1)
    docs = await cursor.to_list()
    page = [from_document(JobRun, doc) for doc in docs[:limit]]
    return page, (page[-1].id if len(docs) > limit else None)


async def recent_runs(db: Database, job_id: ObjectId, count: int = 5) -> list[JobRun]:
    runs, _ = await list_runs(db, job_id, limit=count)
    return runs


async def is_running(db: Database, job_id: ObjectId) -> bool:
    return await db.job_runs.count_documents({"jobId": job_id, "status": RunStatus.RUNNING}, limit=1) > 0


async def record_progress(db: Database, run_id: ObjectId, progress: dict[str, Any]) -> None:
    """The executor's own progress note on its run; the worker owns status and result."""
    await db.job_runs.update_one({"_id": run_id}, {"$set": {"progress": progress}})


# --- worker operations ---
# Fenced writes: one lands only on a run that no later leader has touched (its fencingToken <= ours)
# and stamps our token on it, so a stale leader's late write cannot overwrite the new leader's.


def _fenced(run_id: ObjectId, token: int, **conditions: Any) -> Document:
    # "not above ours" also matches a run no leader has stamped; unlike an $or, it keeps the _id lookup
    # an index lookup on SecantusDB.
    return {"_id": run_id, "fencingToken": {"$not": {"$gt": token}}, **conditions}


async def insert_fire(
    db: Database,
    job: Document,
    *,
    trigger: str,
    scheduled_for: datetime,
    attempt: int,
    status: RunStatus,
    worker_id: str,
    token: int,
    now: datetime,
    due_at: datetime | None = None,
    error: str | None = None,
) -> Document | None:
    """Claim one fire: None when its (jobId, scheduledFor, trigger, attempt) is already taken."""
    doc = new_run_document(job, trigger=trigger, scheduled_for=scheduled_for, attempt=attempt, status=status, now=now)
    doc.update(workerId=worker_id, fencingToken=token, error=error, dueAt=to_ms(due_at) if due_at else None)
    if status in NOT_EXECUTED_STATUSES:  # a fire that never runs is final at once
        doc["finishedAt"] = to_ms(now)
    try:
        await db.job_runs.insert_one(doc)
    except DuplicateKeyError:
        return None
    return doc


async def start_run(db: Database, run_id: ObjectId, *, worker_id: str, token: int, now: datetime) -> bool:
    """pending -> running; False when the run is gone, already started, or fenced off."""
    result = await db.job_runs.update_one(
        _fenced(run_id, token, status=RunStatus.PENDING),
        {"$set": {"status": RunStatus.RUNNING, "startedAt": to_ms(now), "workerId": worker_id, "fencingToken": token}},
    )
    return result.modified_count == 1


async def finish_run(
    db: Database,
    run_id: ObjectId,
    *,
    token: int,
    status: RunStatus,
    now: datetime,
    fields: dict[str, Any] | None = None,
) -> bool:
    """pending/running -> a final status with its outcome fields; False when fenced off."""
    result = await db.job_runs.update_one(
        _fenced(run_id, token, status={"$in": sorted(ACTIVE_STATUSES)}),
        {"$set": {"status": status, "finishedAt": to_ms(now), "fencingToken": token, **(fields or {})}},
    )
    return result.modified_count == 1


async def pending_runs(db: Database, job_id: ObjectId | None = None) -> list[Document]:
    """Runs waiting for a worker (manual, retry, queued), oldest first."""
    query: Document = {"status": RunStatus.PENDING}
    if job_id is not None:
        query["jobId"] = job_id
    return await db.job_runs.find(query).sort([("createdAt", 1), ("_id", 1)]).to_list()


async def count_waiting(db: Database, job_id: ObjectId, besides: ObjectId) -> int:
    return await db.job_runs.count_documents({"jobId": job_id, "status": RunStatus.PENDING, "_id": {"$ne": besides}})


async def runs_of_earlier_leaders(db: Database, token: int) -> list[Document]:
    """Runs still `running` under a lower fencing token: their leader is gone, and so is its lock."""
    return await db.job_runs.find({"status": RunStatus.RUNNING, "fencingToken": {"$lt": token}}).to_list()
