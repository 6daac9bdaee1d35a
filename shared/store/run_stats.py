"""Aggregations over `job_runs`: per-job statistics for a time range, run counts, and retention.

The database does the counting: one aggregation over the range's runs (one indexed scan, grouped by job),
then one over the failures after each job's last success (its current streak). Python receives a summary
per job with its last few runs, never the history itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from syncjobs.shared.models import (
    EXECUTED_STATUSES,
    FAILED_STATUSES,
    FINISHED_STATUSES,
    NOT_EXECUTED_STATUSES,
    JobRun,
    RunStatus,
    from_document,
)
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.store import sync_state

RECENT_RUNS = 10


ALERT_WINDOW = timedelta(hours=24)  # the runs alerts are evaluated over: those created this recently


@dataclass(frozen=True)
class JobRunStats:
    """How one job's runs went since `since`; the timestamps let alerts say since when a problem lasts."""

    job_id: str
    job_name: str
    total_executions: int = 0
    success_count: int = 0
    failure_count: int = 0
    skipped_count: int = 0
    missed_count: int = 0
    average_duration_ms: float | None = None
    last_execution: datetime | None = None
    last_status: str | None = None
    consecutive_failures: int = 0
    first_execution_at: datetime | None = None
    first_failure_at: datetime | None = None
    failure_streak_since: datetime | None = None
    first_missed_at: datetime | None = None
    recent_runs: list[JobRun] = field(default_factory=list)
    change_stream_resume_at: datetime | None = None  # a changeStream job's resume point (cluster time)

    @property
    def success_rate(self) -> float | None:
        return round(self.success_count / self.total_executions, 4) if self.total_executions else None

    @property
    def failure_rate(self) -> float | None:
        return round(self.failure_count / self.total_executions, 4) if self.total_executions else None

    def to_json(self) -> dict[str, Any]:
        average = None if self.average_duration_ms is None else round(self.average_duration_ms, 1)
        return {
            "jobId": self.job_id,
            "jobName": self.job_name,
            "totalExecutions": self.total_executions,
            "successCount": self.success_count,
            "failureCount": self.failure_count,
            "skippedCount": self.skipped_count,
            "missedCount": self.missed_count,
            "successRate": self.success_rate,
            "averageDurationMs": average,
            "lastExecution": self.last_execution.isoformat() if self.last_execution else None,
            "lastStatus": self.last_status,
            "consecutiveFailures": self.consecutive_failures,
        }


def _count_if(statuses: Iterable[RunStatus]) -> Document:
    return {"$sum": {"$cond": [{"$in": ["$status", sorted(statuses)]}, 1, 0]}}


def _created_if(statuses: Iterable[RunStatus]) -> Document:
    return {"$cond": [{"$in": ["$status", sorted(statuses)]}, "$createdAt", None]}


def _runs_in_range(workspace_id: ObjectId, since: datetime, job_id: ObjectId | None) -> Document:
    """The workspace's runs in the range, on the (workspaceId, createdAt) index; or one job's, on the
    (jobId, createdAt) index, with no workspace term: beside it SecantusDB plans the workspace index and
    reads every run of the workspace, on every run's alert check (bench/RESULTS.md, "figures behind the
    code")."""
    if job_id is not None:
        return {"jobId": job_id, "createdAt": {"$gte": since}}
    return {"workspaceId": workspace_id, "createdAt": {"$gte": since}}


def summary_pipeline(workspace_id: ObjectId, since: datetime, job_id: ObjectId | None = None) -> list[Document]:
    """One pass over the runs in the range (the workspace's, or one job's), grouped by job."""
    runs_filter = _runs_in_range(workspace_id, since, job_id)
    return [
        {"$match": runs_filter},
        {
            "$group": {
                "_id": "$jobId",
                "total": _count_if(EXECUTED_STATUSES),
                "succeeded": _count_if({RunStatus.SUCCEEDED}),
                "failed": _count_if(FAILED_STATUSES),
                "skipped": _count_if({RunStatus.SKIPPED}),
                "missed": _count_if({RunStatus.MISSED}),
                "averageDurationMs": {
                    "$avg": {"$cond": [{"$in": ["$status", sorted(EXECUTED_STATUSES)]}, "$durationMs", None]}
                },
                "firstExecutionAt": {"$min": _created_if(EXECUTED_STATUSES)},
                "firstFailureAt": {"$min": _created_if(FAILED_STATUSES)},
                "firstMissedAt": {"$min": _created_if(NOT_EXECUTED_STATUSES)},
                "lastSuccessAt": {"$max": _created_if({RunStatus.SUCCEEDED})},
                "recent": {"$topN": {"n": RECENT_RUNS, "sortBy": {"createdAt": -1, "_id": -1}, "output": "$$ROOT"}},
            }
        },
    ]


