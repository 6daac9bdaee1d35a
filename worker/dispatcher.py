"""Every replica's claimer: it claims due pending runs up to its slot count, round-robin across
workspaces and under the per-workspace cap, runs their executors, keeps their run leases alive, and
records their outcome and retries.

A claim is one atomic write (pending -> running, this worker, a run lease); it is also the job's
execution lock (see `job_runs.claim_run`). New pending runs wake the claimer through a change stream on
`job_runs` inserts (or a poll every SYNCJOBS_POLL_SECONDS where the server has none); a run finishing here
wakes it too. The claimer's writes on its run are guarded by the run's lease, not by a fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from bson import ObjectId
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError
from syncjobs.shared import metrics
from syncjobs.shared.clock import Clock
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import JobRun, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import job_runs, sync_jobs
from syncjobs.shared.store.job_runs import Claimant
from syncjobs.worker.executor_process import ExecutionOutcome, default_executor_command, run_executor
from syncjobs.worker.fairness import RoundRobin, claim_order
from syncjobs.worker.fire_plan import retry_delay, runs_to_skip, should_retry
from syncjobs.worker.health import DatabaseHealth

log = get_logger(__name__)
T = TypeVar("T")

RunCallback = Callable[[ObjectId, ObjectId], Awaitable[None]]
DB_RETRY_SECONDS = 1.0
PENDING_INSERTS: list[Document] = [
    {"$match": {"operationType": "insert", "fullDocument.status": "pending"}},
    {"$project": {"operationType": 1}},
]
NO_CHANGE_STREAMS = 40573


@dataclass(frozen=True)
class ExecutorSpec:
    """How runs are executed: the executor's argv prefix and environment, how many run at once here, and
    how many run at once per workspace across the cluster (None: unlimited)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    max_concurrent_runs: int
    max_runs_per_workspace: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ExecutorSpec:
        """The executor finds the database through the same settings as the worker."""
        env = {
            **os.environ,
            "SYNCJOBS_MONGODB_URI": settings.require_mongodb_uri(),
            "SYNCJOBS_DATABASE": settings.database,
        }
        argv = settings.executor_command or default_executor_command()
        return cls(argv, env, settings.max_concurrent_runs, settings.max_runs_per_workspace)


@dataclass
class _Claimed:
    """A run this replica claimed: its executor's cancel switch, and until when (monotonic) its lease is
    known to hold; `lost` once the leader took it back (its outcome is then not ours to record)."""

    run: JobRun
    trusted_until: float
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False
    task: asyncio.Task[None] | None = None


class RunDispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        claimant: Claimant,
        *,
        executor: ExecutorSpec,
        health: DatabaseHealth,
        poll_seconds: float = 5.0,
        on_run_finished: RunCallback | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.clock = clock
        self.claimant = claimant
        self.health = health
        self._executor = executor
        self._poll_seconds = poll_seconds
        self._on_run_finished = on_run_finished
        self._random = random_fraction
        self._claimed: dict[ObjectId, _Claimed] = {}
        self._blocked: set[ObjectId] = set()  # jobs whose run goes on (the last round): their runs wait
        self._last_workspace: ObjectId | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._heartbeat: asyncio.Task[None] | None = None

    # --- what others may ask ---

    def running(self) -> int:
        return len(self._claimed)

    def waits_for_lock(self, job_id: ObjectId) -> bool:
        """A run of this job waits here because the job's previous run still goes (overlap)."""
        return job_id in self._blocked

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    # --- the claim loop ---

    async def run(self) -> None:
        """Claim and start runs until cancelled or `finish` is called."""
        watcher = asyncio.create_task(self._watch())
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    next_due = await self._claim_round()
                    self.health.succeeded()
                except PyMongoError as error:  # an unreachable database: claim nothing, try again shortly
                    self.health.failed(error)
                    await self._idle(None, DB_RETRY_SECONDS)
                    continue
                await self._idle(next_due, self._poll_seconds)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _idle(self, next_due: datetime | None, seconds: float) -> None:
        """Until woken (a new pending run, a slot freed), `next_due` on the clock, or the poll."""
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if next_due is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep_until(next_due)))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _claim_round(self) -> datetime | None:
        """Claim up to the free slots, one per workspace per turn; the next dueAt if slots stay free."""
        free = self._executor.max_concurrent_runs - len(self._claimed)
        if free <= 0 or self._stopping:
            return None
        now = self.clock.now()
        # Jobs found running elsewhere are left out for the rest of the round only: the next round (a new
        # run, a run ended here, the poll) tries their waiting runs again.
        self._blocked = set()
        workspaces = await job_runs.workspaces_with_due_runs(self.db, now)
        if workspaces:
            cap = self._executor.max_runs_per_workspace
            running = await job_runs.running_per_workspace(self.db) if cap is not None else {}
            turns = RoundRobin(claim_order(workspaces, running, cap, self._last_workspace), running, cap)
            while turns and free > 0 and not self._stopping:
                workspace = turns.next()
                if await self._claim_one(workspace, now):
                    turns.claimed(workspace)
                    self._last_workspace = workspace
                    free -= 1
                else:
                    turns.exhausted(workspace)
        return await job_runs.next_due_at(self.db, now) if free > 0 else None

    async def _claim_one(self, workspace_id: ObjectId, now: datetime) -> bool:
        """Claim the workspace's oldest due run of a job not running elsewhere, and start it."""
        while True:
            sent_at = time.monotonic()
            try:
                doc = await job_runs.claim_run(
                    self.db, self.claimant, workspace_id=workspace_id, now=now, excluded_jobs=self._blocked
                )
            except DuplicateKeyError as error:  # the job's run goes: its lock is taken
                job_id = ((error.details or {}).get("keyValue") or {}).get("jobId")
                if not isinstance(job_id, ObjectId):
                    raise
                self._blocked.add(job_id)
                await self._apply_overlap(job_id, now)
                continue
            if doc is None:
                return False
            self._start(doc, sent_at + self._trusted_seconds)
            return True

    async def _apply_overlap(self, job_id: ObjectId, now: datetime) -> None:
        """Skip the fires that the job's overlap policy skips while its previous run goes; the rest wait."""
        job = await sync_jobs.find_job(self.db, job_id)
        waiting = await job_runs.due_runs_of_job(self.db, job_id, now)
        skipped = runs_to_skip(job.overlap if job else "skip", [(run["_id"], run["trigger"]) for run in waiting])
        await job_runs.skip_pending_runs(self.db, skipped, now=now, error="skipped: the previous run is still going")
        for run_id in skipped:
            log.info("fire_skipped", run_id=str(run_id), job_id=str(job_id))

    async def _watch(self) -> None:
        """Wake the loop on every pending run inserted anywhere; without change streams, the poll does."""
        while True:
            try:
                async with await self.db.job_runs.watch(PENDING_INSERTS) as stream:
                    self._wake.set()  # what was inserted while the stream was down
                    async for _ in stream:
                        self._wake.set()
            except OperationFailure as error:
                if error.code == NO_CHANGE_STREAMS:
                    log.warning("claims_polling", poll_seconds=self._poll_seconds, reason=str(error)[:200])
                    return
                await asyncio.sleep(DB_RETRY_SECONDS)
            except PyMongoError as error:
                self.health.failed(error)
                await asyncio.sleep(DB_RETRY_SECONDS)

    # --- one claimed run ---

    def _start(self, doc: Document, trusted_until: float) -> None:
        claimed = _Claimed(from_document(JobRun, doc), trusted_until)
        run_id = doc["_id"]
        self._claimed[run_id] = claimed
        claimed.task = asyncio.create_task(self._execute(run_id, claimed))
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew_leases())

    async def _execute(self, run_id: ObjectId, claimed: _Claimed) -> None:
        run = claimed.run
        try:
            job = await self._persist(claimed, lambda: sync_jobs.find_job(self.db, ObjectId(run.job_id)))
            if job is None:
                await self._persist(claimed, lambda: self._finish(run_id, "cancelled", {"error": "job deleted"}))
                return
            outcome = await self._run_executor(run_id, claimed, job)
            await self._record(run_id, claimed, job, outcome)
        except Exception:
            log.exception("run_failed_in_worker", run_id=str(run_id))
        finally:
            del self._claimed[run_id]
            self._wake.set()

    async def _run_executor(self, run_id: ObjectId, claimed: _Claimed, job: SyncJob) -> ExecutionOutcome:
        run = claimed.run
        log.info(
            "run_started", run_id=str(run_id), job_id=run.job_id, trigger=run.trigger, worker=self.claimant.worker_id
        )
        if run.trigger == "schedule":
            lag = (self.clock.now() - run.scheduled_for).total_seconds()
            metrics.fire_lag_seconds.observe(max(0.0, lag))
        env = {**self._executor.env, "SYNCJOBS_RUN_ID": str(run_id)}
        argv = [*self._executor.argv, "--run-id", str(run_id)]
        metrics.executors_running.inc()
        try:
            return await run_executor(argv, env, float(job.timeout_seconds), claimed.cancel)
        finally:
            metrics.executors_running.dec()

    async def _record(self, run_id: ObjectId, claimed: _Claimed, job: SyncJob, outcome: ExecutionOutcome) -> None:
        """The outcome on the run (only while it is ours), then on the job; then a retry if its policy says."""
        run = claimed.run
        landed = not claimed.lost and await self._persist(
            claimed, lambda: self._finish(run_id, outcome.status, outcome.run_fields())
        )
        if not landed:
            log.warning("run_outcome_not_recorded", run_id=str(run_id), status=outcome.status, reason="run lease lost")
            return
        now = self.clock.now()
        job_id = ObjectId(run.job_id)
        await self._persist(
            claimed,
            lambda: sync_jobs.record_run_outcome(
                self.db,
                job_id,
                None,
                status=outcome.status,
                finished_at=now,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            ),
        )
        log.info(
            "run_finished",
            run_id=str(run_id),
            job_id=run.job_id,
            status=outcome.status,
            duration_ms=outcome.duration_ms,
        )
        metrics.observe_run_finished(outcome.status, outcome.duration_ms)
        if self._on_run_finished is not None:
            await self._on_run_finished(job_id, run_id)
        if should_retry(outcome.status, run.attempt, job.retry.max_attempts):
            await self._persist(
                claimed,
                lambda: insert_retry(
                    self.db, job, run, worker_id=self.claimant.worker_id, token=None, now=now, random=self._random
                ),
            )

    async def _finish(self, run_id: ObjectId, status: str, fields: Document) -> bool:
        return await job_runs.finish_claimed_run(
            self.db, self.claimant, run_id, status=status, now=self.clock.now(), fields=fields
        )

    async def _persist(self, claimed: _Claimed, write: Callable[[], Awaitable[T]]) -> T | None:
        """Retry a write through a database outage while the run's lease is known to hold; then give up:
        the leader fails the run as lost and retries it."""
        delay = 0.2
        while True:
            try:
                result = await write()
            except PyMongoError as error:
                self.health.failed(error)
                if claimed.lost or time.monotonic() > claimed.trusted_until:
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.health.succeeded()
            return result

    # --- run leases ---

    @property
    def _trusted_seconds(self) -> float:
        """A run lease is trusted a little less long than it lasts, for the event loop's latency."""
        return self.claimant.lease_seconds - min(1.0, self.claimant.lease_seconds / 10)

    async def _renew_leases(self) -> None:
        """Every third of a lease, one write renews the lease of every run here. A run the leader took
        back, or whose lease could not be renewed in time, has its executor killed: the leader retries
        it, and two executors of one run must not write at once."""
        while self._claimed:
            await asyncio.sleep(self.claimant.lease_seconds / 3)
            run_ids = list(self._claimed)
            sent_at = time.monotonic()
            try:
                lost = await job_runs.renew_run_leases(self.db, self.claimant, run_ids)
                self.health.succeeded()
            except PyMongoError as error:
                self.health.failed(error)
                lost = {
                    run_id
                    for run_id in run_ids
                    if self._claimed.get(run_id) and sent_at > self._claimed[run_id].trusted_until
                }
            for run_id in run_ids:
                claimed = self._claimed.get(run_id)
                if claimed is None:
                    continue
                if run_id in lost:
                    if not claimed.lost:
                        log.warning("run_lease_lost", run_id=str(run_id), job_id=claimed.run.job_id)
                    claimed.lost = True
                    claimed.cancel.set()
                elif sent_at + self._trusted_seconds > claimed.trusted_until and not claimed.lost:
                    claimed.trusted_until = sent_at + self._trusted_seconds

    # --- the end ---

    async def finish(self, grace_seconds: float) -> None:
        """Claim nothing more; wait up to `grace_seconds`, then kill what still runs (`cancelled`)."""
        self.stop_claiming()
        tasks = [claimed.task for claimed in self._claimed.values() if claimed.task is not None]
        if tasks:
            log.info("waiting_for_runs", count=len(tasks), grace_seconds=grace_seconds)
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            if pending:
                for claimed in list(self._claimed.values()):
                    claimed.cancel.set()
                await asyncio.wait(pending)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat


async def insert_retry(
    db: Database,
    job: SyncJob,
    run: JobRun,
    *,
    worker_id: str,
    token: int | None,
    now: datetime,
    random: Callable[[], float],
) -> Document | None:
    """The next attempt of a failed run, due after its backoff; once only, through the fire key."""
    due_at = now + retry_delay(run.attempt, job.retry.backoff_seconds, random)
    doc = await job_runs.insert_fire(
        db,
        job,
        trigger="retry",
        scheduled_for=run.scheduled_for,
        attempt=run.attempt + 1,
        status="pending",
        worker_id=worker_id,
        token=token,
        now=now,
        due_at=due_at,
    )
    if doc is not None:
        log.info("retry_planned", run_id=str(doc["_id"]), attempt=run.attempt + 1, due_at=due_at.isoformat())
    return doc
