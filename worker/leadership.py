"""What the active worker does during one lease term: fire due jobs exactly once, run them, record.

A term starts with recovery (runs of earlier terms left `running` become `failed: worker lost`; missed
fires are caught up or recorded `missed`; pending runs are picked up) and ends on SIGTERM or when the
lease is lost. Every run and job write carries the term's fencing token.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from bson import ObjectId
from pymongo.errors import PyMongoError

from shared import metrics
from shared.clock import Clock
from shared.cron import CronSchedule, parse_schedule
from shared.errors import ValidationFailed
from shared.logging import get_logger
from shared.mongo import Database, Document
from shared.store import job_runs, sync_jobs
from worker import execution_lock
from worker.execution import ExecutionOutcome, run_executor
from worker.fire_plan import FirePlan, decide_due_fires, decide_overlap, retry_delay, should_retry
from worker.health import DatabaseHealth
from worker.lease import Lease

log = get_logger(__name__)
T = TypeVar("T")

FIRE_CONCURRENCY = 16
DB_RETRY_SECONDS = 1.0


class Leadership:
    def __init__(
        self,
        db: Database,
        lease: Lease,
        clock: Clock,
        *,
        executor_argv: tuple[str, ...],
        executor_env: Mapping[str, str],
        max_concurrent_runs: int,
        health: DatabaseHealth,
        on_run_finished: Callable[[ObjectId, ObjectId], Awaitable[None]] | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.lease = lease
        self.token = lease.fencing_token
        self.clock = clock
        self.health = health
        self._argv = executor_argv
        self._env = executor_env
        self._random = random_fraction
        self._on_run_finished = on_run_finished
        self.plan = FirePlan()
        self.jobs: dict[ObjectId, Document] = {}
        self._schedules: dict[ObjectId, CronSchedule] = {}
        self._next_fire: dict[ObjectId, datetime] = {}
        self._decided_through: dict[ObjectId, datetime] = {}
        self._waiting_runs: dict[ObjectId, Document] = {}
        self.executions: dict[ObjectId, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._wake = asyncio.Event()
        self.cancel_runs = asyncio.Event()
        self.stopping = False

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
                status="failed",
                now=now,
                fields={"error": "worker lost", "durationMs": duration},
            ):
                log.warning("run_worker_lost", run_id=str(run["_id"]), job_id=str(run["jobId"]))
                await sync_jobs.record_run_outcome(
                    self.db,
                    run["jobId"],
                    self.token,
                    status="failed",
                    finished_at=now,
                    error="worker lost",
                    duration_ms=duration,
                )
            await execution_lock.release(self.db, run["jobId"], run["_id"])
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
            schedule = parse_schedule(doc["schedule"]["cron"], doc["schedule"].get("timezone", "UTC"))
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
        self._wake.set()

    def job_removed(self, job_id: ObjectId) -> None:
        for table in (self.jobs, self._schedules, self._next_fire):
            table.pop(job_id, None)
        self.plan.remove(_job_key(job_id))

    def run_requested(self, run: Document) -> None:
        """A pending run (manual, retry, queued): start it now, or plan it for its dueAt."""
        run_id = run["_id"]
        if run_id in self.executions or run_id in self._waiting_runs:
            return
        due_at = run.get("dueAt")
        if due_at is not None and due_at > self.clock.now():
            self._waiting_runs[run_id] = run
            self.plan.plan(_run_key(run_id), due_at)
            self._wake.set()
            return
        self._dispatch(run, None)

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
            if run is not None:
                self._dispatch(run, None)
            return
        job_id = ObjectId(raw_id)
        job = self.jobs.get(job_id)
        if job is None:
            return
        previous = self._next_fire[job_id], self._decided_through.get(job_id)
        now = self.clock.now()
        decision = decide_due_fires(self._schedules[job_id], previous[0], now, int(job.get("catchUpFires", 1)))
        self._decided_through[job_id] = now
        self._next_fire[job_id] = decision.next_fire
        self.plan.plan(key, decision.next_fire, int(job.get("version", 1)))
        try:
            await self._take_fires(job, decision.run, decision.missed, now)
            await sync_jobs.advance_next_run(
                self.db, job_id, int(job.get("version", 1)), decision.next_fire, self.token
            )
            self.health.succeeded()
        except PyMongoError as error:
            self.health.failed(error)
            self._next_fire[job_id] = previous[0]
            if previous[1] is None:
                self._decided_through.pop(job_id, None)
            else:
                self._decided_through[job_id] = previous[1]
            self.plan.plan(key, now + timedelta(seconds=DB_RETRY_SECONDS), -1)
            return
        if decision.missed_unrecorded:
            log.warning("missed_fires_not_recorded", job_id=str(job_id), count=decision.missed_unrecorded)

    async def _take_fires(self, job: Document, run: list[datetime], missed: list[datetime], now: datetime) -> None:
        """Claim each fire through the unique fire key; a fire already claimed is left alone."""
        for scheduled_for in missed:
            await job_runs.insert_fire(
                self.db,
                job,
                trigger="schedule",
                scheduled_for=scheduled_for,
                attempt=1,
                status="missed",
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
                status="pending",
                worker_id=self.lease.owner,
                token=self.token,
                now=now,
            )
            if doc is None:
                log.info("fire_already_taken", job_id=str(job["_id"]), scheduled_for=scheduled_for.isoformat())
            else:
                self._dispatch(doc, job)

    # --- running one run ---

    def _dispatch(self, run: Document, job: Document | None) -> None:
        task = asyncio.create_task(self._execute(run, job))
        self.executions[run["_id"]] = task
        task.add_done_callback(lambda _: self.executions.pop(run["_id"], None))

    async def _execute(self, run: Document, job: Document | None) -> None:
        try:
            await self._execute_run(run, job)
        except PyMongoError as error:
            self.health.failed(error)
            log.warning("run_not_recorded", run_id=str(run["_id"]), error=str(error)[:200])

    async def _execute_run(self, run: Document, job: Document | None) -> None:
        run_id, job_id = run["_id"], run["jobId"]
        if job is None:
            job = await sync_jobs.find_job_doc(self.db, job_id)
            if job is None:
                await job_runs.finish_run(
                    self.db,
                    run_id,
                    token=self.token,
                    status="cancelled",
                    now=self.clock.now(),
                    fields={"error": "job deleted"},
                )
                return
        overlap = job.get("overlap", "skip")
        timeout = float(job.get("timeoutSeconds", 3600))
        lock_seconds = timeout + execution_lock.LOCK_MARGIN_SECONDS
        locked = overlap != "allow"
        if locked and not await execution_lock.acquire(
            self.db, job_id, run_id, owner=self.lease.owner, token=self.token, seconds=lock_seconds
        ):
            await self._on_overlap(run, overlap)
            return
        try:
            async with self._slots:
                if self.stopping:
                    return  # not started: it stays pending for the next term
                if locked:
                    await execution_lock.acquire(
                        self.db, job_id, run_id, owner=self.lease.owner, token=self.token, seconds=lock_seconds
                    )
                started_at = self.clock.now()
                if not await job_runs.start_run(
                    self.db, run_id, worker_id=self.lease.owner, token=self.token, now=started_at
                ):
                    return
                log.info("run_started", run_id=str(run_id), job_id=str(job_id), trigger=run["trigger"])
                if run["trigger"] == "schedule":
                    metrics.fire_lag_seconds.observe(max(0.0, (started_at - run["scheduledFor"]).total_seconds()))
                env = {**self._env, "SYNCJOBS_RUN_ID": str(run_id)}
                metrics.executors_running.inc()
                try:
                    outcome = await run_executor([*self._argv, "--run-id", str(run_id)], env, timeout, self.cancel_runs)
                finally:
                    metrics.executors_running.dec()
            await self._record(run, job, outcome)
        finally:
            if locked:
                await self._persist(lambda: execution_lock.release(self.db, job_id, run_id))
                await self._start_next_waiting(job_id)

    async def _on_overlap(self, run: Document, overlap: str) -> None:
        """The job's previous run still holds the lock: skip this fire, or let it wait its turn."""
        if run["trigger"] != "schedule":
            return  # manual and retry runs wait; _start_next_waiting picks them up
        waiting = await job_runs.count_waiting(self.db, run["jobId"], besides=run["_id"])
        if decide_overlap(overlap, running=1, queued=waiting) == "skip":
            await job_runs.finish_run(
                self.db,
                run["_id"],
                token=self.token,
                status="skipped",
                now=self.clock.now(),
                fields={"error": "skipped: the previous run is still going"},
            )
            log.info("fire_skipped", run_id=str(run["_id"]), job_id=str(run["jobId"]))

    async def _record(self, run: Document, job: Document, outcome: ExecutionOutcome) -> None:
        now = self.clock.now()
        run_id, job_id = run["_id"], run["jobId"]
        await self._persist(
            lambda: job_runs.finish_run(
                self.db, run_id, token=self.token, status=outcome.status, now=now, fields=outcome.run_fields()
            )
        )
        await self._persist(
            lambda: sync_jobs.record_run_outcome(
                self.db,
                job_id,
                self.token,
                status=outcome.status,
                finished_at=now,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        log.info(
            "run_finished",
            run_id=str(run_id),
            job_id=str(job_id),
            status=outcome.status,
            duration_ms=outcome.duration_ms,
        )
        metrics.observe_run_finished(outcome.status, outcome.duration_ms)
        if self._on_run_finished is not None:
            await self._on_run_finished(job_id, run_id)
        retry = job.get("retry") or {}
        attempt = int(run.get("attempt", 1))
        if not should_retry(outcome.status, attempt, int(retry.get("maxAttempts", 1))):
            return
        due_at = now + retry_delay(attempt, float(retry.get("backoffSeconds", 30.0)), self._random)
        doc = await self._persist(
            lambda: job_runs.insert_fire(
                self.db,
                job,
                trigger="retry",
                scheduled_for=run["scheduledFor"],
                attempt=attempt + 1,
                status="pending",
                worker_id=self.lease.owner,
                token=self.token,
                now=now,
                due_at=due_at,
            )
        )
        if doc is not None:
            log.info("retry_planned", run_id=str(doc["_id"]), attempt=attempt + 1, due_at=due_at.isoformat())
            self.run_requested(doc)

    async def _start_next_waiting(self, job_id: ObjectId) -> None:
        """The lock is free: start the oldest run of this job that waits for it."""
        if self.stopping:
            return
        now = self.clock.now()
        for run in await job_runs.pending_runs(self.db, job_id):
            if run["_id"] in self.executions or run["_id"] in self._waiting_runs:
                continue
            if run.get("dueAt") is None or run["dueAt"] <= now:
                self._dispatch(run, None)
                return

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T | None:
        """Retry a write through a database outage while the lease holds; one try once it is lost."""
        delay = 0.2
        while True:
            try:
                result = await write()
            except PyMongoError as error:
                self.health.failed(error)
                if not self.lease.is_held():
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.health.succeeded()
            return result

    # --- end of term ---

    async def finish_runs(self, grace_seconds: float) -> None:
        """Wait up to `grace_seconds` for running executions, then kill them (recorded `cancelled`)."""
        self.stopping = True
        running = list(self.executions.values())
        if running:
            log.info("waiting_for_runs", count=len(running), grace_seconds=grace_seconds)
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            if pending:
                self.cancel_runs.set()
                await asyncio.wait(pending)


def _job_key(job_id: ObjectId) -> str:
    return f"job:{job_id}"


def _run_key(run_id: ObjectId) -> str:
    return f"run:{run_id}"


def executor_environment(mongodb_uri: str, database: str) -> dict[str, str]:
    return {**os.environ, "SYNCJOBS_MONGODB_URI": mongodb_uri, "SYNCJOBS_DATABASE": database}
