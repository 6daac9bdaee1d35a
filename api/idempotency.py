"""`Idempotency-Key` on the POSTs that create or start something (IETF draft, as Prefect and Stripe use it).

The same key and request within 24 h answer the first answer again, status included, and write nothing;
the same key with another request is a 422 naming `Idempotency-Key`; one still in flight is a 409. Keys are
per workspace. Only a successful answer is kept: a refused or failed request frees its key, so the client
may fix the request and retry with it.
"""

from __future__ import annotations

import functools
import hashlib

from aiohttp import web
from syncjobs.api.context import clock, db, workspace_id
from syncjobs.api.openapi import IDEMPOTENT, Handler
from syncjobs.shared.errors import Conflict, ValidationFailed
from syncjobs.shared.store import idempotency_keys
from syncjobs.shared.store.idempotency_keys import StoredAnswer

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _key(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValidationFailed(HEADER, f"1 to {MAX_KEY_LENGTH} printable ASCII characters, no spaces")
    return key


def idempotent(handler: Handler) -> Handler:
    """Wrap a creating POST; put it under `@describe` so the document describes the wrapped handler."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        key = _key(request)
        if key is None:
            return await handler(request)
        ws = workspace_id(request)
        digest = hashlib.sha256(f"{request.method} {request.path}\n".encode() + await request.read()).hexdigest()
        found = await idempotency_keys.begin(db(request), ws, key, digest, clock(request).now())
        if found.state == "other_request":
            raise ValidationFailed(HEADER, "already used with another request (another body or route)")
        if found.state == "in_flight":
            raise Conflict(
                "a request with this Idempotency-Key is still in flight", [{"field": HEADER, "message": "in flight"}]
            )
        if found.answer is not None:
            headers = {"ETag": found.answer.etag} if found.answer.etag else None
            return web.Response(
                status=found.answer.status, body=found.answer.body, content_type="application/json", headers=headers
            )
        try:
            response = await handler(request)
        except Exception:
            await idempotency_keys.release(db(request), ws, key)
            raise
        if isinstance(response, web.Response) and isinstance(response.body, bytes) and response.status < 300:
            answer = StoredAnswer(response.status, response.body, response.headers.get("ETag"))
            await idempotency_keys.answered(db(request), ws, key, answer)
        else:
            await idempotency_keys.release(db(request), ws, key)
        return response

    IDEMPOTENT.add(wrapper)
    return wrapper
