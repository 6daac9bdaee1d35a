"""Aggregations over `job_runs`: per-job statistics for a time range, run counts, and retention.

The database does the counting: one aggregation on `syncjobs` whose `$lookup` sub-pipelines walk each job's
runs through the (jobId, createdAt) index; no run is loaded into Python except the last few per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId

from shared.models import FINISHED_STATUSES, JobRun, from_document
from shared.mongo import Database, Document

SUCCEEDED = "succeeded"
FAILED_STATUSES = ("failed", "timed_out")
# Runs that actually executed; `skipped` and `missed` fires never started one.
EXECUTED_STATUSES = ("succeeded", "failed", "timed_out", "cancelled")
RECENT_RUNS = 10


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

    @property
    def success_rate(self) -> float | None:
        return round(self.success_count / self.total_executions, 4) if self.total_executions else None

    @property
    def failure_rate(self) -> float | None:
        return round(self.failure_count / self.total_executions, 4) if self.total_executions else None

    def to_json(self) -> dict[str, Any]:
        average = None if self.average_duration_ms is None else round(self.average_duration_ms, 1)
        return {
            "jobId": self.job_id, "jobName": self.job_name, "totalExecutions": self.total_executions,
            "successCount": self.success_count, "failureCount": self.failure_count,
            "skippedCount": self.skipped_count, "missedCount": self.missed_count,
            "successRate": self.success_rate, "averageDurationMs": average,
            "lastExecution": self.last_execution.isoformat() if self.last_execution else None,
            "lastStatus": self.last_status, "consecutiveFailures": self.consecutive_failures,
        }


def _count_if(statuses: tuple[str, ...]) -> Document:
    return {"$sum": {"$cond": [{"$in": ["$status", list(statuses)]}, 1, 0]}}


def _created_if(statuses: tuple[str, ...]) -> Document:
    return {"$cond": [{"$in": ["$status", list(statuses)]}, "$createdAt", None]}


def _runs_of_job_since(since: datetime, extra: Document | None = None) -> Document:
    """A sub-pipeline `$match` on the (jobId, createdAt) index for the job bound to `$$jobId`."""
    return {"$match": {"$expr": {"$eq": ["$jobId", "$$jobId"]}, "createdAt": {"$gte": since}, **(extra or {})}}


def stats_pipeline(workspace_id: ObjectId, since: datetime, job_id: ObjectId | None = None) -> list[Document]:
    job_filter: Document = {"workspaceId": workspace_id}
    if job_id is not None:
        job_filter["_id"] = job_id
    summary = {
        "_id": None,
        "total": _count_if(EXECUTED_STATUSES),
        "succeeded": _count_if((SUCCEEDED,)),
        "failed": _count_if(FAILED_STATUSES),
        "skipped": _count_if(("skipped",)),
        "missed": _count_if(("missed",)),
        "averageDurationMs": {"$avg": {"$cond": [{"$in": ["$status", list(EXECUTED_STATUSES)]},
                                                 "$durationMs", None]}},
        "last": {"$first": {"status": "$status", "at": {"$ifNull": ["$startedAt", "$createdAt"]}}},
        "firstExecutionAt": {"$min": _created_if(EXECUTED_STATUSES)},
        "firstFailureAt": {"$min": _created_if(FAILED_STATUSES)},
        "firstMissedAt": {"$min": _created_if(("skipped", "missed"))},
        "lastSuccessAt": {"$max": _created_if((SUCCEEDED,))},
    }
    return [
        {"$match": job_filter},
        {"$sort": {"name": 1}},
        {"$project": {"name": 1}},
        {"$lookup": {"from": "job_runs", "let": {"jobId": "$_id"}, "as": "summary", "pipeline": [
            _runs_of_job_since(since), {"$sort": {"createdAt": -1}}, {"$group": summary},
        ]}},
        {"$set": {"summary": {"$arrayElemAt": ["$summary", 0]}}},
        # The failure streak: failures after the last success (or since the range began).
        {"$lookup": {
            "from": "job_runs", "as": "streak",
            "let": {"jobId": "$_id",
                    "after": {"$ifNull": ["$summary.lastSuccessAt", None]}},
            "pipeline": [
                _runs_of_job_since(since, {"status": {"$in": list(FAILED_STATUSES)}}),
                {"$match": {"$expr": {"$or": [{"$eq": ["$$after", None]}, {"$gt": ["$createdAt", "$$after"]}]}}},
                {"$group": {"_id": None, "count": {"$sum": 1}, "since": {"$min": "$createdAt"}}},
            ],
        }},
        {"$lookup": {"from": "job_runs", "let": {"jobId": "$_id"}, "as": "recent", "pipeline": [
            _runs_of_job_since(since), {"$sort": {"createdAt": -1, "_id": -1}}, {"$limit": RECENT_RUNS},
            {"$project": {"details": 0, "progress": 0}},
        ]}},
    ]


def _stats_from(doc: Document) -> JobRunStats:
    summary: Document = doc.get("summary") or {}
    streak: Document = doc["streak"][0] if doc["streak"] else {}
    last: Document = summary.get("last") or {}
    return JobRunStats(
        job_id=str(doc["_id"]), job_name=doc.get("name", ""),
        total_executions=summary.get("total", 0), success_count=summary.get("succeeded", 0),
        failure_count=summary.get("failed", 0), skipped_count=summary.get("skipped", 0),
        missed_count=summary.get("missed", 0), average_duration_ms=summary.get("averageDurationMs"),
        last_execution=last.get("at"), last_status=last.get("status"),
        consecutive_failures=streak.get("count", 0), first_execution_at=summary.get("firstExecutionAt"),
        first_failure_at=summary.get("firstFailureAt"), failure_streak_since=streak.get("since"),
        first_missed_at=summary.get("firstMissedAt"),
        recent_runs=[from_document(JobRun, run) for run in doc["recent"]],
    )


async def job_run_stats(db: Database, workspace_id: ObjectId, since: datetime,
                        job_id: ObjectId | None = None) -> list[JobRunStats]:
    """One entry per job of the workspace (or just `job_id`), jobs without runs included, by name."""
    cursor = await db.syncjobs.aggregate(stats_pipeline(workspace_id, since, job_id))
    return [_stats_from(doc) for doc in await cursor.to_list()]


async def count_runs_by_status(db: Database) -> dict[str, int]:
    """Stored runs per status across all workspaces, for the api's `/metrics` (status index only)."""
    cursor = await db.job_runs.aggregate([{"$group": {"_id": "$status", "count": {"$sum": 1}}}])
    return {str(doc["_id"]): int(doc["count"]) for doc in await cursor.to_list()}


async def delete_runs_before(db: Database, workspace_id: ObjectId, before: datetime) -> int:
    """Delete the workspace's finished runs created before `before`; a run still going is left alone."""
    result = await db.job_runs.delete_many(
        {"workspaceId": workspace_id, "createdAt": {"$lt": before}, "status": {"$in": sorted(FINISHED_STATUSES)}}
    )
    return result.deleted_count