def streak_pipeline(
    workspace_id: ObjectId, since: datetime, summaries: list[Document], job_id: ObjectId | None = None
) -> list[Document] | None:
    """Each job's current failure streak: its failures after its last success in the range (None: no failures).

    One job's streak has its bound in the match itself: SecantusDB plans no index for a top-level `$or` and
    reads the whole collection (bench/RESULTS.md), which every alert evaluation of a failing job paid."""
    failing = [s for s in summaries if s["failed"]]
    if not failing:
        return None
    match: Document = {**_runs_in_range(workspace_id, since, job_id), "status": {"$in": sorted(FAILED_STATUSES)}}
    if job_id is not None:
        last_success = failing[0].get("lastSuccessAt")
        if last_success:
            match["createdAt"] = {**match["createdAt"], "$gt": last_success}
    else:
        match["$or"] = [
            {"jobId": s["_id"], "createdAt": {"$gt": s["lastSuccessAt"]}}
            if s.get("lastSuccessAt")
            else {"jobId": s["_id"]}
            for s in failing
        ]
    return [
        {"$match": match},
        {"$group": {"_id": "$jobId", "count": {"$sum": 1}, "since": {"$min": "$createdAt"}}},
    ]


def _stats_from(job: Document, summary: Document, streak: Document) -> JobRunStats:
    recent = summary.get("recent") or []
    last: Document = recent[0] if recent else {}
    return JobRunStats(
        job_id=str(job["_id"]),
        job_name=job.get("name", ""),
        total_executions=summary.get("total", 0),
        success_count=summary.get("succeeded", 0),
        failure_count=summary.get("failed", 0),
        skipped_count=summary.get("skipped", 0),
        missed_count=summary.get("missed", 0),
        average_duration_ms=summary.get("averageDurationMs"),
        last_execution=last.get("startedAt") or last.get("createdAt"),
        last_status=last.get("status"),
        consecutive_failures=streak.get("count", 0),
        first_execution_at=summary.get("firstExecutionAt"),
        first_failure_at=summary.get("firstFailureAt"),
        failure_streak_since=streak.get("since"),
        first_missed_at=summary.get("firstMissedAt"),
        recent_runs=[from_document(JobRun, run) for run in recent],
    )


async def _aggregate(db: Database, pipeline: list[Document]) -> dict[Any, Document]:
    cursor = await db.job_runs.aggregate(pipeline)
    return {doc["_id"]: doc for doc in await cursor.to_list()}


async def job_run_stats(
    db: Database, workspace_id: ObjectId, since: datetime, job_id: ObjectId | None = None
) -> list[JobRunStats]:
    """One entry per job of the workspace (or just `job_id`), jobs without runs included, by name."""
    if job_id is not None:  # by _id alone: a workspace term beside it makes SecantusDB scan the workspace
        found = await db.syncjobs.find({"_id": job_id}, {"name": 1, "workspaceId": 1}).to_list()
        return [await one_job_run_stats(db, job, since) for job in found if job["workspaceId"] == workspace_id]
    jobs = await db.syncjobs.find({"workspaceId": workspace_id}, {"name": 1}).sort("name", 1).to_list()
    summaries = await _aggregate(db, summary_pipeline(workspace_id, since))
    streak_query = streak_pipeline(workspace_id, since, list(summaries.values()))
    streaks = await _aggregate(db, streak_query) if streak_query else {}
    resume_times = await sync_state.change_stream_resume_times(db, job_ids=[job["_id"] for job in jobs])
    return [
        replace(entry, change_stream_resume_at=resume_times.get(entry.job_id))
        for entry in (_stats_from(job, summaries.get(job["_id"], {}), streaks.get(job["_id"], {})) for job in jobs)
    ]


async def one_job_run_stats(db: Database, job: Document, since: datetime) -> JobRunStats:
    """The entry of one job whose identity (`{_id, name, workspaceId}`) the caller has already read."""
    workspace_id, job_id = job["workspaceId"], job["_id"]
    summaries = await _aggregate(db, summary_pipeline(workspace_id, since, job_id))
    streak_query = streak_pipeline(workspace_id, since, list(summaries.values()), job_id)
    streaks = await _aggregate(db, streak_query) if streak_query else {}
    resume_at = (await sync_state.change_stream_resume_times(db, job_ids=[job_id])).get(str(job_id))
    return replace(
        _stats_from(job, summaries.get(job_id, {}), streaks.get(job_id, {})), change_stream_resume_at=resume_at
    )


async def count_runs_by_status(db: Database) -> dict[str, int]:
    """Stored runs per status across all workspaces, for the api's `/metrics`: a pass over every stored run
    (no filter an index could serve)."""
    cursor = await db.job_runs.aggregate([{"$group": {"_id": "$status", "count": {"$sum": 1}}}])
    return {str(doc["_id"]): int(doc["count"]) for doc in await cursor.to_list()}


async def delete_runs_before(db: Database, workspace_id: ObjectId, before: datetime) -> int:
    """Delete the workspace's finished runs created before `before`; a run still going is left alone."""
    result = await db.job_runs.delete_many(
        {"workspaceId": workspace_id, "createdAt": {"$lt": before}, "status": {"$in": sorted(FINISHED_STATUSES)}}
    )
    return result.deleted_count
