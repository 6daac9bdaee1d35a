"""Destinations: the MongoDB databases jobs write into; `config.uri` is write-only."""

from __future__ import annotations

from aiohttp import web

from api.context import db, object_id, read_body, workspace_id
from api.openapi import describe
from api.schemas import DestinationList
from shared.models import Destination, DestinationInput
from shared.store import destinations as store

routes = web.RouteTableDef()
TAG = "destinations"
COLLECTION = "/api/workspaces/{ws}/destinations"
ITEM = COLLECTION + "/{id}"


@routes.get(COLLECTION)
@describe("List the workspace's destinations", tag=TAG, response=DestinationList, errors=(404,))
async def list_destinations(request: web.Request) -> web.Response:
    destinations = await store.list_destinations(db(request), workspace_id(request))
    return web.json_response({"items": [destination.to_json() for destination in destinations]})


@routes.post(COLLECTION)
@describe("Create a destination", tag=TAG, body=DestinationInput, response=Destination, status=201,
          errors=(404, 409))
async def create_destination(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, DestinationInput)
    destination = await store.create_destination(db(request), ws, body)
    return web.json_response(destination.to_json(), status=201)


@routes.get(ITEM)
@describe("Get a destination (secrets redacted)", tag=TAG, response=Destination, errors=(404,))
async def get_destination(request: web.Request) -> web.Response:
    destination = await store.get_destination(db(request), workspace_id(request), object_id(request, "id"))
    return web.json_response(destination.to_json())


@routes.put(ITEM)
@describe("Replace a destination; a redacted value sent back keeps the stored secret", tag=TAG,
          body=DestinationInput, response=Destination, errors=(404, 409))
async def replace_destination(request: web.Request) -> web.Response:
    ws, destination_id = workspace_id(request), object_id(request, "id")
    body = await read_body(request, DestinationInput)
    destination = await store.replace_destination(db(request), ws, destination_id, body)
    return web.json_response(destination.to_json())


@routes.delete(ITEM)
@describe("Delete a destination (409 while a job uses it)", tag=TAG, status=204, errors=(404, 409))
async def delete_destination(request: web.Request) -> web.Response:
    await store.delete_destination(db(request), workspace_id(request), object_id(request, "id"))
    return web.Response(status=204)
