"""What a client reads and asks of `job_runs` through the API: one run, a job's runs filtered and paged,
and cancelling a run. The worker's own operations on the collection are in `job_runs`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from syncjobs.shared.clock import to_ms
from syncjobs.shared.errors import Conflict, NotFound
from syncjobs.shared.models import ACTIVE_STATUSES, NOT_EXECUTED_STATUSES, JobRun, RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document, find_existing
from syncjobs.shared.paging import PageRequest
from syncjobs.shared.store.job_runs import insert_fires, new_run_document


@dataclass(frozen=True)
class RunFilter:
    """The run list's filters; `scheduled_from` / `scheduled_to` bound `scheduledFor`, half-open."""

    statuses: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    scheduled_from: datetime | None = None
    scheduled_to: datetime | None = None

    def query(self) -> Document:
        query: Document = {}
        if self.statuses:
            query["status"] = {"$in": list(self.statuses)}
        if self.triggers:
            query["trigger"] = {"$in": list(self.triggers)}
        bounds: Document = {}
        if self.scheduled_from is not None:
            bounds["$gte"] = to_ms(self.scheduled_from)
        if self.scheduled_to is not None:
            bounds["$lt"] = to_ms(self.scheduled_to)
        if bounds:
            query["scheduledFor"] = bounds
        return query


@dataclass(frozen=True)
class RunPage:
    runs: list[JobRun] = field(default_factory=list)
    next: str | None = None


async def get_run(db: Database, workspace_id: ObjectId, run_id: ObjectId, job_id: ObjectId | None = None) -> JobRun:
    """A run of this workspace (and of this job, when given); another workspace's run is not found."""
    query: Document = {"_id": run_id, "workspaceId": workspace_id}
    if job_id is not None:
        query["jobId"] = job_id
    return from_document(JobRun, await find_existing(db.job_runs, query, "run not found"))


async def list_runs(db: Database, job_id: ObjectId, page: PageRequest, filters: RunFilter | None = None) -> RunPage:
    """Newest first (by createdAt, then id); the cursor is the id of the previous page's last run."""
    query: dict[str, Any] = {"jobId": job_id, **(filters or RunFilter()).query()}
    wanted = page.limit + 1
    docs: list[Document] = []
    if page.after is not None:
        anchor_id = ObjectId(page.after) if ObjectId.is_valid(page.after) else None
        anchor = await db.job_runs.find_one({"_id": anchor_id, "jobId": job_id}, {"createdAt": 1})
        if anchor_id is None or anchor is None:
            raise NotFound("no run matches the `after` cursor")
        # What follows the anchor: the runs of its millisecond with a lower id, then the older runs. Two reads
        # rather than one `$or`, for which SecantusDB scans the whole collection (bench/RESULTS.md).
        same_ms = await db.job_runs.find({**query, "createdAt": anchor["createdAt"]}).sort("_id", -1).to_list()
        docs = [doc for doc in same_ms if doc["_id"] < anchor_id][:wanted]
        query["createdAt"] = {"$lt": anchor["createdAt"]}
    if len(docs) < wanted:
        cursor = db.job_runs.find(query).sort([("createdAt", -1), ("_id", -1)]).limit(wanted - len(docs))
        docs += await cursor.to_list()
    runs = [from_document(JobRun, doc) for doc in docs[: page.limit]]
    return RunPage(runs, runs[-1].id if len(docs) > page.limit else None)


async def recent_runs(db: Database, job_id: ObjectId, count: int = 5) -> list[JobRun]:
    return (await list_runs(db, job_id, PageRequest(limit=count))).runs


async def runs_of_fires(db: Database, job_id: ObjectId, first: datetime, last: datetime) -> list[Document]:
    """The runs that stand for the job's fires in [first, last] (manual runs are no fire), oldest first."""
    query = {
        "jobId": job_id,
        "scheduledFor": {"$gte": to_ms(first), "$lte": to_ms(last)},
        "trigger": {"$in": ["schedule", "retry", "backfill"]},
    }
    fields = {"scheduledFor": 1, "status": 1, "error": 1, "createdAt": 1}
    return await db.job_runs.find(query, fields).sort([("createdAt", 1), ("_id", 1)]).to_list()


async def cancel_run(db: Database, workspace_id: ObjectId, run_id: ObjectId, now: datetime) -> JobRun:
    """A pending run becomes `cancelled` in one conditional write; a running one gets `cancelRequested`
    (the replica running it kills its executor and records `cancelled`); an ended run is a 409."""
    scope: Document = {"_id": run_id, "workspaceId": workspace_id}
    cancelled = {"status": RunStatus.CANCELLED, "finishedAt": to_ms(now), "error": "cancelled on request"}
    pending = await db.job_runs.update_one({**scope, "status": RunStatus.PENDING}, {"$set": cancelled})
    if pending.modified_count == 0:
        await db.job_runs.update_one(
            {**scope, "status": RunStatus.RUNNING},
            {"$set": {"cancelRequested": True}},
        )
    run = await get_run(db, workspace_id, run_id)
    if pending.modified_count == 0 and run.status not in ACTIVE_STATUSES:
        raise Conflict(
            f"the run has already ended ({run.status})", [{"field": "status", "message": f"already {run.status}"}]
        )
    return run


@dataclass(frozen=True)
class Backfilled:
    created: int
    skipped: int


async def backfill(db: Database, job: SyncJob, fires: list[datetime], *, exclusive: bool, now: datetime) -> Backfilled:
    """Pending `backfill` runs for the scheduled fires given, but not for one that already ran (or runs):
    its scheduled run (unless it was only skipped or missed) or an earlier backfill of it (its fire key,
    (jobId, scheduledFor, "backfill", 1), is taken). `createdAt` goes up a millisecond per fire, so claimers,
    which take runs in creation order, take them oldest first."""
    if not fires:
        return Backfilled(0, 0)
    ran = {
        doc["scheduledFor"]
        for doc in await db.job_runs.find(
            {
                "jobId": ObjectId(job.id),
                "scheduledFor": {"$in": [to_ms(fire) for fire in fires]},
                "trigger": "schedule",
                "status": {"$nin": sorted(NOT_EXECUTED_STATUSES)},
            },
            {"scheduledFor": 1},
        ).to_list()
    }
    docs = []
    for index, fire in enumerate(fire for fire in fires if to_ms(fire) not in ran):
        doc = new_run_document(job, trigger="backfill", scheduled_for=fire, now=now + timedelta(milliseconds=index))
        doc["exclusive"] = exclusive
        docs.append(doc)
    created = await insert_fires(db, docs)
    return Backfilled(len(created), len(fires) - len(created))
