"""The runs the leader is executing: per-job lock by overlap policy, a bounded number of executor
processes, the outcome on the run and the job, retries, and the runs that wait for a job's lock.
Every write carries the term's fencing token.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.shared import metrics
from syncjobs.shared.clock import Clock
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import job_runs, sync_jobs
from syncjobs.worker import execution_lock
from syncjobs.worker.executor_process import ExecutionOutcome, default_executor_command, run_executor
from syncjobs.worker.fire_plan import decide_overlap, retry_delay, should_retry
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.lease import Lease

log = get_logger(__name__)
T = TypeVar("T")

RunCallback = Callable[[ObjectId, ObjectId], Awaitable[None]]
START_RETRY_SECONDS = 1.0
ABANDON_WAIT_SECONDS = 1.0  # for run tasks to end once cancelled (their executors killed)


@dataclass(frozen=True)
class ExecutorSpec:
    """How runs are executed: the executor's argv prefix and environment, and how many run at once."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    max_concurrent_runs: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ExecutorSpec:
        """The executor finds the database through the same settings as the worker."""
        env = {
            **os.environ,
            "SYNCJOBS_MONGODB_URI": settings.require_mongodb_uri(),
            "SYNCJOBS_DATABASE": settings.database,
        }
        return cls(settings.executor_command or default_executor_command(), env, settings.max_concurrent_runs)


