"""The pending runs a claimer knows of, by workspace, oldest first. No I/O.

Fed by the change stream (each inserted pending run) and replaced by a periodic re-read; a claim is then
one write by `_id`, never a query over every pending run (which costs in proportion to the backlog).
A run another replica claimed stays here until this claimer tries it once or the next re-read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId


@dataclass(frozen=True)
class PendingRun:
    """What a claimer needs of a pending run: its creation time (the order), workspace, job and due time,
    and, to start it once claimed, its `document` as read (`job_runs.PENDING_RUN_FIELDS`)."""

    created_at: datetime
    run_id: ObjectId
    workspace_id: ObjectId
    job_id: ObjectId
    due_at: datetime | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PendingRun:
        return cls(doc["createdAt"], doc["_id"], doc["workspaceId"], doc["jobId"], doc.get("dueAt"), doc)


class PendingRuns:
    """Runs created at the same instant (a burst's fires) are ordered by a hash salted per process, so
    replicas start on different runs instead of all racing for the same ones. Each run's place is worked
    out once, as it arrives: a burst asks for the order once per claim round."""

    def __init__(self, salt: bytes | None = None) -> None:
        self._runs: dict[ObjectId, tuple[tuple[datetime, bytes], PendingRun]] = {}
        self._salt = os.urandom(8) if salt is None else salt

    def _order(self, run: PendingRun) -> tuple[datetime, bytes]:
        return run.created_at, hashlib.blake2b(run.run_id.binary, key=self._salt, digest_size=8).digest()

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, run: PendingRun) -> None:
        self._runs[run.run_id] = (self._order(run), run)

    def discard(self, run_id: ObjectId) -> None:
        self._runs.pop(run_id, None)

    def replace(self, runs: Iterable[PendingRun]) -> None:
        self._runs = {}
        for run in runs:
            self.add(run)

    def due_by_workspace(self, now: datetime, waiting_jobs: set[ObjectId]) -> dict[ObjectId, list[PendingRun]]:
        """The runs due at `now` of jobs not waiting for their running run, per workspace, oldest first."""
        due: dict[ObjectId, list[PendingRun]] = {}
        for _, run in sorted(self._runs.values(), key=_place):
            if (run.due_at is None or run.due_at <= now) and run.job_id not in waiting_jobs:
                due.setdefault(run.workspace_id, []).append(run)
        return due

    def next_due_after(self, now: datetime) -> datetime | None:
        """The earliest due time still to come (a retry's backoff), if any."""
        return min((run.due_at for _, run in self._runs.values() if run.due_at and run.due_at > now), default=None)


def _place(entry: tuple[tuple[datetime, bytes], PendingRun]) -> tuple[datetime, bytes]:
    return entry[0]
