"""Cursor pages for every list: `limit` 1-500 (default 100) and an opaque `next` the client passes back as
`after`.

Keyset paging on one unique sort field per list (a job's name in its workspace, a webhook's id...): the
cursor is that field's value in the page's last item, and the next page is `field > value` on an index that
starts with the workspace, so page 100 costs what page 1 costs (no skip, no `$or`: SecantusDB scans a
collection for a top-level `$or`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.mongo import Database, Document

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class PageRequest:
    """What the client asked: how many, and after which cursor (None: the first page)."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None


@dataclass(frozen=True)
class Page:
    docs: list[Document]
    next: str | None


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """`limit` from a query string: an integer from 1 to `maximum`, or a 422 naming `limit`."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ValidationFailed("limit", f"an integer from 1 to {maximum}")
    return int(raw)


def encode_cursor(value: Any) -> str:
    """An opaque cursor for a sort value (a string or an ObjectId)."""
    payload = {"o": str(value)} if isinstance(value, ObjectId) else {"s": value}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The sort value a cursor stands for; a cursor this server did not make is a 422 naming `after`."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(payload, dict) and isinstance(payload.get("s"), str):
            return payload["s"]
        if isinstance(payload, dict) and ObjectId.is_valid(payload.get("o", "")):
            return ObjectId(payload["o"])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise ValidationFailed("after", "not a cursor this server made (pass back a list's `next`)")


async def keyset_page(
    db: Database,
    collection: str,
    query: Document,
    sort_field: str,
    page: PageRequest,
    projection: Document | None = None,
    *,
    descending: bool = False,
) -> Page:
    """One page of `query` in `sort_field` order (a field unique within the query's scope), ascending
    unless `descending`."""
    filters = dict(query)
    if page.after is not None:
        bound = filters.get(sort_field)
        condition = dict(bound) if isinstance(bound, dict) else {} if bound is None else {"$eq": bound}
        filters[sort_field] = {**condition, "$lt" if descending else "$gt": decode_cursor(page.after)}
    order = -1 if descending else 1
    cursor = db[collection].find(filters, projection).sort(sort_field, order).limit(page.limit + 1)
    docs = await cursor.to_list()
    more = len(docs) > page.limit
    docs = docs[: page.limit]
    return Page(docs, encode_cursor(docs[-1][sort_field]) if more else None)
