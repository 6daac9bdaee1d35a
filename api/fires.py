"""A job's fires over a range, past and future: what became of each (audit) and what will fire (preview).

Every fire the schedule implies in [from, to) (at most 1,000 an answer, then `next`), with the outcome of
the run that stands for it (its latest: a retry or a backfill after a skip), or `upcoming`; a past fire
with no run at all is `missed` with reason `not_recorded` (the job did not exist or was disabled then,
or no worker recorded it). Future fires carry a `dst` note where a DST change moved or doubled them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import AwareDatetime
from syncjobs.api.context import clock, db, object_id, workspace_id
from syncjobs.api.openapi import describe
from syncjobs.api.runs import INSTANT, required_instant
from syncjobs.shared.cron import parse_schedule
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.models import Output, RunStatus, SyncJob
from syncjobs.shared.mongo import Document
from syncjobs.shared.paging import decode_cursor, encode_cursor
from syncjobs.shared.store import run_history, sync_jobs

routes = web.RouteTableDef()
MAX_FIRES = 1000

Outcome = Literal[
    "pending", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped", "missed", "upcoming", "disabled"
]


class Fire(Output):
    scheduled_for: AwareDatetime
    wall_time: str
    outcome: Outcome
    reason: Literal["overlap", "paused", "skip", "no_leader", "not_recorded"] | None = None
    run_id: str | None = None
    dst: Literal["gap_shifted", "repeated_hour"] | None = None


class FirePage(Output):
    items: list[Fire]
    next: str | None


def _reason(run: Document) -> str | None:
    if run["status"] == RunStatus.MISSED:
        return "no_leader"
    if run["status"] == RunStatus.SKIPPED:
        held = (run.get("error") or "").removeprefix("skipped: ")
        return held if held in ("paused", "skip") else "overlap"
    return None


def audit(job: SyncJob, fires: list[datetime], runs: list[Document], now: datetime) -> list[Fire]:
    """Pure: each fire with the latest run that stands for it, or what it will be."""
    schedule = parse_schedule(job.schedule.cron, job.schedule.timezone)
    zone = ZoneInfo(job.schedule.timezone)
    latest = {run["scheduledFor"]: run for run in runs}  # runs come oldest first: the last one wins
    items = []
    for fire in fires:
        entry: dict[str, Any] = {"scheduled_for": fire, "wall_time": fire.astimezone(zone).isoformat()}
        run = latest.get(fire)
        if run is not None:
            entry |= {"outcome": run["status"], "reason": _reason(run), "run_id": str(run["_id"])}
        elif fire > now or (job.next_run_at is not None and fire >= job.next_run_at):
            entry["outcome"] = "upcoming" if job.enabled else "disabled"
        else:
            entry |= {"outcome": "missed", "reason": "not_recorded"}
        if fire > now:
            entry["dst"] = schedule.dst_note(fire)
        items.append(Fire.model_validate(entry))
    return items


@routes.get("/api/workspaces/{ws}/sync-jobs/{id}/fires")
@describe(
    f"Every fire the schedule implies in [from, to) (at most {MAX_FIRES} an answer) with its outcome and run,"
    " or `upcoming` with a DST note",
    tag="runs",
    response=FirePage,
    errors=(404, 422),
    query={
        "from": {**INSTANT, "description": "fires at or after this instant"},
        "to": {**INSTANT, "description": "fires before this instant"},
        "after": {"type": "string", "description": "the `next` of the previous page"},
    },
)
async def list_fires(request: web.Request) -> web.Response:
    ws, job_id, now = workspace_id(request), object_id(request, "id"), clock(request).now()
    start, end = required_instant(request, "from"), required_instant(request, "to")
    if start >= end:
        raise ValidationFailed("to", "must be after `from`")
    if "after" in request.query:
        resume = decode_cursor(request.query["after"])
        if not isinstance(resume, str):
            raise ValidationFailed("after", "not a cursor of this list")
        start = max(start, datetime.fromisoformat(resume))
    job = await sync_jobs.get_job(db(request), job_id, ws)
    fires = parse_schedule(job.schedule.cron, job.schedule.timezone).fires_in(start, end, MAX_FIRES + 1)
    page, more = fires[:MAX_FIRES], len(fires) > MAX_FIRES
    runs = await run_history.runs_of_fires(db(request), job_id, page[0], page[-1]) if page else []
    items = audit(job, page, runs, now)
    next_page = encode_cursor(fires[MAX_FIRES].isoformat()) if more else None
    return web.json_response(FirePage(items=items, next=next_page).to_json())
