"""Workspace tokens over REST: list, create (the value is shown once), revoke. A `read` token may only GET."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from aiohttp import web
from bson import ObjectId
from pydantic import AwareDatetime, Field
from syncjobs.api.context import clock, db, object_id, page_request, read_body, workspace_id
from syncjobs.api.idempotency import idempotent
from syncjobs.api.listing import FoundPage, paged_list
from syncjobs.api.openapi import describe
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.models import Camel, Name, Output
from syncjobs.shared.store import api_tokens

routes = web.RouteTableDef()
TAG = "tokens"
COLLECTION = "/api/workspaces/{ws}/tokens"


class NewToken(Camel):
    """What every token is created with (an admin token is this; a workspace's adds its scope)."""

    name: Name
    # an ISO 8601 string with an offset: strict mode would take only a datetime object, which JSON has not
    expires_at: AwareDatetime | None = Field(default=None, strict=False)


class TokenInput(NewToken):
    scope: Literal["full", "read"] = "full"


class ListedToken(Output):
    """What a list shows of any token, a workspace's or an admin's: never the token itself."""

    id: str
    name: str
    created_at: AwareDatetime | None = None
    last_used_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None


class Token(ListedToken):
    workspace_id: str
    scope: Literal["full", "read"] = "full"


class CreatedToken(Token):
    """The create's answer: the only document that ever carries the token."""

    token: str


class TokenList(Output):
    items: list[Token]
    next: str | None


T = TypeVar("T", bound=ListedToken)


def token_view(doc: dict[str, Any], model: type[T], **extra: Any) -> T:
    """A stored token (its hash already left out) as `model` shows it: `tokenId` is its id."""
    fields = {k: str(v) if isinstance(v, ObjectId) else v for k, v in doc.items() if k != "tokenId"}
    return model.model_validate({**fields, "id": str(doc["tokenId"]), **extra})


def check_expiry(request: web.Request, body: NewToken) -> None:
    if body.expires_at is not None and body.expires_at <= clock(request).now():
        raise ValidationFailed("expiresAt", "must be in the future")


@paged_list(
    routes,
    COLLECTION,
    "List the workspace's tokens (name, scope, created, last used, expiry; never the token)",
    tag=TAG,
    listing=TokenList,
)
async def list_tokens(request: web.Request) -> FoundPage:
    docs, next_page = await api_tokens.list_tokens(db(request), workspace_id(request), page_request(request))
    return [token_view(doc, Token) for doc in docs], next_page


@routes.post(COLLECTION)
@describe(
    "Create a token for the workspace; the answer carries the token, the only time it is shown",
    tag=TAG,
    body=TokenInput,
    response=CreatedToken,
    status=201,
    errors=(403, 404, 409),
)
@idempotent
async def create_token(request: web.Request) -> web.Response:
    ws = workspace_id(request)
    body = await read_body(request, TokenInput)
    check_expiry(request, body)
    token = api_tokens.new_token_value()
    doc = await api_tokens.store_token(db(request), token, ws, body.name, scope=body.scope, expires_at=body.expires_at)
    return web.json_response(token_view(doc, CreatedToken, token=token).to_json(), status=201)


@routes.delete(COLLECTION + "/{id}")
@describe(
    "Revoke a token: every api replica refuses it (401) from the next request on",
    tag=TAG,
    status=204,
    errors=(403, 404),
)
async def revoke_token(request: web.Request) -> web.Response:
    await api_tokens.revoke_token(db(request), workspace_id(request), object_id(request, "id"))
    return web.Response(status=204)
