"""Workspaces: the tenant every other object belongs to. Only an admin token creates one."""

from __future__ import annotations

from aiohttp import web
from syncjobs.api.auth import require_admin
from syncjobs.api.context import db, page_request, read_body, workspace_id
from syncjobs.api.listing import FoundPage, paged_list
from syncjobs.api.openapi import describe
from syncjobs.shared.models import Output, Workspace, WorkspaceInput
from syncjobs.shared.store import workspaces as store

routes = web.RouteTableDef()
TAG = "workspaces"


class WorkspaceList(Output):
    items: list[Workspace]
    next: str | None


@paged_list(
    routes,
    "/api/workspaces",
    "List every workspace, oldest first (admin token)",
    tag=TAG,
    listing=WorkspaceList,
    errors=(403, 422),
)
async def list_workspaces(request: web.Request) -> FoundPage:
    require_admin(request)
    return await store.list_workspaces(db(request), page_request(request))


@routes.post("/api/workspaces")
@describe(
    "Create a workspace (admin token)", tag=TAG, body=WorkspaceInput, response=Workspace, status=201, errors=(403,)
)
async def create_workspace(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_body(request, WorkspaceInput)
    workspace = await store.create_workspace(db(request), body.name)
    return web.json_response(workspace.to_json(), status=201)


@routes.get("/api/workspaces/{ws}")
@describe("Get a workspace", tag=TAG, response=Workspace, errors=(404,))
async def get_workspace(request: web.Request) -> web.Response:
    workspace = await store.get_workspace(db(request), workspace_id(request))
    return web.json_response(workspace.to_json())
