"""The `syncjobs` collection: what to sync, when, and how the last runs went."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.clock import to_ms
from syncjobs.shared.cron import parse_schedule
from syncjobs.shared.errors import Conflict, ValidationFailed
from syncjobs.shared.models import RunStatus, SyncJob, SyncJobInput, from_document, parse_object_id
from syncjobs.shared.mongo import Database, Document, durable, find_existing
from syncjobs.shared.paging import Page, PageRequest, keyset_page
from syncjobs.shared.store import data_sources, destinations, job_runs, sync_state
from syncjobs.shared.store.run_stats import ALERT_WINDOW
from syncjobs.shared.store.versioned import refuse, version_filter


def _conflict(name: str) -> Conflict:
    return Conflict(
        f"a sync job named {name!r} already exists in this workspace", [{"field": "name", "message": "already exists"}]
    )


async def _reference(db: Database, workspace_id: ObjectId, field: str, value: str) -> ObjectId:
    """An id in the body must name an object of this workspace: a 422 on the field otherwise."""
    ref = parse_object_id(value)
    store = data_sources.store if field == "dataSourceId" else destinations.store
    if ref is None or not await store.exists(db, workspace_id, ref):
        raise ValidationFailed(field, "no such object in this workspace")
    return ref


async def _editable_fields(db: Database, workspace_id: ObjectId, body: SyncJobInput, now: datetime) -> dict[str, Any]:
    """Validate everything (cron, timezone, references) before any write, and compute nextRunAt."""
    schedule = parse_schedule(body.schedule.cron, body.schedule.timezone)
    fields = body.model_dump(by_alias=True)
    fields["dataSourceId"] = await _reference(db, workspace_id, "dataSourceId", body.data_source_id)
    if body.sync_mode == "changeStream":
        source = await data_sources.store.get_sealed(db, fields["dataSourceId"])
        if source.get("kind") != "mongodb":
            raise ValidationFailed("syncMode", "changeStream needs a mongodb data source")
    fields["destinationDatabaseId"] = await _reference(
        db, workspace_id, "destinationDatabaseId", body.destination_database_id
    )
    fields["nextRunAt"] = to_ms(schedule.next_after(now)) if body.enabled else None
    return fields


def new_job_state(now: datetime) -> Document:
    """What a new job stores beside its editable fields: no run yet, version 1."""
    return {
        "lastRunAt": None,
        "lastStatus": None,
        "lastError": None,
        "lastDurationMs": None,
        "averageDurationMs": None,
        "runCount": 0,
        "alertWatchUntil": to_ms(now),  # no run yet: nothing an alert could be raised from
        "version": 1,
        "createdAt": to_ms(now),
        "updatedAt": to_ms(now),
    }


async def create_job(db: Database, workspace_id: ObjectId, body: SyncJobInput, now: datetime) -> SyncJob:
    fields = await _editable_fields(db, workspace_id, body, now)
    doc: Document = {"_id": ObjectId(), "workspaceId": workspace_id, **fields, **new_job_state(now)}
    try:
        await db.syncjobs.insert_one(doc)
    except DuplicateKeyError:
        raise _conflict(body.name) from None
    return from_document(SyncJob, doc)


async def get_job_doc(db: Database, job_id: ObjectId, workspace_id: ObjectId | None = None) -> Document:
    query: Document = {"_id": job_id}
    if workspace_id is not None:
        query["workspaceId"] = workspace_id
    return await find_existing(db.syncjobs, query, "sync job not found")


async def get_job(db: Database, job_id: ObjectId, workspace_id: ObjectId | None = None) -> SyncJob:
    return from_document(SyncJob, await get_job_doc(db, job_id, workspace_id))


# Above every code point: a name that starts with a prefix sorts before prefix + this.
_PREFIX_END = "\U0010ffff"


@dataclass(frozen=True)
class JobFilter:
    """The job list's filters (None: any); `name_prefix` is the `q` of the query string."""

    enabled: bool | None = None
    data_source_id: ObjectId | None = None
    destination_id: ObjectId | None = None
    name_prefix: str | None = None

    def query(self, workspace_id: ObjectId) -> Document:
        query: Document = {"workspaceId": workspace_id}
        if self.enabled is not None:
            query["enabled"] = self.enabled
        if self.data_source_id is not None:
            query["dataSourceId"] = self.data_source_id
        if self.destination_id is not None:
            query["destinationDatabaseId"] = self.destination_id
        if self.name_prefix:  # a range, not a regex: an index bound on any server
            query["name"] = {"$gte": self.name_prefix, "$lt": self.name_prefix + _PREFIX_END}
        return query


