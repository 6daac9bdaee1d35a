"""What a client asks before it knows anything: who its token is, and what a schedule would do.

The dashboard signs in with a token alone (`GET /api/me` tells it the workspace) and previews a job's
schedule as the user types (`GET /api/schedule-preview`), from the same cron code the worker fires by.
"""

from __future__ import annotations

from aiohttp import web
from syncjobs.api.context import clock, db, grant
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import Me, PreviewFire, SchedulePreview
from syncjobs.shared.cron import dst_note, parse_schedule
from syncjobs.shared.cron_words import describe_cron
from syncjobs.shared.errors import InvalidCron, InvalidTimezone, ValidationFailed
from syncjobs.shared.store.workspaces import get_workspace

routes = web.RouteTableDef()
TAG = "meta"
MAX_PREVIEW = 20
DEFAULT_PREVIEW = 5


@routes.get("/api/me")
@describe("The presented token: its name, scope, admin flag and workspace", tag=TAG, response=Me)
async def me(request: web.Request) -> web.Response:
    token = grant(request)
    workspace = None if token.workspace_id is None else await get_workspace(db(request), token.workspace_id)
    answer = Me(
        name=token.name,
        scope=token.scope,
        admin=token.is_admin,
        workspace_id=workspace.id if workspace else None,
        workspace_name=workspace.name if workspace else None,
    )
    return web.json_response(answer.to_json())


def _count(request: web.Request) -> int:
    raw = request.query.get("count", str(DEFAULT_PREVIEW))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PREVIEW:
        raise ValidationFailed("count", f"an integer from 1 to {MAX_PREVIEW}")
    return int(raw)


@routes.get("/api/schedule-preview")
@describe(
    "A schedule in words and its next fire times in its timezone, with DST notes (422 names `cron` or `timezone`)",
    tag=TAG,
    response=SchedulePreview,
    errors=(422,),
    query={
        "cron": {"type": "string", "description": "5 fields, 6 (seconds first) or an @macro"},
        "timezone": {"type": "string", "default": "UTC"},
        "count": {"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW, "default": DEFAULT_PREVIEW},
    },
)
async def schedule_preview(request: web.Request) -> web.Response:
    cron, timezone = request.query.get("cron", ""), request.query.get("timezone", "UTC")
    count = _count(request)
    if not cron.strip():
        raise InvalidCron("a cron expression is required", field="cron")
    try:
        schedule = parse_schedule(cron, timezone)
    except InvalidTimezone as error:
        raise InvalidTimezone(error.details[0]["message"], field="timezone") from None
    except InvalidCron as error:
        raise InvalidCron(error.details[0]["message"], field="cron") from None
    fires = [
        PreviewFire(
            at=fire.astimezone(schedule.zone).isoformat(),
            wall_time=fire.astimezone(schedule.zone).strftime("%a %Y-%m-%d %H:%M:%S %Z"),
            dst=dst_note(schedule, fire),
        )
        for fire in schedule.next_n(clock(request).now(), count)
    ]
    preview = SchedulePreview(cron=cron, timezone=timezone, description=describe_cron(cron, timezone), fires=fires)
    return web.json_response(preview.to_json())
