"""Typed application state and the request helpers every handler uses (path ids, body, token grant).

Routes under a workspace name their path parameter `{ws}`; object ids are named by the handler
(`{id}`, ...). The auth middleware (api/auth.py) stores the request's token grant under GRANT_KEY and has
already checked that the grant may act in `{ws}` and that the workspace exists.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from bson import ObjectId
from pydantic import BaseModel, ValidationError
from syncjobs.shared.clock import Clock
from syncjobs.shared.connection_rules import ConnectionRules
from syncjobs.shared.errors import NotFound, SyncjobsError, ValidationFailed
from syncjobs.shared.models import parse_object_id
from syncjobs.shared.mongo import Database
from syncjobs.shared.paging import DEFAULT_LIMIT, MAX_LIMIT, PageRequest, parse_limit
from syncjobs.shared.settings import Settings
from syncjobs.shared.store.api_tokens import TokenGrant

M = TypeVar("M", bound=BaseModel)

DB_KEY = web.AppKey("db", Database)
SETTINGS_KEY = web.AppKey("settings", Settings)
CLOCK_KEY = web.AppKey("clock", Clock)
RULES_KEY = web.AppKey("connection_rules", ConnectionRules)
GRANT_KEY = web.RequestKey("grant", TokenGrant)

WORKSPACE_PARAM = "ws"
MAX_BODY_BYTES = 1024 * 1024  # a larger body is a 413
MAX_JSON_DEPTH = 32  # BSON itself stops at 100; nothing of ours nests anywhere near this


class MalformedBody(SyncjobsError):
    """The body is not JSON at all (400), as opposed to JSON that fails validation (422)."""

    code = "malformed_json"


def db(request: web.Request) -> Database:
    return request.app[DB_KEY]


def clock(request: web.Request) -> Clock:
    return request.app[CLOCK_KEY]


def connection_rules(request: web.Request) -> ConnectionRules:
    return request.app[RULES_KEY]


def grant(request: web.Request) -> TokenGrant:
    return request[GRANT_KEY]


# The query parameters of every list (documented once for the OpenAPI document).
PAGE_QUERY: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "after": {"type": "string", "description": "the `next` of the previous page"},
}


def page_request(request: web.Request) -> PageRequest:
    """`limit` and `after` of a list; a bad limit is a 422 naming it (a bad cursor too, when it is read)."""
    return PageRequest(parse_limit(request.query.get("limit")), request.query.get("after"))


def object_id(request: web.Request, name: str) -> ObjectId:
    """A path id; a malformed one names nothing, so it is a 404 like an unknown one."""
    value = parse_object_id(request.match_info.get(name, ""))
    if value is None:
        raise NotFound(f"no object with this {name}")
    return value


def workspace_id(request: web.Request) -> ObjectId:
    """The `{ws}` of the path, if this request's token may act in it; a foreign workspace is a 404."""
    value = parse_object_id(request.match_info.get(WORKSPACE_PARAM, ""))
    if value is None or not grant(request).may_access(value):
        raise NotFound("workspace not found")
    return value


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as the body's own dotted path (aliases are already camelCase)."""
    return ".".join(str(part) for part in loc) or "body"


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """Every pydantic error, each naming its field; the first one heads the message."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    failure = ValidationFailed(field_path(first["loc"]), first["msg"])
    failure.details = [{"field": field_path(err["loc"]), "message": err["msg"]} for err in errors]
    return failure


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in children)
    return deepest


async def read_json(request: web.Request) -> Any:
    """The body as JSON; 400 if it is not JSON (an empty body is not) or nests deeper than MAX_JSON_DEPTH,
    413 (aiohttp) past client_max_size."""
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedBody(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise MalformedBody(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse and validate the body as `model`: 400 for malformed JSON, 422 naming the field otherwise."""
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None


async def read_optional_body(request: web.Request, model: type[M]) -> M | None:
    """For actions whose body may be left out (toggle): no body at all is None."""
    if not await request.read():
        return None
    return await read_body(request, model)
