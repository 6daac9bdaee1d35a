"""One run this replica claimed: its executor, its outcome on the run and the job, and its retry.

Its writes are guarded by the run's lease (`job_runs.finish_claimed_runs`), not by a fencing token: once
the leader has failed it as `worker lost`, nothing of it lands. Through a database outage a write is
retried only while the lease is known to hold. Its outcome goes with those of the replica's other runs
that end together (`outcome_writer.OutcomeWriter`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.shared import metrics
from syncjobs.shared.alerts import needs_evaluation, outcome_is_watched
from syncjobs.shared.clock import Clock
from syncjobs.shared.connection_rules import ControlClusterCache
from syncjobs.shared.errors import SyncjobsError
from syncjobs.shared.executor_protocol import CHANNEL_FLAG, RunChannel
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import JobRun, RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.run_events import FINAL_EVENTS, RunEventSubscriptions, run_event
from syncjobs.shared.run_spec import RunControlAccess, spec_for_claimed_run
from syncjobs.shared.secrets import SecretKeyError
from syncjobs.shared.settings import AlertThresholds
from syncjobs.shared.store import job_runs, sync_jobs
from syncjobs.shared.store.job_runs import Claimant, FinishedRun
from syncjobs.shared.store.run_stats import ALERT_WINDOW
from syncjobs.shared.store.sync_jobs import JobOutcome
from syncjobs.worker.executor_process import ExecutionOutcome, ExecutorSpec, run_executor
from syncjobs.worker.fire_plan import retry_delay, should_retry
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.outcome_writer import OutcomeWriter
from syncjobs.worker.run_leases import WRITE_BACKOFF, trusted_seconds

log = get_logger(__name__)
T = TypeVar("T")

# Called with the job's identity (`sync_jobs.job_identity`) and the run's id once its outcome is recorded.
RunCallback = Callable[[Document, ObjectId], Awaitable[None]]


@dataclass(frozen=True)
class RunContext:
    """What every claimed run of one replica shares."""

    db: Database
    clock: Clock
    claimant: Claimant
    health: DatabaseHealth
    executor: ExecutorSpec
    on_run_finished: RunCallback | None
    random_fraction: Callable[[], float]
    outcomes: OutcomeWriter
    run_events: RunEventSubscriptions | None = None  # where run.* webhook events are queued
    alert_thresholds: AlertThresholds = field(default_factory=AlertThresholds)  # outcomes that keep a job watched


class ClaimedRun:
    """A claimed run: its executor's cancel switch, and until when (monotonic) its lease is known to
    hold; `lost` once the leader took it back (its outcome is then not ours to record)."""

    def __init__(self, context: RunContext, run: JobRun, claimed_at: float, *, slot_freed: Callable[[], None]) -> None:
        """`claimed_at`: when (monotonic) the claim that set the run's lease was sent."""
        self.context = context
        self.run = run
        self.run_id = ObjectId(run.id)
        self._trusted_until = claimed_at + trusted_seconds(context.claimant.lease_seconds)
        self._cancel = asyncio.Event()
        self.lost = False
        self.cancelled_on_request = False
        self.executing = True  # holds an executor slot; the outcome is written after the slot is freed
        self._alerts_watched_until: datetime | None = None  # the job's `alertWatchUntil` as claimed
        self.recording = False  # its outcome write is on its way: that write tells whether it was lost
        self.task: asyncio.Task[None] | None = None
        self._slot_freed = slot_freed

    def lease_trusted(self, at: float) -> bool:
        """Its lease is known to hold at `at` (monotonic)."""
        return at <= self._trusted_until

    @property
    def trusted_until(self) -> float:
        """Until when (monotonic) its lease is known to hold."""
        return self._trusted_until

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at `sent_at` (monotonic) landed: the lease holds that much longer."""
        if not self.lost:
            self._trusted_until = max(
                self._trusted_until, sent_at + trusted_seconds(self.context.claimant.lease_seconds)
            )

    def kill(self) -> None:
        """Kill its executor (the outcome, `cancelled`, is still recorded)."""
        self._cancel.set()

    def lose(self) -> None:
        """The lease is gone: kill the executor, record nothing."""
        if not self.lost:
            log.warning("run_lease_lost", run_id=str(self.run_id), job_id=self.run.job_id)
        self.lost = True
        self._cancel.set()

    def cancel_on_request(self) -> None:
        """A client cancelled the run: kill the executor, record `cancelled` (never retried)."""
        if not self.cancelled_on_request:
            log.info("run_cancel_requested", run_id=str(self.run_id), job_id=self.run.job_id)
        self.cancelled_on_request = True
        self._cancel.set()

    async def execute(self) -> None:
        doc = await self._persist(lambda: sync_jobs.find_job_doc(self.context.db, ObjectId(self.run.job_id)))
        if doc is None:
            finished = FinishedRun(self.run_id, RunStatus.CANCELLED, self.context.clock.now(), {"error": "job deleted"})
            self.recording = True
            await self.context.outcomes.record(self, finished, None)
            return
        job = from_document(SyncJob, doc)
        self._alerts_watched_until = doc.get("alertWatchUntil")  # None: a job from before the field
        await self._publish("run.started", job, RunStatus.RUNNING, None)
        outcome = await self._run_executor(job)
        if self.cancelled_on_request and outcome.status == RunStatus.CANCELLED:
            outcome.error = "cancelled on request"
        self.executing = False  # the next run may start while this one's outcome is written
        self._slot_freed()
        await self._record(job, outcome)

    async def _run_executor(self, job: SyncJob) -> ExecutionOutcome:
        context, run = self.context, self.run
        log.debug(  # per run: at debug, a burst of runs writes no line each (issue 22); failures say more
            "run_started", run_id=run.id, job_id=run.job_id, trigger=run.trigger, worker=context.claimant.worker_id
        )
        if run.trigger == "schedule":
            metrics.fire_lag_seconds.observe(max(0.0, (context.clock.now() - run.scheduled_for).total_seconds()))
        argv = [*context.executor.argv, "--run-id", run.id]
        channel: RunChannel | None = None
        secrets: list[str] = []
        if context.executor.control is not None:
            try:
                channel, secrets = await self._run_channel(job, context.executor.control)
            except (PyMongoError, SyncjobsError, SecretKeyError) as error:  # a key gone: the run says which secret
                log.warning("run_spec_not_read", run_id=self.run.id, error=str(error)[:200])
                return ExecutionOutcome(RunStatus.FAILED, None, 0, error=f"the run's spec could not be read: {error}")
            argv.append(CHANNEL_FLAG)
        metrics.executors_running.inc()
        try:
            outcome = await run_executor(
                argv,
                context.executor.env,
                float(job.timeout_seconds),
                self._cancel,
                fork_server=context.executor.fork_server,
                channel=channel,
                hosts=context.executor.hosts,
                workspace=job.workspace_id,
                secrets=secrets,
            )
        finally:
            metrics.executors_running.dec()
        outcome.scrub(secrets)
        return outcome

    async def _run_channel(self, job: SyncJob, control: ControlClusterCache) -> tuple[RunChannel, list[str]]:
        """The run's channel: its spec, connection settings opened here (the executor holds no key), and
        this run's own access to the control database, served to the executor as it asks; and the run's
        clear secrets, which nothing the executor reports may carry into the run."""
        db = self.context.db
        spec = await spec_for_claimed_run(db, self.run_id, job, await control.get())
        access = RunControlAccess(db, self.run_id, ObjectId(job.id), now=self.context.clock.now)
        return RunChannel(spec.to_line(), access), spec.opened().secrets()

    async def _record(self, job: SyncJob, outcome: ExecutionOutcome) -> None:
        """The outcome on the run (only while it is ours), then on the job; then a retry if its policy says."""
        context, run = self.context, self.run
        self.recording = True
        now = context.clock.now()
        watched = outcome_is_watched(outcome.status, outcome.duration_ms, context.alert_thresholds)
        recorded = await context.outcomes.record(
            self,
            FinishedRun(self.run_id, outcome.status, now, outcome.run_fields()),
            JobOutcome(
                ObjectId(run.job_id),
                outcome.status,
                now,
                outcome.error,
                outcome.duration_ms,
                watch_alerts_until=now + ALERT_WINDOW if watched else None,
            ),
        )
        if not recorded.run:
            log.warning("run_outcome_not_recorded", run_id=run.id, status=outcome.status, reason="run lease lost")
            return
        fields = {"run_id": run.id, "job_id": run.job_id, "status": outcome.status, "duration_ms": outcome.duration_ms}
        if outcome.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            log.warning("run_finished", **fields, error=(outcome.error or "")[:500])
        else:
            log.info("run_finished", **fields)
        metrics.observe_run_finished(outcome.status, outcome.duration_ms)
        if outcome.status in FINAL_EVENTS:
            await self._publish(FINAL_EVENTS[outcome.status], job, outcome.status, outcome.error)
        until = self._alerts_watched_until
        evaluate = watched or until is None or needs_evaluation(job.sync_mode, until, now)
        if context.on_run_finished is not None and recorded.job and evaluate:  # short success, unwatched: none
            await context.on_run_finished(sync_jobs.job_identity(job), self.run_id)
        if should_retry(outcome.status, run.attempt, job.retry.max_attempts):
            worker_id = context.claimant.worker_id
            await self._persist(
                lambda: insert_retry(
                    context.db, job, run, worker_id=worker_id, token=None, now=now, random=context.random_fraction
                )
            )

    async def _publish(self, name: str, job: SyncJob, status: str, error: str | None) -> None:
        """Queue a run.* webhook event: nothing at all unless the workspace has a webhook subscribed."""
        events, run = self.context.run_events, self.run
        if events is None or ObjectId(run.workspace_id) not in events.workspaces:
            return
        stored = {
            "_id": self.run_id,
            "workspaceId": run.workspace_id,
            "jobId": run.job_id,
            "trigger": run.trigger,
            "attempt": run.attempt,
            "scheduledFor": run.scheduled_for,
            "status": status,
        }
        now = self.context.clock.now()
        await events.publish(ObjectId(run.workspace_id), name, run_event(name, stored, job.name, now, error), now)

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T | None:
        """Retry a write through a database outage while the run's lease is known to hold; then give up:
        the leader fails the run as lost and retries it."""
        attempt = 0
        while True:
            try:
                result = await write()
            except PyMongoError as error:
                self.context.health.failed(error)
                attempt += 1
                if self.lost or not self.lease_trusted(time.monotonic()):
                    return None
                await asyncio.sleep(WRITE_BACKOFF.seconds(attempt))
                continue
            self.context.health.succeeded()
            return result


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
        status=RunStatus.PENDING,
        worker_id=worker_id,
        token=token,
        now=now,
        due_at=due_at,
    )
    if doc is not None:
        log.info("retry_planned", run_id=str(doc["_id"]), attempt=run.attempt + 1, due_at=due_at.isoformat())
    return doc
