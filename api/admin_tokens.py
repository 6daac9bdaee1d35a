"""Admin tokens over REST (admin token only): list, create (the value is shown once), revoke.

An admin token is a token like a workspace's: stored hashed, revocable from the next request on. The one
in `SYNCJOBS_ADMIN_TOKEN` is listed with `fromEnvironment`; starting the api with another value retires it,
and `syncjobs token rotate-admin` replaces every admin token with one new one.
"""

from __future__ import annotations

from aiohttp import web
from syncjobs.api.auth import require_admin
from syncjobs.api.context import db, object_id, read_body
from syncjobs.api.openapi import describe
from syncjobs.api.tokens import ListedToken, NewToken, check_expiry, token_view
from syncjobs.shared.models import Output
from syncjobs.shared.store import api_tokens

routes = web.RouteTableDef()
TAG = "admin tokens"
COLLECTION = "/api/admin-tokens"


class AdminTokenInput(NewToken):
    pass  # a new token's name and expiry, under its own name in the OpenAPI document


class AdminToken(ListedToken):
    from_environment: bool = False


class CreatedAdminToken(AdminToken):
    """The create's answer: the only document that ever carries the token."""

    token: str


class AdminTokenList(Output):
    items: list[AdminToken]


@routes.get(COLLECTION)
@describe("List the admin tokens in force (never the token)", tag=TAG, response=AdminTokenList, errors=(403,))
async def list_admin_tokens(request: web.Request) -> web.Response:
    require_admin(request)
    docs = await api_tokens.list_admin_tokens(db(request))
    return web.json_response({"items": [token_view(doc, AdminToken).to_json() for doc in docs]})


@routes.post(COLLECTION)
@describe(
    "Create an admin token; the answer carries the token, the only time it is shown",
    tag=TAG,
    body=AdminTokenInput,
    response=CreatedAdminToken,
    status=201,
    errors=(403,),
)
async def create_admin_token(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_body(request, AdminTokenInput)
    check_expiry(request, body)
    doc = await api_tokens.create_admin_token(db(request), body.name, expires_at=body.expires_at)
    return web.json_response(token_view(doc, CreatedAdminToken).to_json(), status=201)


@routes.delete(COLLECTION + "/{id}")
@describe(
    "Revoke an admin token: every api replica refuses it (401) from the next request on",
    tag=TAG,
    status=204,
    errors=(403, 404),
)
async def revoke_admin_token(request: web.Request) -> web.Response:
    require_admin(request)
    await api_tokens.revoke_admin_token(db(request), object_id(request, "id"))
    return web.Response(status=204)