async def list_jobs(
    db: Database, workspace_id: ObjectId, page: PageRequest, filters: JobFilter | None = None
) -> tuple[list[SyncJob], str | None]:
    """By name; each filter has an index that starts (workspaceId, <filter>, name)."""
    found: Page = await keyset_page(db, "syncjobs", (filters or JobFilter()).query(workspace_id), "name", page)
    return [from_document(SyncJob, doc) for doc in found.docs], found.next


async def replace_job(
    db: Database,
    workspace_id: ObjectId,
    job_id: ObjectId,
    body: SyncJobInput,
    now: datetime,
    expected_version: int | None = None,
) -> SyncJob:
    """Replace the editable fields (only at `expected_version`, when given); only a new schedule (or
    enabling) recomputes nextRunAt, so an edit of anything else never pushes a fire that is due but not
    yet taken into the future."""
    scope = {"_id": job_id, "workspaceId": workspace_id}
    current = await get_job_doc(db, job_id, workspace_id)
    fields = await _editable_fields(db, workspace_id, body, now)
    same_schedule = current.get("schedule") == fields["schedule"]
    if same_schedule and current.get("enabled") and body.enabled and current.get("nextRunAt") is not None:
        fields["nextRunAt"] = current["nextRunAt"]
    try:
        doc = await db.syncjobs.find_one_and_update(
            {**scope, **version_filter(expected_version)},
            {"$set": {**fields, "updatedAt": to_ms(now)}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        raise _conflict(body.name) from None
    return await _written(db, doc, now, scope, expected_version)


async def set_enabled(
    db: Database,
    workspace_id: ObjectId,
    job_id: ObjectId,
    enabled: bool | None,
    now: datetime,
    expected_version: int | None = None,
) -> SyncJob:
    """Set `enabled` (or flip it when None); enabling schedules the next fire from now."""
    scope = {"_id": job_id, "workspaceId": workspace_id}
    current = await get_job(db, job_id, workspace_id)
    target = (not current.enabled) if enabled is None else enabled
    next_run = to_ms(parse_schedule(current.schedule.cron, current.schedule.timezone).next_after(now))
    doc = await db.syncjobs.find_one_and_update(
        {**scope, **version_filter(expected_version)},
        {
            "$set": {"enabled": target, "nextRunAt": next_run if target else None, "updatedAt": to_ms(now)},
            "$inc": {"version": 1},
        },
        return_document=ReturnDocument.AFTER,
    )
    return await _written(db, doc, now, scope, expected_version)


DISABLED_SKIP_ERROR = "skipped: the job is disabled"


async def _written(
    db: Database, doc: Document | None, now: datetime, scope: Document, expected_version: int | None
) -> SyncJob:
    """The job as written (or the refusal of a write that matched nothing); a disabled job's pending runs
    are skipped, so none starts after it was disabled."""
    if doc is None:
        await refuse(db, "syncjobs", scope, "sync job", expected_version)
    if not doc.get("enabled"):
        if await job_runs.skip_pending_runs_of_job(db, doc["_id"], now=now, error=DISABLED_SKIP_ERROR):
            await watch_alerts(db, doc["_id"], now + ALERT_WINDOW)  # skipped fires can raise `missed_runs`
    return from_document(SyncJob, doc)


async def set_hold(
    db: Database,
    workspace_id: ObjectId,
    job_id: ObjectId,
    fields: Document,
    now: datetime,
    expected_version: int | None = None,
) -> SyncJob:
    """Pause, resume or skip (`paused`, `pausedUntil`, `pauseNote`, `skipCount`): a client's edit, so
    `version` goes up and the leader replans the job with it."""
    scope = {"_id": job_id, "workspaceId": workspace_id}
    doc = await db.syncjobs.find_one_and_update(
        {**scope, **version_filter(expected_version)},
        {"$set": {**fields, "updatedAt": to_ms(now)}, "$inc": {"version": 1}},
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        await refuse(db, "syncjobs", scope, "sync job", expected_version)
    return from_document(SyncJob, doc)


async def delete_job(
    db: Database, workspace_id: ObjectId, job_id: ObjectId, expected_version: int | None = None
) -> None:
    """Delete the job (only at `expected_version`, when given) and its cursors and resume point; its run
    history stays until retention removes it."""
    scope = {"_id": job_id, "workspaceId": workspace_id}
    result = await db.syncjobs.delete_one({**scope, **version_filter(expected_version)})
    if result.deleted_count == 0:
        await refuse(db, "syncjobs", scope, "sync job", expected_version)
    await sync_state.reset_job_state(db, job_id)


# --- worker operations ---
# The worker's writes carry its fencing token in `workerFencingToken` and never bump `version`, which
# is the API's edit counter: an edit that lands between the worker's read and write wins.


def _fenced(job_id: ObjectId, token: int) -> Document:
    return {"_id": job_id, "workerFencingToken": {"$not": {"$gt": token}}}


async def find_job_doc(db: Database, job_id: ObjectId) -> Document | None:
    return await db.syncjobs.find_one({"_id": job_id})


async def find_job_identity(db: Database, job_id: ObjectId) -> Document | None:
    """`{_id, name, workspaceId}` of a job: what an alert names and whom it goes to."""
    return await db.syncjobs.find_one({"_id": job_id}, {"name": 1, "workspaceId": 1})


def job_identity(job: SyncJob) -> Document:
    """`find_job_identity`'s answer, from a job already read."""
    return {"_id": ObjectId(job.id), "name": job.name, "workspaceId": ObjectId(job.workspace_id)}


async def find_job(db: Database, job_id: ObjectId) -> SyncJob | None:
    """The job as the worker uses it: typed, so each default is the model's."""
    doc = await find_job_doc(db, job_id)
    return from_document(SyncJob, doc) if doc is not None else None


async def enabled_job_docs(db: Database) -> list[Document]:
    return await db.syncjobs.find({"enabled": True}).to_list()


async def enabled_job_versions(db: Database) -> dict[ObjectId, int]:
    """Id -> version of every enabled job: what the polling fallback compares to find edits."""
    cursor = db.syncjobs.find({"enabled": True}, {"version": 1})
    return {doc["_id"]: int(doc.get("version", 1)) async for doc in cursor}


@dataclass(frozen=True)
class NextRun:
    """A job's nextRunAt moved past the fires the leader took, as of the job version it planned from."""

    job_id: ObjectId
    version: int
    next_run_at: datetime
    watch_alerts_until: datetime | None = None  # fires were written missed or skipped: alerts to evaluate


async def advance_next_runs(db: Database, moves: list[NextRun], token: int) -> None:
    """Every job that fired at one instant in one unordered bulk_write; an edited job (other version) is
    left alone, its edit wins."""
    if not moves:
        return
    updates = [
        UpdateOne(
            {**_fenced(move.job_id, token), "version": move.version},
            {"$set": {"nextRunAt": to_ms(move.next_run_at), "workerFencingToken": token}},
        )
        for move in moves
    ]
    updates += [  # whatever the version: an edit does not undo a missed fire
        UpdateOne(_fenced(move.job_id, token), {"$max": {"alertWatchUntil": to_ms(move.watch_alerts_until)}})
        for move in moves
        if move.watch_alerts_until is not None
    ]
    await durable(db.syncjobs).bulk_write(updates, ordered=False)


async def end_pause(db: Database, job_id: ObjectId, paused_until: datetime, token: int) -> bool:
    """The leader resumes a job whose pause ran out: once (the write matches only that pause, under the
    leader's token); no version change, so no replan."""
    query = {**_fenced(job_id, token), "paused": True, "pausedUntil": to_ms(paused_until)}
    fields = {"paused": False, "pausedUntil": None, "pauseNote": None, "workerFencingToken": token}
    return (await durable(db.syncjobs).update_one(query, {"$set": fields})).modified_count == 1


async def use_skips(db: Database, job_id: ObjectId, count: int, token: int) -> None:
    """The leader skipped `count` fires of the job's skip count."""
    await durable(db.syncjobs).update_one(
        {**_fenced(job_id, token), "skipCount": {"$gte": count}},
        {"$inc": {"skipCount": -count}, "$set": {"workerFencingToken": token}},
    )


@dataclass(frozen=True)
class JobOutcome:
    """A run's outcome as its job keeps it. `watch_alerts_until`: this outcome could raise an alert
    (`shared.alerts.outcome_is_watched`): every run of the job until then is evaluated."""

    job_id: ObjectId
    status: RunStatus
    finished_at: datetime
    error: str | None
    duration_ms: int | None
    watch_alerts_until: datetime | None = None


def _outcome_fields(outcome: JobOutcome) -> Document:
    """lastRunAt/lastStatus/lastError/lastDurationMs, and the running mean of durations over runs (a
    pipeline `$set`). A job that has no `alertWatchUntil` yet (written before it existed) is watched for
    one alert window from the outcome."""
    fields: Document = {
        "lastRunAt": to_ms(outcome.finished_at),
        "lastStatus": {"$literal": outcome.status},
        "lastError": {"$literal": outcome.error},
    }
    if (duration_ms := outcome.duration_ms) is not None:
        count = {"$add": [{"$ifNull": ["$runCount", 0]}, 1]}
        mean = {"$ifNull": ["$averageDurationMs", duration_ms]}
        fields |= {
            "lastDurationMs": duration_ms,
            "runCount": count,
            "averageDurationMs": {"$add": [mean, {"$divide": [{"$subtract": [duration_ms, mean]}, count]}]},
        }
    watched = {"$ifNull": ["$alertWatchUntil", to_ms(outcome.finished_at + ALERT_WINDOW)]}
    if outcome.watch_alerts_until is not None:
        watched = {"$max": [watched, to_ms(outcome.watch_alerts_until)]}
    fields["alertWatchUntil"] = watched
    return fields


async def record_run_outcome(
    db: Database,
    job_id: ObjectId,
    token: int,
    *,
    status: RunStatus,
    finished_at: datetime,
    error: str | None,
    duration_ms: int | None,
    watch_alerts_until: datetime | None = None,
) -> bool:
    """The leader's outcome on a job (a run it failed as lost), under its fencing token; False when the job
    is gone (deleted) or the fence refused the write."""
    outcome = JobOutcome(job_id, status, finished_at, error, duration_ms, watch_alerts_until)
    fields = {**_outcome_fields(outcome), "workerFencingToken": token}
    result = await durable(db.syncjobs).update_one(_fenced(job_id, token), [{"$set": fields}])
    return result.matched_count == 1


async def record_run_outcomes(db: Database, outcomes: list[JobOutcome]) -> set[ObjectId]:
    """Claimers' outcomes on their jobs, in one unordered bulk_write; the jobs written (a job deleted while
    its run went is not). Unfenced: each is written only after its run's outcome landed under the run's
    lease (`job_runs.finish_claimed_runs`), which is what guards it."""
    if not outcomes:
        return set()
    updates = [UpdateOne({"_id": outcome.job_id}, [{"$set": _outcome_fields(outcome)}]) for outcome in outcomes]
    result = await durable(db.syncjobs).bulk_write(updates, ordered=False)
    jobs = {outcome.job_id for outcome in outcomes}
    if result.matched_count == len(updates):
        return jobs
    return {doc["_id"] for doc in await db.syncjobs.find({"_id": {"$in": list(jobs)}}, {"_id": 1}).to_list()}


# A job that opened an alert stays watched: each of its runs is evaluated, so a run resolves its alerts.
WATCHED_FOR_GOOD = datetime(9999, 1, 1, tzinfo=UTC)


async def watch_alerts(db: Database, job_id: ObjectId, until: datetime) -> None:
    """Runs of the job are evaluated for alerts until `until` at least (a fire written missed or skipped,
    an alert opened: `WATCHED_FOR_GOOD`)."""
    await durable(db.syncjobs).update_one({"_id": job_id}, {"$max": {"alertWatchUntil": to_ms(until)}})


# Edits bump `version`; the worker's own writes (nextRunAt, lastRunAt...) do not and are filtered out.
# A pipeline update shows as `replace` on some servers: it carries its document, so it costs no read.
JOB_EDITS: list[Document] = [
    {
        "$match": {
            "$or": [
                {"ns.coll": "syncjobs", "operationType": {"$in": ["insert", "replace", "delete"]}},
                {"ns.coll": "syncjobs", "updateDescription.updatedFields.version": {"$exists": True}},
            ]
        }
    }
]


def watch_job_edits(db: Database, resume_after: Any = None) -> Any:
    """A change stream of every job edit, toggle and delete (JOB_EDITS), resumed after `resume_after`."""
    return db.watch(JOB_EDITS, resume_after=resume_after)
