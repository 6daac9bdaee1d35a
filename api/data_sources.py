"""Data sources: where jobs read from. Secrets in `config` are write-only (redacted on the way out)."""

from __future__ import annotations

from aiohttp import web

from api.context import db, object_id, read_body, workspace_id
from api.openapi import describe
from api.schemas import DataSourceList
from shared.models import DataSource, DataSourceInput
from shared.store import data_sources as store

routes = web.RouteTableDef()
TAG = "data sources"
COLLECTION = "/api/workspaces/{ws}/data-sources"
ITEM = COLLECTION + "/{id}"


@routes.get(COLLECTION)
@describe("List the workspace's data sources", tag=TAG, response=DataSourceList, errors=(404,))
async def list_sources(request: web.Request) -> web.Response:
    sources = await store.list_sources(db(request), workspace_id(request))
    return web.json_response({"items": [source.to_json() for source in sources]})


@routes.post(COLLECTION)
@describe("Create a data source", tag=TAG, body=DataSourceInput, response=DataSource, status=201,
          errors=(404, 409))
async def create_source(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, DataSourceInput)
    source = await store.create_source(db(request), ws, body)
    return web.json_response(source.to_json(), status=201)


@routes.get(ITEM)
@describe("Get a data source (secrets redacted)", tag=TAG, response=DataSource, errors=(404,))
async def get_source(request: web.Request) -> web.Response:
    source = await store.get_source(db(request), workspace_id(request), object_id(request, "id"))
    return web.json_response(source.to_json())


@routes.put(ITEM)
@describe("Replace a data source; a redacted value sent back keeps the stored secret", tag=TAG,
          body=DataSourceInput, response=DataSource, errors=(404, 409))
async def replace_source(request: web.Request) -> web.Response:
    ws, source_id = workspace_id(request), object_id(request, "id")
    body = await read_body(request, DataSourceInput)
    source = await store.replace_source(db(request), ws, source_id, body)
    return web.json_response(source.to_json())


@routes.delete(ITEM)
@describe("Delete a data source (409 while a job uses it)", tag=TAG, status=204, errors=(404, 409))
async def delete_source(request: web.Request) -> web.Response:
    await store.delete_source(db(request), workspace_id(request), object_id(request, "id"))
    return web.Response(status=204)
