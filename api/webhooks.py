"""Webhooks: where a workspace's alert and run events are POSTed, signed with the webhook's write-only secret."""

from __future__ import annotations

from aiohttp import web
from syncjobs.api.context import (
    clock,
    connection_rules,
    db,
    object_id,
    page_request,
    read_body,
    workspace_id,
)
from syncjobs.api.editing import etag, if_match
from syncjobs.api.idempotency import idempotent
from syncjobs.api.listing import FoundPage, paged_list
from syncjobs.api.openapi import describe
from syncjobs.api.schemas import WebhookDeliveryList, WebhookList
from syncjobs.shared.connection_rules import check_url
from syncjobs.shared.models import CreatedWebhook, WebhookInput
from syncjobs.shared.store import webhooks as store

routes = web.RouteTableDef()
TAG = "webhooks"
COLLECTION = "/api/workspaces/{ws}/webhooks"
ITEM = COLLECTION + "/{id}"


@paged_list(
    routes,
    COLLECTION,
    "List the workspace's webhooks, oldest first (secrets are never shown)",
    tag=TAG,
    listing=WebhookList,
)
async def list_webhooks(request: web.Request) -> FoundPage:
    return await store.list_webhooks(db(request), workspace_id(request), page_request(request))


@routes.post(COLLECTION)
@describe(
    "Register a webhook for alert and/or run events; the answer carries its signing secret, the only time it is shown",
    tag=TAG,
    body=WebhookInput,
    response=CreatedWebhook,
    status=201,
    errors=(404, 409),  # 422 also when the URL resolves to an address the egress policy refuses
)
@idempotent
async def create_webhook(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, WebhookInput)
    await check_url(connection_rules(request), str(body.url), field_name="url", at_run_time=False)
    hook = await store.create_webhook(db(request), ws, body, clock(request).now())
    return web.json_response(hook.to_json(), status=201, headers=etag(hook.version))


@routes.delete(ITEM)
@describe("Delete a webhook; If-Match makes it conditional", tag=TAG, status=204, errors=(404, 412))
async def delete_webhook(request: web.Request) -> web.Response:
    await store.delete_webhook(db(request), workspace_id(request), object_id(request, "id"), if_match(request))
    return web.Response(status=204)


@paged_list(
    routes, ITEM + "/deliveries", "The webhook's deliveries, newest first", tag=TAG, listing=WebhookDeliveryList
)
async def list_deliveries(request: web.Request) -> FoundPage:
    ws, hook = workspace_id(request), object_id(request, "id")
    return await store.list_deliveries(db(request), ws, hook, page_request(request))
