"""Versioned documents (jobs, sources, destinations, webhooks): `version` is +1 on every client write, and
a write that names the version it expects lands only on that version, in the same conditional write."""

from __future__ import annotations

from typing import NoReturn

from syncjobs.shared.errors import NotFound, PreconditionFailed
from syncjobs.shared.mongo import Database, Document


def version_filter(expected: int | None) -> Document:
    """The filter term for an expected version (none: any); a document stored before versions is version 1."""
    if expected is None:
        return {}
    return {"version": {"$in": [1, None]}} if expected == 1 else {"version": expected}


async def refuse(db: Database, collection: str, scope: Document, noun: str, expected: int | None) -> NoReturn:
    """A conditional write matched nothing: 412 when the document is there at another version, else 404."""
    if expected is not None and await db[collection].count_documents(scope, limit=1):
        raise PreconditionFailed(
            f"the {noun} is no longer at version {expected}: read it again",
            [{"field": "If-Match", "message": f"not version {expected}"}],
        )
    raise NotFound(f"{noun} not found")
