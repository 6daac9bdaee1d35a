"""Data sources and destinations: the same five routes over two collections. Secrets in `config` are
write-only (redacted on the way out; a redacted value sent back keeps the stored one)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from syncjobs.api.connection_checks import vet_connection
from syncjobs.api.context import db, object_id, page_request, read_body, workspace_id
from syncjobs.api.editing import FieldRoles, edit_routes, etag, if_match, patch_body, put_body
from syncjobs.api.idempotency import idempotent
from syncjobs.api.listing import FoundPage, paged_list
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import DataSourceList, DestinationList
from syncjobs.shared.models import (
    DataSource,
    DataSourceInput,
    Destination,
    DestinationInput,
    Output,
    OutputT,
)
from syncjobs.shared.secret_fields import check_kept_secrets, keep_secrets
from syncjobs.shared.store import data_sources, destinations
from syncjobs.shared.store.connections import ConnectionStore, InputT


def _kind_and_config(body: Any) -> tuple[str, dict[str, Any]]:
    fields = body.model_dump(by_alias=True)
    return str(fields.get("kind", "mongodb")), dict(fields["config"])


CONNECTION_ROLES = FieldRoles(
    read_only=frozenset({"id", "workspaceId", "createdAt"}), server_owned=frozenset({"updatedAt"})
)


def _version(document: Output) -> int:
    version = getattr(document, "version", 1)
    return version if isinstance(version, int) else 1


def connection_routes(
    segment: str,
    noun: str,
    *,
    body: type[InputT],
    document: type[OutputT],
    listing: type[Output],
    store: ConnectionStore[InputT, OutputT],
) -> web.RouteTableDef:
    """List, create, get, replace and delete under `/api/workspaces/{ws}/<segment>`."""
    routes = web.RouteTableDef()
    tag = f"{noun}s"
    collection = f"/api/workspaces/{{ws}}/{segment}"
    item = collection + "/{id}"

    @paged_list(routes, collection, f"List the workspace's {noun}s by name", tag=tag, listing=listing)
    async def list_connections(request: web.Request) -> FoundPage:
        return await store.list(db(request), workspace_id(request), page_request(request))

    @routes.post(collection)
    @describe(
        f"Create a {noun} (422 when it would reach a refused address, the control database or an unknown tap)",
        tag=tag,
        body=body,
        response=document,
        status=201,
        errors=(403, 404, 409),
    )
    @idempotent
    async def create_connection(request: web.Request) -> web.Response:
        ws = workspace_id(request)
        parsed = await read_body(request, body)
        marks = await vet_connection(request, *_kind_and_config(parsed))
        created = await store.create(db(request), ws, parsed, marks=marks)
        return web.json_response(created.to_json(), status=201, headers=etag(_version(created)))

    @routes.get(item)
    @describe(f"Get a {noun} (secrets redacted; its ETag is its version)", tag=tag, response=document, errors=(404,))
    async def get_connection(request: web.Request) -> web.Response:
        found = await store.get(db(request), workspace_id(request), object_id(request, "id"))
        return web.json_response(found.to_json(), headers=etag(_version(found)))

    @edit_routes(
        routes,
        item,
        replace=f"Replace a {noun}; a redacted value sent back keeps the stored secret, read-only fields a GET"
        " returned may come back unchanged; If-Match or the body's `version` make it conditional",
        patch=f"Edit some of a {noun}'s fields with a JSON merge patch (application/merge-patch+json, RFC 7396);"
        " If-Match makes it conditional",
        tag=tag,
        body=body,
        response=document,
        errors=(403, 404, 409, 412),
    )
    async def edit_connection(request: web.Request, patch: bool) -> web.Response:
        ws, connection_id = workspace_id(request), object_id(request, "id")
        current = (await store.get(db(request), ws, connection_id)).to_json()
        parsed, expected = await (patch_body if patch else put_body)(request, body, current, CONNECTION_ROLES)
        kind, config = _kind_and_config(parsed)
        stored = await store.stored_config(db(request), ws, connection_id)
        check_kept_secrets(kind, config, stored)
        marks = await vet_connection(request, kind, keep_secrets(config, stored))
        replaced = await store.replace(db(request), ws, connection_id, parsed, marks=marks, expected_version=expected)
        return web.json_response(replaced.to_json(), headers=etag(_version(replaced)))

    @routes.delete(item)
    @describe(
        f"Delete a {noun} (409 while a job uses it); If-Match makes it conditional",
        tag=tag,
        status=204,
        errors=(404, 409, 412),
    )
    async def delete_connection(request: web.Request) -> web.Response:
        await store.delete(db(request), workspace_id(request), object_id(request, "id"), if_match(request))
        return web.Response(status=204)

    return routes


data_source_routes = connection_routes(
    "data-sources",
    "data source",
    body=DataSourceInput,
    document=DataSource,
    listing=DataSourceList,
    store=data_sources.store,
)
destination_routes = connection_routes(
    "destinations",
    "destination",
    body=DestinationInput,
    document=Destination,
    listing=DestinationList,
    store=destinations.store,
)
