"""The OpenAPI 3.1 document, built from the live route table and the pydantic models' JSON schemas.

Handlers declare what they take and answer with `@describe(...)`; a route without a declaration is still
listed (with a generic answer), so the document never misses a route the server actually serves.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from syncjobs.api.auth import is_open
from syncjobs.api.schemas import ErrorBody, OpenApiDocument

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SCHEMA_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    body_optional: bool = False
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    merge_patch: bool = False  # the body is a JSON merge patch of `body` (RFC 7396)


OPERATIONS: dict[Handler, Operation] = {}
IDEMPOTENT: set[Handler] = set()  # handlers that take an Idempotency-Key (api/idempotency.py)
IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


def describe(
    summary: str,
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    body_optional: bool = False,
    response: type[BaseModel] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    query: dict[str, dict[str, Any]] | None = None,
    merge_patch: bool = False,
) -> Callable[[Handler], Handler]:
    """Record a handler's contract for the OpenAPI document; the handler itself is unchanged."""

    def register(handler: Handler) -> Handler:
        OPERATIONS[handler] = Operation(
            summary, tag, body, body_optional, response, status, errors, query or {}, merge_patch
        )
        return handler

    return register


ERROR_DESCRIPTIONS = {
    400: "Malformed JSON",
    401: "Missing, unknown, revoked or expired token",
    403: "The token may not do this",
    404: "Unknown or malformed id, or an object of another workspace",
    409: "Duplicate name, or in use",
    412: "If-Match (or the body's `version`) names a version the document no longer has; nothing written",
    415: "PATCH takes application/merge-patch+json",
    413: "Body over 1 MiB",
    422: "Invalid field (named in details)",
    500: "Unexpected failure (logged; the body reveals nothing of it)",
    503: "Database unavailable",
}


class _Schemas:
    """Collects component schemas, hoisting pydantic's `$defs` into `components.schemas`."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, str]:
        schema = model.model_json_schema(by_alias=True, ref_template=SCHEMA_REF, mode=mode)  # type: ignore[arg-type]
        for name, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(name, definition)
        self.components.setdefault(model.__name__, schema)
        return {"$ref": SCHEMA_REF.format(model=model.__name__)}

    def patch_ref(self, model: type[BaseModel]) -> dict[str, str]:
        """`<Model>Patch`: a merge patch of the model, every member optional and nullable (null resets it)."""
        template = SCHEMA_REF.replace("{model}", "{model}Patch")
        schema = model.model_json_schema(by_alias=True, ref_template=template, mode="validation")
        for name, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(f"{name}Patch", _patchable(definition))
        self.components.setdefault(f"{model.__name__}Patch", _patchable(schema))
        return {"$ref": SCHEMA_REF.format(model=f"{model.__name__}Patch")}


def _patchable(schema: dict[str, Any]) -> dict[str, Any]:
    patch = {key: value for key, value in schema.items() if key != "required"}
    if "properties" in patch:
        patch["properties"] = {
            name: {"anyOf": [_patchable(prop) if "properties" in prop else prop, {"type": "null"}]}
            for name, prop in patch["properties"].items()
        }
    return patch


def _parameters(path: str, op: Operation | None, idempotent: bool = False) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    if op is not None:
        params += [
            {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in op.query.items()
        ]
        params += [IF_MATCH] if 412 in op.errors else []
    return params + ([IDEMPOTENCY_KEY] if idempotent else [])


def _operation(
    path: str, method: str, op: Operation | None, schemas: _Schemas, idempotent: bool = False
) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": schemas.ref(ErrorBody, "serialization")}}}
    if op is None:  # a route whose handler declares nothing (the dashboard's static files)
        spec: dict[str, Any] = {"summary": f"{method} {path}", "responses": {"default": {"description": "as served"}}}
        if is_open(path):
            spec["security"] = []
        if params := _parameters(path, None):
            spec["parameters"] = params
        return spec
    content = (
        {"content": {"application/json": {"schema": schemas.ref(op.response, "serialization")}}} if op.response else {}
    )
    responses: dict[str, Any] = {str(op.status): {"description": op.summary, **content}}
    open_path = is_open(path)
    # Any operation may meet an unexpected failure or an unreachable database.
    statuses = {500, 503} | set(op.errors) | ({400, 413, 422} if op.body else set()) | (set() if open_path else {401})
    for status in sorted(statuses):
        responses[str(status)] = {"description": ERROR_DESCRIPTIONS.get(status, "Error"), **error}
    spec = {"summary": op.summary, "tags": [op.tag], "responses": responses}
    if open_path:
        spec["security"] = []
    if params := _parameters(path, op, idempotent):
        spec["parameters"] = params
    if op.body is not None and op.merge_patch:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/merge-patch+json": {"schema": schemas.patch_ref(op.body)}},
        }
    elif op.body is not None:
        spec["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}},
        }
    return spec


def build_openapi(app: web.Application) -> dict[str, Any]:
    """One entry per (path, method) the router serves, HEAD excepted (aiohttp adds it to every GET)."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        method = route.method.upper()
        if method in ("HEAD", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        op = OPERATIONS.get(route.handler)
        idempotent = route.handler in IDEMPOTENT
        paths.setdefault(path, {})[method.lower()] = _operation(path, method, op, schemas, idempotent)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "syncjobs",
            "version": "0.1.0",
            "description": 'Recurring data-sync jobs. Lists answer `{"items": [...]}`; run history '
            'answers `{"runs": [...], "next": cursor|null}`.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@describe("This OpenAPI 3.1 document", tag="meta", response=OpenApiDocument)
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(request.app))
