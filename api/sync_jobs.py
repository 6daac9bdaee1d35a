"""Sync jobs: CRUD, toggle, manual run and status (their runs: api/runs.py)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from bson import ObjectId
from syncjobs.api.context import (
    PAGE_QUERY,
    clock,
    db,
    object_id,
    page_request,
    read_body,
    read_optional_body,
    workspace_id,
)
from syncjobs.api.editing import FieldRoles, edit_routes, etag, if_match, patch_body, put_body
from syncjobs.api.history import log_change
from syncjobs.api.idempotency import idempotent
from syncjobs.api.listing import FoundPage, paged_list
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import JobStatus, RunAccepted, SyncJobList
from syncjobs.shared.cron import parse_schedule
from syncjobs.shared.errors import Conflict, ValidationFailed
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import JobRun, SyncJob, SyncJobInput, ToggleInput, parse_object_id
from syncjobs.shared.store import job_runs, run_history, sync_jobs, sync_state
from syncjobs.shared.store.job_changes import Change, field_changes
from syncjobs.shared.store.sync_jobs import JobFilter
from syncjobs.shared.store.sync_state import lag_seconds

log = get_logger(__name__)
routes = web.RouteTableDef()
TAG = "sync jobs"
COLLECTION = "/api/workspaces/{ws}/sync-jobs"
ITEM = COLLECTION + "/{id}"
NEXT_RUNS = 5
RECENT_RUNS = 5


JOB_LIST_QUERY: dict[str, dict[str, Any]] = {
    **PAGE_QUERY,
    "enabled": {"type": "boolean"},
    "dataSourceId": {"type": "string"},
    "destinationDatabaseId": {"type": "string"},
    "q": {"type": "string", "description": "a prefix of the name"},
}


def _id_filter(request: web.Request, name: str) -> ObjectId | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = parse_object_id(raw)
    if value is None:
        raise ValidationFailed(name, "not an id")
    return value


def job_filter(request: web.Request) -> JobFilter:
    enabled = request.query.get("enabled")
    if enabled not in (None, "true", "false"):
        raise ValidationFailed("enabled", "true or false")
    return JobFilter(
        enabled=None if enabled is None else enabled == "true",
        data_source_id=_id_filter(request, "dataSourceId"),
        destination_id=_id_filter(request, "destinationDatabaseId"),
        name_prefix=request.query.get("q") or None,
    )


@paged_list(
    routes,
    COLLECTION,
    "List the workspace's sync jobs by name, filtered by enabled, dataSourceId, destinationDatabaseId and a name"
    " prefix `q`",
    tag=TAG,
    listing=SyncJobList,
    query=JOB_LIST_QUERY,
)
async def list_jobs(request: web.Request) -> FoundPage:
    ws, filters, page = workspace_id(request), job_filter(request), page_request(request)
    return await sync_jobs.list_jobs(db(request), ws, page, filters)


@routes.post(COLLECTION)
@describe(
    "Create a sync job; nextRunAt is computed in the job's timezone",
    tag=TAG,
    body=SyncJobInput,
    response=SyncJob,
    status=201,
    errors=(404, 409),
)
@idempotent
async def create_job(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, SyncJobInput)
    job = await sync_jobs.create_job(db(request), ws, body, clock(request).now())
    await log_change(request, ObjectId(job.id), Change("create", field_changes(None, job.to_json())))
    return web.json_response(job.to_json(), status=201, headers=etag(job.version))


@routes.get(ITEM)
@describe("Get a sync job (its ETag is its version)", tag=TAG, response=SyncJob, errors=(404,))
async def get_job(request: web.Request) -> web.Response:
    job = await sync_jobs.get_job(db(request), object_id(request, "id"), workspace_id(request))
    return web.json_response(job.to_json(), headers=etag(job.version))


# What a GET answers beside the editable fields: sent back unchanged, or ignored (the server's own).
JOB_ROLES = FieldRoles(
    read_only=frozenset({"id", "workspaceId", "createdAt"}),
    server_owned=frozenset(
        {"nextRunAt", "lastRunAt", "lastStatus", "lastError", "lastDurationMs", "averageDurationMs", "updatedAt"}
        | {"paused", "pausedUntil", "pauseNote", "skipCount"}  # set by pause, resume and skip
    ),
)


@edit_routes(
    routes,
    ITEM,
    replace="Replace a sync job's editable fields (the read-only fields a GET returned may come back unchanged);"
    " If-Match or the body's `version` make it conditional; a new schedule recomputes nextRunAt",
    patch="Edit some of a sync job's fields with a JSON merge patch (application/merge-patch+json, RFC 7396;"
    " null resets a field to its default); If-Match makes it conditional",
    tag=TAG,
    body=SyncJobInput,
    response=SyncJob,
    errors=(404, 409, 412),
)
async def edit_job(request: web.Request, patch: bool) -> web.Response:
    ws, job_id = workspace_id(request), object_id(request, "id")
    current = (await sync_jobs.get_job(db(request), job_id, ws)).to_json()
    read = patch_body if patch else put_body
    body, expected = await read(request, SyncJobInput, current, JOB_ROLES)
    job = await sync_jobs.replace_job(db(request), ws, job_id, body, clock(request).now(), expected)
    await log_change(request, job_id, Change("edit", field_changes(current, job.to_json())))
    return web.json_response(job.to_json(), headers=etag(job.version))


@routes.delete(ITEM)
@describe(
    "Delete a sync job (its run history stays until retention); If-Match makes it conditional",
    tag=TAG,
    status=204,
    errors=(404, 412),
)
async def delete_job(request: web.Request) -> web.Response:
    ws, job_id = workspace_id(request), object_id(request, "id")
    await sync_jobs.delete_job(db(request), ws, job_id, if_match(request))
    await log_change(request, job_id, Change("delete", []))
    return web.Response(status=204)


@routes.post(ITEM + "/toggle")
@describe(
    'Flip `enabled`, or set it with {"enabled": bool}',
    tag=TAG,
    body=ToggleInput,
    body_optional=True,
    response=SyncJob,
    errors=(404, 412),
)
async def toggle_job(request: web.Request) -> web.Response:
    ws, job_id = workspace_id(request), object_id(request, "id")
    body = await read_optional_body(request, ToggleInput)
    enabled = body.enabled if body is not None else None
    expected = if_match(request)
    before = await sync_jobs.get_job(db(request), job_id, ws)
    job = await sync_jobs.set_enabled(db(request), ws, job_id, enabled, clock(request).now(), expected)
    await log_change(request, job_id, Change("toggle", field_changes(before.to_json(), job.to_json())))
    return web.json_response(job.to_json(), headers=etag(job.version))


@routes.post(ITEM + "/run")
@describe(
    "Record a pending manual run for the worker; an Idempotency-Key retried answers the same run",
    tag=TAG,
    response=RunAccepted,
    status=202,
    errors=(404, 409, 422),
)
@idempotent
async def run_job(request: web.Request) -> web.Response:
    job = await sync_jobs.get_job(db(request), object_id(request, "id"), workspace_id(request))
    run = await job_runs.create_manual_run(db(request), job, clock(request).now())
    return web.json_response(RunAccepted(run_id=run.id, status=run.status).to_json(), status=202)


@routes.get(ITEM + "/status")
@describe(
    "Where the job stands: running, last outcome, the next 5 fire times, the last 5 runs",
    tag=TAG,
    response=JobStatus,
    errors=(404,),
)
async def job_status(request: web.Request) -> web.Response:
    job_id = object_id(request, "id")
    job = await sync_jobs.get_job(db(request), job_id, workspace_id(request))
    zone = ZoneInfo(job.schedule.timezone)
    now = clock(request).now()
    fires = parse_schedule(job.schedule.cron, job.schedule.timezone).next_n(now, NEXT_RUNS) if job.enabled else []
    resume_at = (await sync_state.change_stream_resume_times(db(request), [job_id])).get(job.id)
    status = JobStatus(
        job_id=job.id,
        enabled=job.enabled,
        running=await job_runs.is_running(db(request), job_id),
        last_run_at=job.last_run_at,
        last_status=job.last_status,
        last_error=job.last_error,
        next_run_at=job.next_run_at,
        next_runs=[fire.astimezone(zone).isoformat() for fire in fires],
        average_duration_ms=job.average_duration_ms,
        recent_runs=await run_history.recent_runs(db(request), job_id, RECENT_RUNS),
        paused=job.paused,
        paused_until=job.paused_until,
        pause_note=job.pause_note,
        skip_count=job.skip_count,
        change_stream_resume_at=resume_at,
        change_stream_lag_seconds=None if resume_at is None else lag_seconds(resume_at, now),
    )
    return web.json_response(status.to_json())


@routes.post(ITEM + "/reset-state")
@describe(
    "Forget the job's incremental cursors and change-stream resume point: its next run starts over (a new"
    " snapshot in changeStream mode); recorded in the run history as a `reset` run",
    tag=TAG,
    response=JobRun,
    errors=(403, 404, 409),
)
async def reset_state(request: web.Request) -> web.Response:
    job_id = object_id(request, "id")
    job = await sync_jobs.get_job(db(request), job_id, workspace_id(request))
    if await job_runs.is_running(db(request), job_id):
        raise Conflict("the job is running: reset its state once the run ends", [{"field": "id", "message": "running"}])
    cleared = await sync_state.reset_job_state(db(request), job_id)
    run = await job_runs.record_state_reset(db(request), job, clock(request).now(), cleared)
    log.info("sync_state_reset", job_id=job.id, cleared=cleared)
    await log_change(request, job_id, Change("reset-state", [{"field": "syncState", "old": None, "new": "reset"}]))
    return web.json_response(run.to_json())
