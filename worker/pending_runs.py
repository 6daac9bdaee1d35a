"""The pending runs a claimer knows of, by workspace, oldest first. No I/O.

Fed by the change stream (each inserted pending run) and replaced by a periodic re-read; a claim is then
one write by `_id`, never a query over every pending run (which costs in proportion to the backlog).
A run another replica claimed stays here until this claimer tries it once or the next re-read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId


@dataclass(frozen=True, order=True)
class PendingRun:
    """What a claimer needs of a pending run: its order (createdAt, _id), workspace, job and due time."""

    created_at: datetime
    run_id: ObjectId
    workspace_id: ObjectId = field(compare=False)
    job_id: ObjectId = field(compare=False)
    due_at: datetime | None = field(compare=False, default=None)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PendingRun:
        return cls(doc["createdAt"], doc["_id"], doc["workspaceId"], doc["jobId"], doc.get("dueAt"))


class PendingRuns:
    def __init__(self) -> None:
        self._runs: dict[ObjectId, PendingRun] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, run: PendingRun) -> None:
        self._runs[run.run_id] = run

    def discard(self, run_id: ObjectId) -> None:
        self._runs.pop(run_id, None)

    def replace(self, runs: Iterable[PendingRun]) -> None:
        self._runs = {run.run_id: run for run in runs}

    def due_by_workspace(self, now: datetime, waiting_jobs: set[ObjectId]) -> dict[ObjectId, list[PendingRun]]:
        """The runs due at `now` of jobs not waiting for their running run, per workspace, oldest first."""
        due: dict[ObjectId, list[PendingRun]] = {}
        for run in sorted(self._runs.values()):
            if (run.due_at is None or run.due_at <= now) and run.job_id not in waiting_jobs:
                due.setdefault(run.workspace_id, []).append(run)
        return due

    def next_due_after(self, now: datetime) -> datetime | None:
        """The earliest due time still to come (a retry's backoff), if any."""
        return min((run.due_at for run in self._runs.values() if run.due_at and run.due_at > now), default=None)
