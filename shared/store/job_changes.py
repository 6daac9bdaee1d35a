"""The `job_changes` collection: the change log of a job, one entry per write by a client.

`{jobId, workspaceId, at, actor: {tokenId, name, admin}, action, changes: [{field, old, new}], note?}`;
secrets appear as `********`. Entries outlive a deleted job for the run-retention period (a TTL index on
`at`), so "who deleted it" stays answerable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from syncjobs.shared.clock import to_ms
from syncjobs.shared.models import SyncJob
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.paging import PageRequest, keyset_page
from syncjobs.shared.secret_fields import REDACTED, is_secret_key, redact
from syncjobs.shared.store.api_tokens import TokenGrant

# What a job's answer holds that is the server's, not the client's: never a change of the log.
SERVER_FIELDS = frozenset(
    {"id", "workspaceId", "version", "createdAt", "updatedAt", "lastRunAt", "lastStatus", "lastError"}
    | {"lastDurationMs", "averageDurationMs", "nextRunAt"}
)


@dataclass(frozen=True)
class Change:
    action: str  # create, edit, toggle, delete, backfill, cancel
    changes: list[Document]
    note: str | None = None


def _shown(field: str, value: Any) -> Any:
    return REDACTED if is_secret_key(field) and value is not None else redact(value)


def field_changes(old: Document | None, new: Document | None) -> list[Document]:
    """Pure: the client-visible fields that differ between two answers of a job (None: absent), by name."""
    before, after = old or {}, new or {}
    names = sorted((set(before) | set(after)) - SERVER_FIELDS)
    return [
        {"field": name, "old": _shown(name, before.get(name)), "new": _shown(name, after.get(name))}
        for name in names
        if before.get(name) != after.get(name)
    ]


# The leader's own writes on a job (a pause that ran out) are signed by no token.
SCHEDULER: Document = {"tokenId": None, "name": "scheduler", "admin": True}


def actor_of(grant: TokenGrant) -> Document:
    return {"tokenId": grant.token_id, "name": grant.name, "admin": grant.is_admin}


async def record(
    db: Database, workspace_id: ObjectId, job_id: ObjectId, actor: Document, change: Change, now: datetime
) -> None:
    """Append an entry, right after the write it describes (a process that dies between the two loses it)."""
    entry: Document = {
        "_id": ObjectId(),
        "jobId": job_id,
        "workspaceId": workspace_id,
        "at": to_ms(now),
        "actor": actor,
        "action": change.action,
        "changes": change.changes,
    }
    if change.note is not None:
        entry["note"] = change.note
    await db.job_changes.insert_one(entry)


async def history(
    db: Database, workspace_id: ObjectId, job_id: ObjectId, page: PageRequest
) -> tuple[list[Document], str | None]:
    """A job's entries, newest first (also of a job since deleted, until retention removes them)."""
    scope = {"workspaceId": workspace_id, "jobId": job_id}
    found = await keyset_page(db, "job_changes", scope, "_id", page, descending=True)
    return found.docs, found.next


async def record_by_scheduler(db: Database, job: SyncJob, at: datetime, action: str) -> None:
    """The leader's entry: a pause ended at its `until` (`at`)."""
    changes = [{"field": "paused", "old": True, "new": False}]
    await record(db, ObjectId(job.workspace_id), ObjectId(job.id), SCHEDULER, Change(action, changes), at)
