"""Pause, resume and skip a job's fires. Fires go on being decided on the job's cadence: the leader
records the ones held back as `skipped` (reason `paused` or `skip`), and resumes a pause with `until`
by itself at its first fire from then on (once, under its fencing token, across a failover)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from syncjobs.api.context import clock, db, object_id, read_body, read_optional_body, workspace_id
from syncjobs.api.editing import etag, if_match
from syncjobs.api.history import log_change
from syncjobs.api.openapi import describe
from syncjobs.shared.clock import to_ms
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.models import PauseInput, SkipInput, SyncJob
from syncjobs.shared.store import sync_jobs
from syncjobs.shared.store.job_changes import Change, field_changes

routes = web.RouteTableDef()
TAG = "sync jobs"
ITEM = "/api/workspaces/{ws}/sync-jobs/{id}"


async def _hold(request: web.Request, action: str, fields: dict[str, Any], note: str | None = None) -> web.Response:
    ws, job_id, now = workspace_id(request), object_id(request, "id"), clock(request).now()
    before = await sync_jobs.get_job(db(request), job_id, ws)
    job = await sync_jobs.set_hold(db(request), ws, job_id, fields, now, if_match(request))
    await log_change(request, job_id, Change(action, field_changes(before.to_json(), job.to_json()), note))
    return web.json_response(job.to_json(), headers=etag(job.version))


@routes.post(ITEM + "/pause")
@describe(
    "Pause the job's fires (recorded `skipped`, reason `paused`) until `until` (it then resumes by itself)"
    " or until resumed; `note` says why",
    tag=TAG,
    body=PauseInput,
    body_optional=True,
    response=SyncJob,
    errors=(403, 404, 412),
)
async def pause_job(request: web.Request) -> web.Response:
    body = await read_optional_body(request, PauseInput) or PauseInput()
    if body.until is not None and body.until <= clock(request).now():
        raise ValidationFailed("until", "must be in the future")
    until = to_ms(body.until) if body.until is not None else None
    fields = {"paused": True, "pausedUntil": until, "pauseNote": body.note}
    return await _hold(request, "pause", fields, body.note)


@routes.post(ITEM + "/resume")
@describe("Resume a paused job: its next fire runs", tag=TAG, response=SyncJob, errors=(403, 404, 412))
async def resume_job(request: web.Request) -> web.Response:
    return await _hold(request, "resume", {"paused": False, "pausedUntil": None, "pauseNote": None})


@routes.post(ITEM + "/skip")
@describe(
    "Skip the next `count` fires that would run (recorded `skipped`, reason `skip`)",
    tag=TAG,
    body=SkipInput,
    response=SyncJob,
    errors=(403, 404, 412),
)
async def skip_fires(request: web.Request) -> web.Response:
    body = await read_body(request, SkipInput)
    return await _hold(request, "skip", {"skipCount": body.count})
