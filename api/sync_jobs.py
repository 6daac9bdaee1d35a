"""Sync jobs: CRUD, toggle, manual run, status and run history."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web
from syncjobs.api.context import clock, db, object_id, read_body, read_optional_body, workspace_id
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import JobStatus, RunAccepted, RunPage, SyncJobList
from syncjobs.shared.cron import parse_schedule
from syncjobs.shared.errors import Conflict, NotFound, ValidationFailed
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import JobRun, SyncJob, SyncJobInput, ToggleInput, parse_object_id
from syncjobs.shared.store import job_runs, sync_jobs, sync_state
from syncjobs.shared.store.sync_state import lag_seconds

log = get_logger(__name__)
routes = web.RouteTableDef()
TAG = "sync jobs"
COLLECTION = "/api/workspaces/{ws}/sync-jobs"
ITEM = COLLECTION + "/{id}"
NEXT_RUNS = 5
RECENT_RUNS = 5
DEFAULT_PAGE = 20


@routes.get(COLLECTION)
@describe("List the workspace's sync jobs", tag=TAG, response=SyncJobList, errors=(404,))
async def list_jobs(request: web.Request) -> web.Response:
    jobs = await sync_jobs.list_jobs(db(request), workspace_id(request))
    return web.json_response({"items": [job.to_json() for job in jobs]})


@routes.post(COLLECTION)
@describe(
    "Create a sync job; nextRunAt is computed in the job's timezone",
    tag=TAG,
    body=SyncJobInput,
    response=SyncJob,
    status=201,
    errors=(404, 409),
)
async def create_job(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, SyncJobInput)
    job = await sync_jobs.create_job(db(request), ws, body, clock(request).now())
    return web.json_response(job.to_json(), status=201)


@routes.get(ITEM)
@describe("Get a sync job", tag=TAG, response=SyncJob, errors=(404,))
async def get_job(request: web.Request) -> web.Response:
    job = await sync_jobs.get_job(db(request), object_id(request, "id"), workspace_id(request))
    return web.json_response(job.to_json())


@routes.put(ITEM)
@describe(
    "Replace a sync job's editable fields; nextRunAt is recomputed",
    tag=TAG,
    body=SyncJobInput,
    response=SyncJob,
    errors=(404, 409),
)
async def replace_job(request: web.Request) -> web.Response:
    ws, job_id = workspace_id(request), object_id(request, "id")
    body = await read_body(request, SyncJobInput)
    job = await sync_jobs.replace_job(db(request), ws, job_id, body, clock(request).now())
    return web.json_response(job.to_json())


@routes.delete(ITEM)
@describe("Delete a sync job (its run history stays until retention)", tag=TAG, status=204, errors=(404,))
async def delete_job(request: web.Request) -> web.Response:
    await sync_jobs.delete_job(db(request), workspace_id(request), object_id(request, "id"))
    return web.Response(status=204)


@routes.post(ITEM + "/toggle")
@describe(
    'Flip `enabled`, or set it with {"enabled": bool}',
    tag=TAG,
    body=ToggleInput,
    body_optional=True,
    response=SyncJob,
    errors=(404,),
)
async def toggle_job(request: web.Request) -> web.Response:
    ws, job_id = workspace_id(request), object_id(request, "id")
    body = await read_optional_body(request, ToggleInput)
    enabled = body.enabled if body is not None else None
    job = await sync_jobs.set_enabled(db(request), ws, job_id, enabled, clock(request).now())
    return web.json_response(job.to_json())


@routes.post(ITEM + "/run")
@describe("Record a pending manual run for the worker", tag=TAG, response=RunAccepted, status=202, errors=(404,))
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
        recent_runs=await job_runs.recent_runs(db(request), job_id, RECENT_RUNS),
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
    return web.json_response(run.to_json())


def _page_size(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_PAGE))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= job_runs.MAX_PAGE:
        raise ValidationFailed("limit", f"an integer from 1 to {job_runs.MAX_PAGE}")
    return int(raw)


@routes.get(ITEM + "/runs")
@describe(
    "Run history, newest first; pass `next` back as `before` for the next page",
    tag=TAG,
    response=RunPage,
    errors=(404, 422),
    query={
        "limit": {"type": "integer", "minimum": 1, "maximum": job_runs.MAX_PAGE, "default": DEFAULT_PAGE},
        "before": {"type": "string", "description": "the `next` of the previous page"},
    },
)
async def list_runs(request: web.Request) -> web.Response:
    job_id = object_id(request, "id")
    await sync_jobs.get_job(db(request), job_id, workspace_id(request))
    limit = _page_size(request)
    before = None
    if "before" in request.query:
        before = parse_object_id(request.query["before"])
        if before is None:
            raise NotFound("no run matches the `before` cursor")
    runs, next_cursor = await job_runs.list_runs(db(request), job_id, limit, before)
    return web.json_response(RunPage(runs=runs, next=next_cursor).to_json())
