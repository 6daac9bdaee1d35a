"""Runs: a job's run history (filtered, in cursor pages), one run, and cancelling a run.

A run is reachable under its job and directly under its workspace (a client holding only the run id of a
`POST .../run` answer); either way another workspace's run is a 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from bson import ObjectId
from syncjobs.api.context import PAGE_QUERY, clock, db, object_id, read_body, workspace_id
from syncjobs.api.history import log_change
from syncjobs.api.idempotency import idempotent
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import BackfillResult, RunPage
from syncjobs.shared.cron import parse_schedule
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.models import RUN_TRIGGERS, BackfillInput, JobRun, RunStatus
from syncjobs.shared.paging import PageRequest, parse_limit
from syncjobs.shared.run_events import publish_cancelled
from syncjobs.shared.store import run_history, sync_jobs
from syncjobs.shared.store.job_changes import Change
from syncjobs.shared.store.run_history import RunFilter

routes = web.RouteTableDef()
TAG = "runs"
JOB_RUNS = "/api/workspaces/{ws}/sync-jobs/{id}/runs"
JOB_RUN = JOB_RUNS + "/{runId}"
RUN = "/api/workspaces/{ws}/runs/{runId}"
INSTANT: dict[str, Any] = {"type": "string", "format": "date-time", "description": "ISO 8601 with an offset"}

RUN_LIST_QUERY: dict[str, dict[str, Any]] = {
    **PAGE_QUERY,
    "before": {"type": "string", "description": "the former name of `after`, still accepted"},
    "status": {"type": "array", "items": {"enum": [str(status) for status in RunStatus]}},
    "trigger": {"type": "array", "items": {"enum": list(RUN_TRIGGERS)}},
    "from": {**INSTANT, "description": "scheduledFor at or after this instant"},
    "to": {**INSTANT, "description": "scheduledFor before this instant"},
}


def _choices(request: web.Request, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(request.query.getall(name, []))
    for value in values:
        if value not in allowed:
            raise ValidationFailed(name, f"{value!r} is not one of {', '.join(allowed)}")
    return values


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationFailed(name, "an ISO 8601 instant with an offset, e.g. 2026-01-15T00:00:00Z")
    return value


def required_instant(request: web.Request, name: str) -> datetime:
    value = _instant(request, name)
    if value is None:
        raise ValidationFailed(name, "required: an ISO 8601 instant with an offset")
    return value


def run_filter(request: web.Request) -> RunFilter:
    filters = RunFilter(
        statuses=_choices(request, "status", tuple(str(status) for status in RunStatus)),
        triggers=_choices(request, "trigger", RUN_TRIGGERS),
        scheduled_from=_instant(request, "from"),
        scheduled_to=_instant(request, "to"),
    )
    if filters.scheduled_from and filters.scheduled_to and filters.scheduled_from >= filters.scheduled_to:
        raise ValidationFailed("to", "must be after `from`")
    return filters


@routes.get(JOB_RUNS)
@describe(
    "Run history, newest first, filtered by status, trigger and scheduledFor; pass `next` back as `after`",
    tag=TAG,
    response=RunPage,
    errors=(404, 422),
    query=RUN_LIST_QUERY,
)
async def list_runs(request: web.Request) -> web.Response:
    job_id = object_id(request, "id")
    filters = run_filter(request)
    page = PageRequest(parse_limit(request.query.get("limit")), request.query.get("after", request.query.get("before")))
    await sync_jobs.get_job(db(request), job_id, workspace_id(request))
    found = await run_history.list_runs(db(request), job_id, page, filters)
    return web.json_response(RunPage(runs=found.runs, next=found.next).to_json())


@routes.get(JOB_RUN)
@describe("One run of the job", tag=TAG, response=JobRun, errors=(404,))
async def get_job_run(request: web.Request) -> web.Response:
    ws, job_id = workspace_id(request), object_id(request, "id")
    run = await run_history.get_run(db(request), ws, object_id(request, "runId"), job_id)
    return web.json_response(run.to_json())


@routes.get(RUN)
@describe("One run of the workspace, by the id `POST .../run` answered", tag=TAG, response=JobRun, errors=(404,))
async def get_run(request: web.Request) -> web.Response:
    run = await run_history.get_run(db(request), workspace_id(request), object_id(request, "runId"))
    return web.json_response(run.to_json())


async def _cancel(request: web.Request, job_scoped: bool) -> web.Response:
    ws, run_id = workspace_id(request), object_id(request, "runId")
    if job_scoped:
        await run_history.get_run(db(request), ws, run_id, object_id(request, "id"))
    now = clock(request).now()
    run = await run_history.cancel_run(db(request), ws, run_id, now)
    outcome = "cancelled" if run.status == RunStatus.CANCELLED else "cancel requested"
    if run.status == RunStatus.CANCELLED:  # a running run's replica announces its own end
        await publish_cancelled(db(request), ws, run, now)
    change = Change("cancel", [{"field": f"runs.{run.id}", "old": None, "new": outcome}])
    await log_change(request, ObjectId(run.job_id), change)
    return web.json_response(run.to_json())


CANCEL_SUMMARY = (
    "Cancel a run: a pending one is `cancelled` at once; a running one gets `cancelRequested` and its replica"
    " kills the executor within 2 s and records `cancelled`; never retried; an ended run is a 409"
)


@routes.post(JOB_RUN + "/cancel")
@describe(CANCEL_SUMMARY, tag=TAG, response=JobRun, errors=(403, 404, 409))
async def cancel_job_run(request: web.Request) -> web.Response:
    return await _cancel(request, job_scoped=True)


@routes.post(RUN + "/cancel")
@describe(CANCEL_SUMMARY, tag=TAG, response=JobRun, errors=(403, 404, 409))
async def cancel_run(request: web.Request) -> web.Response:
    return await _cancel(request, job_scoped=False)


MAX_BACKFILL = 1000
COUNTED_FIRES = 10_000  # a range is counted up to here to name its size in the 422


@routes.post("/api/workspaces/{ws}/sync-jobs/{id}/backfill")
@describe(
    f"Run the job's scheduled fires of [from, to) now (trigger `backfill`, at most {MAX_BACKFILL}), oldest first;"
    " a fire that already ran is not run again",
    tag=TAG,
    body=BackfillInput,
    response=BackfillResult,
    status=202,
    errors=(403, 404, 409),
)
@idempotent
async def backfill(request: web.Request) -> web.Response:
    ws, job_id, now = workspace_id(request), object_id(request, "id"), clock(request).now()
    body = await read_body(request, BackfillInput)
    if body.from_ >= body.to:
        raise ValidationFailed("to", "must be after `from`")
    if body.to > now:
        raise ValidationFailed("to", "a backfill covers fires that are due: `to` may not be in the future")
    job = await sync_jobs.get_job(db(request), job_id, ws)
    fires = parse_schedule(job.schedule.cron, job.schedule.timezone).fires_in(body.from_, body.to, COUNTED_FIRES + 1)
    if len(fires) > MAX_BACKFILL:
        count = f"more than {COUNTED_FIRES}" if len(fires) > COUNTED_FIRES else str(len(fires))
        raise ValidationFailed("to", f"the range holds {count} fires; a backfill takes at most {MAX_BACKFILL}")
    overlap = body.overlap or job.overlap
    done = await run_history.backfill(db(request), job, fires, exclusive=overlap != "allow", now=now)
    result = BackfillResult(fires=len(fires), created=done.created, skipped=done.skipped)
    if done.created:  # a backfill that found every fire already run wrote nothing to log
        asked = {"from": body.from_.isoformat(), "to": body.to.isoformat(), "overlap": overlap, "created": done.created}
        await log_change(request, job_id, Change("backfill", [{"field": "backfill", "old": None, "new": asked}]))
    return web.json_response(result.to_json(), status=202)
