"""A job's change log over REST, and the one way handlers append to it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from bson import ObjectId
from pydantic import AwareDatetime
from syncjobs.api.context import PAGE_QUERY, clock, db, grant, object_id, page_request, workspace_id
from syncjobs.api.openapi import describe
from syncjobs.shared.models import Output, from_document
from syncjobs.shared.store import job_changes, sync_jobs
from syncjobs.shared.store.job_changes import Change

routes = web.RouteTableDef()


class Actor(Output):
    token_id: str | None
    name: str
    admin: bool


class FieldChange(Output):
    field: str
    old: Any
    new: Any


class HistoryEntry(Output):
    id: str
    job_id: str
    workspace_id: str
    at: AwareDatetime
    actor: Actor
    action: str
    changes: list[FieldChange]
    note: str | None = None


class HistoryPage(Output):
    items: list[HistoryEntry]
    next: str | None


async def log_change(request: web.Request, job_id: ObjectId, change: Change) -> None:
    """Append what this request did to the job, as the request's token (its id and name, never the token)."""
    ws, now = workspace_id(request), clock(request).now()
    await job_changes.record(db(request), ws, job_id, job_changes.actor_of(grant(request)), change, now)


def _entry(doc: dict[str, Any]) -> HistoryEntry:
    actor = doc["actor"]
    token_id = actor.get("tokenId")
    return from_document(HistoryEntry, {**doc, "actor": {**actor, "tokenId": str(token_id) if token_id else None}})


@routes.get("/api/workspaces/{ws}/sync-jobs/{id}/history")
@describe(
    "The job's change log, newest first: who (token id and name) did what (fields old and new, secrets"
    " redacted) and when; kept for the run-retention period, also after the job is deleted",
    tag="sync jobs",
    response=HistoryPage,
    errors=(404, 422),
    query=PAGE_QUERY,
)
async def job_history(request: web.Request) -> web.Response:
    ws, job_id, page = workspace_id(request), object_id(request, "id"), page_request(request)
    docs, next_page = await job_changes.history(db(request), ws, job_id, page)
    if not docs and page.after is None:
        await sync_jobs.get_job(db(request), job_id, ws)  # no entry: an existing job's empty log, or a 404
    return web.json_response(HistoryPage(items=[_entry(doc) for doc in docs], next=next_page).to_json())
