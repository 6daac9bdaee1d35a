"""What the active worker does during one lease term: fire due jobs exactly once, run them, record.

A term starts with recovery (runs of earlier terms left `running` become `failed: worker lost`; missed
fires are caught up or recorded `missed`; pending runs are picked up) and ends on SIGTERM or when the
lease is lost. Every run and job write carries the term's fencing token.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.shared.clock import Clock
from syncjobs.shared.cron import CronSchedule, parse_schedule
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.store import job_execution_locks, job_runs, sync_jobs
from syncjobs.worker.dispatcher import ExecutorSpec, RunCallback, RunDispatcher
from syncjobs.worker.fire_plan import FirePlan, decide_due_fires
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.lease import Lease

log = get_logger(__name__)

FIRE_CONCURRENCY = 16
DB_RETRY_SECONDS = 1.0


class Leadership:
    def __init__(
        self,
        db: Database,
        lease: Lease,
        clock: Clock,
        *,
        executor: ExecutorSpec,
        health: DatabaseHealth,
        on_run_finished: RunCallback | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.lease = lease
        self.token = lease.fencing_token
        self.clock = clock
        self.health = health
        self.plan = FirePlan()
        self.jobs: dict[ObjectId, Document] = {}
        self._schedules: dict[ObjectId, CronSchedule] = {}
        self._next_fire: dict[ObjectId, datetime] = {}
        self._decided_through: dict[ObjectId, datetime] = {}
        self._waiting_runs: dict[ObjectId, Document] = {}
        self._wake = asyncio.Event()
        self.executions = RunDispatcher(
            db,
            lease,
            clock,
            executor=executor,
            health=health,
            plan_run=self.run_requested,
            on_run_finished=on_run_finished,
            random_fraction=random_fraction,
        )

    # --- start of term ---

    async def recover(self) -> None:
        """Finish what earlier terms left, then load every enabled job and pending run."""
        now = self.clock.now()
        for run in await job_runs.runs_of_earlier_leaders(self.db, self.token):
            started = run.get("startedAt")
            duration = int((now - started).total_seconds() * 1000) if started else None
            if await job_runs.finish_run(
                self.db,
                run["_id"],
                token=self.token,
                status=RunStatus.FAILED,
                now=now,
                fields={"error": "worker lost", "durationMs": duration},
            ):
                log.warning("run_worker_lost", run_id=str(run["_id"]), job_id=str(run["jobId"]))
                await sync_jobs.record_run_outcome(
                    self.db,
                    run["jobId"],
                    self.token,
                    status=RunStatus.FAILED,
                    finished_at=now,
                    error="worker lost",
                    duration_ms=duration,
                )
            await job_execution_locks.release(self.db, run["jobId"], run["_id"])
        for job in await sync_jobs.enabled_job_docs(self.db):
            self.job_changed(job)
        for run in await job_runs.pending_runs(self.db):
            self.run_requested(run)
        log.info("leader_ready", fencing_token=self.token, jobs=len(self.jobs))

    # --- what the change feed tells us ---

    def job_changed(self, doc: Document) -> None:
        """(Re)plan a job from its document: an edit, a toggle or our own write."""
        job_id = doc["_id"]
        if not doc.get("enabled"):
            self.job_removed(job_id)
            return
        try:
            cron, timezone = doc["schedule"]["cron"], doc["schedule"].get("timezone", "UTC")
            schedule = self._schedules.get(job_id)
            if schedule is None or (schedule.cron, schedule.timezone) != (cron, timezone):
                schedule = parse_schedule(cron, timezone)
        except (ValidationFailed, KeyError, TypeError):
            log.warning("job_schedule_invalid", job_id=str(job_id))
            self.job_removed(job_id)
            return
        self.jobs[job_id] = doc
        self._schedules[job_id] = schedule
        due = doc.get("nextRunAt") or schedule.next_after(self.clock.now())
        decided = self._decided_through.get(job_id)
        if decided is not None and due <= decided:
            due = schedule.next_after(decided)
        self._next_fire[job_id] = due
        self.plan.plan(_job_key(job_id), due, int(doc.get("version", 1)))
        log.debug("job_planned", job_id=str(job_id), due=due.isoformat(), version=doc.get("version"))
        self._wake.set()

    def job_removed(self, job_id: ObjectId) -> None:
        for table in (self.jobs, self._schedules, self._next_fire):
            table.pop(job_id, None)
        self.plan.remove(_job_key(job_id))

    def run_requested(self, run: Document) -> None:
        """A pending run (manual, retry, queued): start it now, or plan it for its dueAt."""
        run_id = run["_id"]
        if run_id in self.executions.tasks or run_id in self._waiting_runs:
            return
        due_at = run.get("dueAt")
        if due_at is not None and due_at > self.clock.now():
            self._waiting_runs[run_id] = run
            self.plan.plan(_run_key(run_id), due_at)
            self._wake.set()
            return
        self.executions.dispatch(run)

    # --- the fire loop ---

    async def fire_due(self) -> None:
        """Sleep until the earliest planned time (or a change), handle what is due; forever."""
        limit = asyncio.Semaphore(FIRE_CONCURRENCY)

        async def limited(key: str) -> None:
            async with limit:
                await self._handle_due(key)

        while True:
            self._wake.clear()
            due = self.plan.next_due()
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
            if due is not None:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(due)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
            keys = self.plan.pop_due(self.clock.now())
            if keys:
                await asyncio.gather(*(limited(key) for key in keys))

    async def _handle_due(self, key: str) -> None:
        kind, _, raw_id = key.partition(":")
        if kind == "run":
            run = self._waiting_runs.pop(ObjectId(raw_id), None)
            if run is not None and run["_id"] not in self.executions.tasks:
                self.executions.dispatch(run)
            return
        job_id = ObjectId(raw_id)
        job = self.jobs.get(job_id)
        if job is None or not self.lease.is_held():  # a lapsed term fires nothing: the next leader will
            return
        due, decided_before = self._next_fire[job_id], self._decided_through.get(job_id)
        now = self.clock.now()
        decision = decide_due_fires(self._schedules[job_id], due, now, int(job.get("catchUpFires", 1)))
        # Set before the writes: a change event arriving meanwhile must not plan these fires again.
        self._decided_through[job_id] = now
        self._next_fire[job_id] = decision.next_fire
        self.plan.plan(key, decision.next_fire, int(job.get("version", 1)))
        try:
            await self._take_fires(job, decision.run, decision.missed, now)
            await sync_jobs.advance_next_run(
                self.db, job_id, int(job.get("version", 1)), decision.next_fire, self.token
            )
            self.health.succeeded()
        except PyMongoError as error:  # undo, and decide the same fires again in a moment
            self.health.failed(error)
            self._next_fire[job_id] = due
            self._decided_through.pop(job_id, None)
            if decided_before is not None:
                self._decided_through[job_id] = decided_before
            self.plan.plan(key, now + timedelta(seconds=DB_RETRY_SECONDS), -1)
            return
        if decision.older_missed_left_out:
            log.warning("older_missed_fires_not_recorded", job_id=str(job_id), recorded=len(decision.missed))

    async def _take_fires(self, job: Document, run: list[datetime], missed: list[datetime], now: datetime) -> None:
        """Claim each fire through the unique fire key; a fire already claimed is left alone."""
        for scheduled_for in missed:
            await job_runs.insert_fire(
                self.db,
                job,
                trigger="schedule",
                scheduled_for=scheduled_for,
                attempt=1,
                status=RunStatus.MISSED,
                worker_id=self.lease.owner,
                token=self.token,
                now=now,
                error="missed: no worker could fire it in time",
            )
        for scheduled_for in run:
            doc = await job_runs.insert_fire(
                self.db,
                job,
                trigger="schedule",
                scheduled_for=scheduled_for,
                attempt=1,
                status=RunStatus.PENDING,
                worker_id=self.lease.owner,
                token=self.token,
                now=now,
            )
            if doc is None:
                log.info("fire_already_taken", job_id=str(job["_id"]), scheduled_for=scheduled_for.isoformat())
            else:
                self.executions.dispatch(doc, job)


def _job_key(job_id: ObjectId) -> str:
    return f"job:{job_id}"


def _run_key(run_id: ObjectId) -> str:
    return f"run:{run_id}"