class RunDispatcher:
    """Executes pending runs: takes the job's lock by its overlap policy and an executor slot, spawns the
    executor, records the outcome and plans a retry; every write carries the term's fencing token."""

    def __init__(
        self,
        db: Database,
        lease: Lease,
        clock: Clock,
        *,
        executor: ExecutorSpec,
        health: DatabaseHealth,
        plan_run: Callable[[Document], None],
        on_run_finished: RunCallback | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.lease = lease
        self.token = lease.fencing_token
        self.clock = clock
        self.health = health
        self._argv = executor.argv
        self._env = executor.env
        self._plan_run = plan_run
        self._on_run_finished = on_run_finished
        self._random = random_fraction
        self.tasks: dict[ObjectId, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(executor.max_concurrent_runs)
        self._running_jobs: set[ObjectId] = set()
        self.jobs_with_waiters: set[ObjectId] = set()
        self._started: set[ObjectId] = set()
        self.cancel = asyncio.Event()
        self.stopping = False
        self.database_gone = False  # set by abandon(): write nothing more

    def dispatch(self, run: Document, job: Document | None = None) -> None:
        """Execute a pending run in the background (`job` when the caller has it at hand)."""
        task = asyncio.create_task(self._execute(run, job))
        self.tasks[run["_id"]] = task
        task.add_done_callback(lambda _: self.tasks.pop(run["_id"], None))

    def _dispatch_again(self, run: Document) -> None:
        if not self.stopping and run["_id"] not in self.tasks:
            self.dispatch(run)

    async def finish(self, grace_seconds: float) -> None:
        """Start nothing more; wait up to `grace_seconds`, then kill what still runs (`cancelled`)."""
        self.stopping = True
        running = list(self.tasks.values())
        if running:
            log.info("waiting_for_runs", count=len(running), grace_seconds=grace_seconds)
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            if pending:
                self.cancel.set()
                await asyncio.wait(pending)

    async def abandon(self) -> None:
        """Stopping with the database gone: no outcome can be recorded, so the executors are killed now
        and nothing more is written (the next leader marks these runs lost), instead of a grace spent
        waiting and writes retried until the lease lapses."""
        self.stopping = self.database_gone = True
        self.cancel.set()
        running = list(self.tasks.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=ABANDON_WAIT_SECONDS)
            log.warning("runs_abandoned", count=len(running))

    async def _execute(self, run: Document, job: Document | None) -> None:
        try:
            await self._execute_run(run, job)
        except PyMongoError as error:
            self.health.failed(error)
            if run["_id"] in self._started:
                log.warning("run_not_recorded", run_id=str(run["_id"]), error=str(error)[:200])
            elif not self.stopping:  # still pending: try again shortly rather than leave it to the next term
                asyncio.get_running_loop().call_later(START_RETRY_SECONDS, self._dispatch_again, run)
        finally:
            self._started.discard(run["_id"])

    async def _execute_run(self, run: Document, job: Document | None) -> None:
        run_id, job_id = run["_id"], run["jobId"]
        job = job or await sync_jobs.find_job_doc(self.db, job_id)
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
        run_seconds = float(job.get("timeoutSeconds", 3600))
        exclusive = overlap != "allow"
        if exclusive and job_id in self._running_jobs:
            if not await self._skipped(run, overlap):
                await self._wait_for_job(job_id)
            return
        if exclusive:
            self._running_jobs.add(job_id)  # claimed before any await: this term's overlap is decided here
        locked = False
        try:
            async with self._slots:
                if self.stopping:
                    return  # never started: it stays pending for the next term
                # The lock is taken only once a slot is ours, so at most max_concurrent_runs are held.
                if exclusive:
                    locked = await self._lock(job_id, run_id, run_seconds)
                    if not locked:  # held under a newer lease: we are stale, the newer leader will see to it
                        await self._skipped(run, overlap)
                        return
                outcome = await self._run_executor(run, run_seconds)
            if outcome is not None:
                await self._record(run, job, outcome)
        finally:
            if exclusive:
                self._running_jobs.discard(job_id)
                if locked:
                    await self._persist(lambda: execution_lock.release(self.db, job_id, run_id))
                if job_id in self.jobs_with_waiters:
                    self.jobs_with_waiters.discard(job_id)
                    await self._start_next_waiting(job_id)

    async def _lock(self, job_id: ObjectId, run_id: ObjectId, run_seconds: float) -> bool:
        return await execution_lock.acquire(
            self.db,
            job_id,
            run_id,
            owner=self.lease.owner,
            token=self.token,
            seconds=run_seconds + execution_lock.LOCK_MARGIN_SECONDS,
        )

    async def _run_executor(self, run: Document, run_seconds: float) -> ExecutionOutcome | None:
        run_id = run["_id"]
        started_at = self.clock.now()
        if not self.lease.is_held():
            return None  # the term is ending: the run stays pending for the next leader
        if not await job_runs.start_run(self.db, run_id, worker_id=self.lease.owner, token=self.token, now=started_at):
            return None
        self._started.add(run_id)
        log.info("run_started", run_id=str(run_id), job_id=str(run["jobId"]), trigger=run["trigger"])
        if run["trigger"] == "schedule":
            metrics.fire_lag_seconds.observe(max(0.0, (started_at - run["scheduledFor"]).total_seconds()))
        env = {**self._env, "SYNCJOBS_RUN_ID": str(run_id)}
        metrics.executors_running.inc()
        try:
            return await run_executor([*self._argv, "--run-id", str(run_id)], env, run_seconds, self.cancel)
        finally:
            metrics.executors_running.dec()

    async def _skipped(self, run: Document, overlap: str) -> bool:
        """The job's previous run still goes: skip this fire if its policy says so (True). Manual and
        retry runs are never skipped."""
        if run["trigger"] != "schedule":
            return False
        waiting = await job_runs.count_waiting(self.db, run["jobId"], besides=run["_id"])
        if decide_overlap(overlap, running=1, queued=waiting) != "skip":
            return False
        await job_runs.finish_run(
            self.db,
            run["_id"],
            token=self.token,
            status="skipped",
            now=self.clock.now(),
            fields={"error": "skipped: the previous run is still going"},
        )
        log.info("fire_skipped", run_id=str(run["_id"]), job_id=str(run["jobId"]))
        return True

    async def _wait_for_job(self, job_id: ObjectId) -> None:
        """The run stays pending; the job's running run starts the oldest waiting one when it ends."""
        if job_id in self._running_jobs:
            self.jobs_with_waiters.add(job_id)
        else:  # it ended while we were deciding
            await self._start_next_waiting(job_id)

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
            self._plan_run(doc)

    async def _start_next_waiting(self, job_id: ObjectId) -> None:
        """The job's lock is free: start the oldest of its runs that wait for it."""
        if self.stopping:
            return
        now = self.clock.now()
        for run in await job_runs.pending_runs(self.db, job_id):
            if run["_id"] not in self.tasks and (run.get("dueAt") is None or run["dueAt"] <= now):
                self.dispatch(run)
                return

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T | None:
        """Retry a write through a database outage while the lease holds; one try once it is lost."""
        delay = 0.2
        while not self.database_gone:
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
        return None
