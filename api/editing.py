"""Safe concurrent edits: versions as ETags, If-Match, GET-edit-PUT with read-only fields, JSON merge patch.

A versioned document (job, source, destination, webhook) answers with `ETag: "<version>"`. A write that
carries `If-Match` (or, in a PUT or PATCH body, the `version` a GET returned) lands only on that version,
in the same conditional write; a stale one is a 412 and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from syncjobs.api.context import read_json, validation_failed
from syncjobs.api.openapi import describe
from syncjobs.shared.errors import PreconditionFailed, ValidationFailed

M = TypeVar("M", bound=BaseModel)
_ETAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')
MERGE_PATCH = "application/merge-patch+json"
Edit = Callable[[web.Request, bool], Awaitable[web.Response]]  # (request, patch): PUT when patch is False


def etag(version: int) -> dict[str, str]:
    """The headers that carry a document's version."""
    return {"ETag": f'"{version}"'}


def if_match(request: web.Request) -> int | None:
    """The version `If-Match` names (None without one, or `*`); one that names no version of ours is a 412."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    match = _ETAG.match(raw.strip())
    if match is None:
        raise PreconditionFailed('If-Match must be an ETag this server sent, e.g. "3"')
    return int(match.group(1))


@dataclass(frozen=True)
class FieldRoles:
    """Which of a document's answer fields a client may not set: `read_only` ones may be sent back only
    unchanged (a changed one is a 422 naming it); `server_owned` ones are ignored (the server keeps them
    up to date: nextRunAt, lastStatus, updatedAt...)."""

    read_only: frozenset[str]
    server_owned: frozenset[str]


def editable(body: Any, current: dict[str, Any], roles: FieldRoles) -> tuple[dict[str, Any], int | None]:
    """A PUT or PATCH body without the fields a GET returned that are not editable, and the `version` it
    carried (a precondition like If-Match)."""
    if not isinstance(body, dict):
        raise ValidationFailed("body", "a JSON object")
    fields: dict[str, Any] = {}
    version: int | None = None
    for key, value in body.items():
        if key == "version":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValidationFailed("version", "the integer version a GET returned")
            version = value
        elif key in roles.server_owned:
            continue
        elif key in roles.read_only:
            if value != current.get(key):
                raise ValidationFailed(key, "read-only: it may be sent back unchanged, not changed")
        else:
            fields[key] = value
    return fields, version


def expected_version(request: web.Request, body_version: int | None) -> int | None:
    """The version a write must find: If-Match's, else the body's; both given and different is a 412."""
    header = if_match(request)
    if header is not None and body_version is not None and header != body_version:
        raise PreconditionFailed("If-Match and the body's version name different versions")
    return header if header is not None else body_version


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge member by member, `null` removes a member (so it takes its default), anything
    else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def editable_fields(model: type[BaseModel], document: dict[str, Any]) -> dict[str, Any]:
    """The editable part of a document as answered (the model's fields, by alias)."""
    aliases: Iterable[str] = (field.alias or name for name, field in model.model_fields.items())
    return {alias: document[alias] for alias in aliases if alias in document}


async def put_body(
    request: web.Request, model: type[M], current: dict[str, Any], roles: FieldRoles
) -> tuple[M, int | None]:
    """A PUT's body as `model`, read-only fields checked, and the version it must find."""
    fields, version = editable(await read_json(request), current, roles)
    return validate(model, fields), expected_version(request, version)


async def patch_body(
    request: web.Request, model: type[M], current: dict[str, Any], roles: FieldRoles
) -> tuple[M, int | None]:
    """A PATCH's merge patch applied to the document's editable fields, as `model`, and the version it
    must find."""
    if request.content_type not in (MERGE_PATCH, "application/json"):
        raise web.HTTPUnsupportedMediaType(reason=f"PATCH takes {MERGE_PATCH}")
    fields, version = editable(await read_json(request), current, roles)
    merged = merge_patch(editable_fields(model, current), fields)
    return validate(model, merged), expected_version(request, version)


def edit_routes(
    routes: web.RouteTableDef,
    path: str,
    *,
    replace: str,
    patch: str,
    tag: str,
    body: type[BaseModel],
    response: type[BaseModel],
    errors: tuple[int, ...],
) -> Callable[[Edit], Edit]:
    """Declare PUT `path` (summary `replace`) and PATCH `path` (summary `patch`, a JSON merge patch, so
    also a 415) on one `edit`: the two differ only in how the body is read (put_body or patch_body)."""

    def register(edit: Edit) -> Edit:
        async def put(request: web.Request) -> web.Response:
            return await edit(request, False)

        async def merge_patch(request: web.Request) -> web.Response:
            return await edit(request, True)

        routes.put(path)(describe(replace, tag=tag, body=body, response=response, errors=errors)(put))
        merge_errors = (*errors, 415)
        declared = describe(patch, tag=tag, body=body, merge_patch=True, response=response, errors=merge_errors)
        routes.patch(path)(declared(merge_patch))
        return edit

    return register
