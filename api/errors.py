"""The one place where errors become HTTP: each domain error class maps to one status, one JSON shape.

Body: `{"error": {"code": "...", "message": "...", "details": [...]}}`, also for aiohttp's own
404 / 405 / 413 and for anything unexpected (500, logged, no internals in the body).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pymongo.errors import ConnectionFailure
from syncjobs.api.context import MAX_BODY_BYTES, MalformedBody
from syncjobs.shared import errors
from syncjobs.shared.logging import get_logger

log = get_logger(__name__)

# Most specific first: the first class the error is an instance of decides the status.
STATUS_BY_ERROR: tuple[tuple[type[errors.SyncjobsError], int], ...] = (
    (MalformedBody, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PreconditionFailed, 412),
    (errors.StaleLeader, 409),
    (errors.ValidationFailed, 422),
    (errors.DatabaseUnavailable, 503),
    (errors.SyncjobsError, 500),
)

CODE_BY_HTTP_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_of(exc: errors.SyncjobsError) -> int:
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return web.json_response(body, status=status, headers=headers)


def _from_domain(exc: errors.SyncjobsError) -> web.Response:
    status = status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="syncjobs"'} if status == 401 else None
    if status >= 500:
        log.error("request_failed", code=exc.code, error=exc.message)
    return error_response(status, exc.code, exc.message, exc.details, headers)


def _from_http(exc: web.HTTPException) -> web.StreamResponse:
    """aiohttp's own errors (no route, wrong method, body too large) in our shape; others pass through."""
    if exc.status < 400:
        raise exc
    code = CODE_BY_HTTP_STATUS.get(exc.status, "http_error")
    details: list[dict[str, Any]] = []
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        details = [{"field": "method", "message": f"allowed: {headers['Allow']}"}]
    message = f"the body is larger than the {MAX_BODY_BYTES} byte limit" if exc.status == 413 else exc.reason
    return error_response(exc.status, code, message, details, headers or None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.SyncjobsError as exc:
        return _from_domain(exc)
    except web.HTTPException as exc:
        return _from_http(exc)
    except ConnectionFailure as exc:
        log.error("database_unavailable", error=str(exc))
        return error_response(503, errors.DatabaseUnavailable.code, "the database is unavailable")
    except Exception:
        log.exception("request_crashed", method=request.method, path=request.path)
        return error_response(500, "internal_error", "internal server error")
