"""The `job_runs` collection: one document per fire; (jobId, scheduledFor, trigger, attempt) is unique."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError
from syncjobs.shared.clock import to_ms
from syncjobs.shared.errors import Conflict
from syncjobs.shared.models import NOT_EXECUTED_STATUSES, JobRun, RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document, durable, find_existing, majority_read

DUPLICATE_KEY = 11000


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
    """A pending run that some worker replica claims (through the change stream or its poll).

    Two asks within one millisecond are two runs: the second takes the next free millisecond of the fire key.
    """
    for offset in range(MANUAL_RUNS_PER_MS):
        doc = new_run_document(job, trigger="manual", scheduled_for=now + timedelta(milliseconds=offset), now=now)
        doc["exclusive"] = job.overlap != "allow"
        try:
            await durable(db.job_runs).insert_one(doc)
        except DuplicateKeyError:
            continue
        return from_document(JobRun, doc)
    raise Conflict("too many manual runs asked at once", [{"field": "id", "message": "try again"}])


async def record_state_reset(db: Database, job: SyncJob, now: datetime, cleared: int) -> JobRun:
    """The run history's note that an operator reset the job's sync state (`cleared` cursors and tokens)."""
    doc = new_run_document(job, trigger="reset", scheduled_for=now, status=RunStatus.RESET, now=now)
    doc |= {"finishedAt": to_ms(now), "stats": {"statesCleared": cleared}}
    await db.job_runs.insert_one(doc)
    return from_document(JobRun, doc)


async def get_run(db: Database, run_id: ObjectId) -> JobRun:
    return from_document(JobRun, await find_existing(db.job_runs, {"_id": run_id}, "run not found"))


async def is_running(db: Database, job_id: ObjectId) -> bool:
    return await db.job_runs.count_documents({"jobId": job_id, "status": RunStatus.RUNNING}, limit=1) > 0


async def record_progress(db: Database, run_id: ObjectId, progress: dict[str, Any]) -> None:
    """The executor's progress note on its run, written by its parent over the run channel; the worker owns
    status and result."""
    await db.job_runs.update_one({"_id": run_id}, {"$set": {"progress": progress}})


# --- worker operations ---
# Fenced writes: one lands only on a run that no later leader has touched (its fencingToken <= ours)
# and stamps our token on it, so a stale leader's late write cannot overwrite the new leader's.


def _fenced(run_id: ObjectId, token: int, **conditions: Any) -> Document:
    # "not above ours" also matches a run no leader has stamped; unlike an $or, it keeps the _id lookup
    # an index lookup on SecantusDB.
    return {"_id": run_id, "fencingToken": {"$not": {"$gt": token}}, **conditions}


def fire_document(
    job: SyncJob,
    *,
    trigger: str,
    scheduled_for: datetime,
    attempt: int,
    status: RunStatus,
    worker_id: str,
    token: int | None,
    now: datetime,
    due_at: datetime | None = None,
    error: str | None = None,
) -> Document:
    """A fire as the worker writes it: `exclusive` (the job's overlap policy at fire time) puts it under the
    one-running-run-per-job index once claimed."""
    doc = new_run_document(job, trigger=trigger, scheduled_for=scheduled_for, attempt=attempt, status=status, now=now)
    doc.update(
        workerId=worker_id,
        fencingToken=token,
        error=error,
        dueAt=to_ms(due_at) if due_at else None,
        exclusive=job.overlap != "allow",
    )
    if status in NOT_EXECUTED_STATUSES:  # a fire that never runs is final at once
        doc["finishedAt"] = to_ms(now)
    return doc


async def insert_fire(db: Database, job: SyncJob | Document, **fire: Any) -> Document | None:
    """Claim one fire (`fire` as for `fire_document`): None when its (jobId, scheduledFor, trigger,
    attempt) is already taken."""
    doc = fire_document(job if isinstance(job, SyncJob) else from_document(SyncJob, job), **fire)
    try:
        await durable(db.job_runs).insert_one(doc)
    except DuplicateKeyError:
        return None
    return doc


async def insert_fires(db: Database, docs: list[Document]) -> list[Document]:
    """Write many fires in one unordered insert_many; the ones whose fire key was already taken are left
    out of the answer (their duplicate-key errors are the exactly-once guarantee, not failures)."""
    if not docs:
        return []
    try:
        await durable(db.job_runs).insert_many(docs, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        taken = {e["index"] for e in errors}
        return [doc for index, doc in enumerate(docs) if index not in taken]
    return docs


async def mark_lost(db: Database, run: Document, *, token: int, now: datetime, duration_ms: int | None) -> bool:
    """The leader fails a run whose lease lapsed (`worker lost`), only if no heartbeat landed since it
    looked (its leaseUntil is still the one seen)."""
    query = _fenced(run["_id"], token, status=RunStatus.RUNNING, leaseUntil=run.get("leaseUntil"))
    fields = {"error": "worker lost", "durationMs": duration_ms}
    result = await durable(db.job_runs).update_one(
        query, {"$set": {"status": RunStatus.FAILED, "finishedAt": to_ms(now), "fencingToken": token, **fields}}
    )
    return result.modified_count == 1


async def runs_with_lapsed_lease(db: Database, server_now: datetime) -> list[Document]:
    """Running runs whose claimer stopped renewing their lease (or that never had one: an older worker's)."""
    running = await majority_read(db.job_runs).find({"status": RunStatus.RUNNING}).to_list()
    return [run for run in running if run.get("leaseUntil") is None or run["leaseUntil"] <= server_now]


async def server_time(db: Database) -> datetime:
    """The server's clock, which run leases are measured on."""
    local_time: datetime = (await db.command("hello"))["localTime"]
    return local_time if local_time.tzinfo else local_time.replace(tzinfo=UTC)


# --- claimers: any replica runs the pending runs it claims ---
# A claimer is not the leader: its writes on its own run are guarded by the run's lease (`claimedBy`, the
# claiming process, and `status: running`) rather than by a fencing token. The leader marks a run whose
# lease lapsed `failed: worker lost`; after that none of the claimer's writes on it lands.


@dataclass(frozen=True)
class Claimant:
    """Who claims: the worker id shown on runs, the process instance that guards them, the lease length."""

    worker_id: str
    instance: str
    lease_seconds: float

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)


def _lease_until(claimant: Claimant) -> Document:
    return {"$dateAdd": {"startDate": "$$NOW", "unit": "millisecond", "amount": claimant.lease_ms}}


async def claim_run(db: Database, claimant: Claimant, pending: Document, *, now: datetime) -> Document | None:
    """pending -> running in one atomic write by `_id`; None when the run is not pending (another replica
    claimed it, or it was skipped) or not yet due. `pending` is the run as the claimer knows it (at least
    PENDING_RUN_FIELDS, which a pending run never changes); the run as claimed is that with the claim's
    fields, not read back: an update answers several times faster than a findAndModify (bench/RESULTS.md,
    "figures behind the code").

    The write is also the job's execution lock: the unique `job_running` index admits one running
    exclusive run per job, so a job already running anywhere raises DuplicateKeyError."""
    batch = await claim_runs(db, claimant, [pending], now=now, token=ObjectId())
    if batch.locked_job is not None:
        raise DuplicateKeyError(f"job {batch.locked_job} has a running run", DUPLICATE_KEY)
    return batch.won[0] if batch.won else None


@dataclass(frozen=True)
class ClaimedBatch:
    """What one claim of several runs won: the runs as claimed, and the job whose running run stopped the
    write (its execution lock is taken; the runs after it in the write are still pending)."""

    won: list[Document]
    locked_job: ObjectId | None = None


async def claim_runs(
    db: Database, claimant: Claimant, pending: list[Document], *, now: datetime, token: ObjectId
) -> ClaimedBatch:
    """`claim_run` for several runs in one write: one `update_many` stamps them running under `token`
    (SecantusDB writes one statement in one storage transaction, a bulk_write one per run). The unique
    `job_running` index still admits one running exclusive run per job: a second stops the write with a
    DuplicateKeyError naming the job, the runs changed before it stay changed and the rest stay pending,
    as on mongod. When fewer runs changed than were sent, one read by `_id` and `token` tells which are
    ours (`won_by`); the same read settles a claim whose answer was lost."""
    claim = {**_claim_fields(claimant, now), "claimToken": token}
    update = [{"$set": {**claim, "exclusive": {"$ifNull": ["$exclusive", True]}}}]
    ids = [doc["_id"] for doc in pending]
    query = {"_id": {"$in": ids}, "status": RunStatus.PENDING, "dueAt": {"$not": {"$gt": to_ms(now)}}}
    locked_job = None
    try:
        changed = (await durable(db.job_runs).update_many(query, update)).modified_count
        if changed in (0, len(ids)):  # none or all: nothing to read
            return ClaimedBatch([{**doc, **claim} for doc in pending] if changed else [])
    except DuplicateKeyError as conflict:
        locked_job = _locked_job(conflict)
        if len(ids) == 1:
            return ClaimedBatch([], locked_job)
    won = await won_by(db, ids, token)
    return ClaimedBatch([{**doc, **claim} for doc in pending if doc["_id"] in won], locked_job)


async def won_by(db: Database, run_ids: list[ObjectId], token: ObjectId) -> set[ObjectId]:
    """Which of `run_ids` a claim under `token` made running (and still are: the leader may have failed one
    as lost since)."""
    held = {"_id": {"$in": run_ids}, "claimToken": token, "status": RunStatus.RUNNING}
    return {doc["_id"] for doc in await majority_read(db.job_runs).find(held, {"_id": 1}).to_list()}


def _locked_job(conflict: DuplicateKeyError) -> ObjectId | None:
    """The job a `job_running` conflict names (None when the server's error does not say)."""
    key = (conflict.details or {}).get("keyValue") or {}
    job_id = key.get("jobId")
    return job_id if isinstance(job_id, ObjectId) else None


def _claim_fields(claimant: Claimant, now: datetime) -> Document:
    return {
        "status": RunStatus.RUNNING,
        "startedAt": to_ms(now),
        "workerId": claimant.worker_id,
        "claimedBy": claimant.instance,
        "leaseUntil": _lease_until(claimant),
    }


def claimed_document(claimant: Claimant, pending: Document, *, now: datetime) -> Document:
    """The run as `claim_run` at `now` answers it: for a claim that landed although its answer was lost."""
    return {**pending, **_claim_fields(claimant, now)}


async def renew_run_leases(db: Database, claimant: Claimant, run_ids: list[ObjectId]) -> set[ObjectId]:
    """One write extends the lease of every run this process runs; returns the runs it no longer holds."""
    if not run_ids:
        return set()
    held = {"_id": {"$in": run_ids}, "status": RunStatus.RUNNING, "claimedBy": claimant.instance}
    result = await durable(db.job_runs).update_many(held, [{"$set": {"leaseUntil": _lease_until(claimant)}}])
    if result.matched_count == len(run_ids):
        return set()
    still = {doc["_id"] for doc in await majority_read(db.job_runs).find(held, {"_id": 1}).to_list()}
    return set(run_ids) - still


@dataclass(frozen=True)
class FinishedRun:
    """A claimed run's outcome: its status and result fields (`ExecutionOutcome.run_fields`)."""

    run_id: ObjectId
    status: str
    finished_at: datetime
    fields: Document


async def finish_claimed_runs(db: Database, claimant: Claimant, finished: list[FinishedRun]) -> set[ObjectId]:
    """running -> their outcome, in one unordered bulk_write; the runs whose outcome is stored. A run no
    longer ours (the leader marked it lost) keeps what the leader wrote.

    The outcome ends the run's lease (`leaseUntil` removed; a run the leader failed keeps the lease that
    lapsed), so when fewer runs changed than were sent, one read of the batch tells which outcomes are
    stored: a bulk_write answers no count per operation, and a retry of a write whose answer was lost
    changes nothing yet landed."""
    if not finished:
        return set()
    updates = [
        UpdateOne(
            {"_id": run.run_id, "status": RunStatus.RUNNING, "claimedBy": claimant.instance},
            {
                "$set": {"status": run.status, "finishedAt": to_ms(run.finished_at), **run.fields},
                "$unset": {"leaseUntil": ""},
            },
        )
        for run in finished
    ]
    result = await durable(db.job_runs).bulk_write(updates, ordered=False)
    run_ids = [run.run_id for run in finished]
    if result.modified_count == len(updates):
        return set(run_ids)
    stored = {"_id": {"$in": run_ids}, "claimedBy": claimant.instance, "leaseUntil": {"$exists": False}}
    return {doc["_id"] for doc in await majority_read(db.job_runs).find(stored, {"_id": 1}).to_list()}


async def cancel_requested(db: Database, run_ids: list[ObjectId]) -> set[ObjectId]:
    """Which of these running runs a client asked to cancel (`run_history.cancel_run`)."""
    if not run_ids:
        return set()
    query = {"_id": {"$in": run_ids}, "status": RunStatus.RUNNING, "cancelRequested": True}
    return {doc["_id"] for doc in await db.job_runs.find(query, {"_id": 1}).to_list()}


async def skip_pending_runs(db: Database, run_ids: list[ObjectId], *, now: datetime, error: str) -> None:
    """Fires their job's overlap policy skips: only while they are still pending."""
    if run_ids:
        await durable(db.job_runs).update_many(
            {"_id": {"$in": run_ids}, "status": RunStatus.PENDING},
            {"$set": {"status": RunStatus.SKIPPED, "finishedAt": to_ms(now), "error": error}},
        )


async def skip_pending_runs_of_job(db: Database, job_id: ObjectId, *, now: datetime, error: str) -> int:
    """Every pending run of the job (its job was disabled: none of them may start any more)."""
    result = await db.job_runs.update_many(
        {"jobId": job_id, "status": RunStatus.PENDING},
        {"$set": {"status": RunStatus.SKIPPED, "finishedAt": to_ms(now), "error": error}},
    )
    return result.modified_count


def _due(now: datetime) -> Document:
    return {"status": RunStatus.PENDING, "dueAt": {"$not": {"$gt": to_ms(now)}}}


# What a claimer orders and picks pending runs by, and all it needs of the run it claims.
PENDING_RUN_FIELDS = {
    "_id": 1,
    "createdAt": 1,
    "workspaceId": 1,
    "jobId": 1,
    "dueAt": 1,
    "trigger": 1,
    "scheduledFor": 1,
    "attempt": 1,
    "fencingToken": 1,
}


def watch_pending_inserts(db: Database) -> Any:
    """A change stream of the pending runs inserted anywhere, with only PENDING_RUN_FIELDS of each."""
    pipeline: list[Document] = [
        {"$match": {"operationType": "insert", "fullDocument.status": RunStatus.PENDING}},
        {"$project": {"operationType": 1, **{f"fullDocument.{name}": 1 for name in PENDING_RUN_FIELDS}}},
    ]
    return db.job_runs.watch(pipeline)


async def pending_runs(db: Database) -> list[Document]:
    """Every pending run, with only what a claimer orders and picks them by (PENDING_RUN_FIELDS)."""
    return await db.job_runs.find({"status": RunStatus.PENDING}, PENDING_RUN_FIELDS).to_list()


async def due_runs_of_job(db: Database, job_id: ObjectId, now: datetime) -> list[Document]:
    """A job's pending runs that are due, oldest first: the queue its overlap policy decides on."""
    query = {**_due(now), "jobId": job_id}
    return await db.job_runs.find(query).sort([("scheduledFor", 1), ("createdAt", 1), ("_id", 1)]).to_list()


async def running_per_workspace(db: Database) -> dict[ObjectId, int]:
    """Running runs per workspace, across the cluster (what SYNCJOBS_MAX_RUNS_PER_WORKSPACE caps)."""
    pipeline: list[Document] = [
        {"$match": {"status": RunStatus.RUNNING}},
        {"$group": {"_id": "$workspaceId", "n": {"$sum": 1}}},
    ]
    return {doc["_id"]: int(doc["n"]) async for doc in await db.job_runs.aggregate(pipeline)}
