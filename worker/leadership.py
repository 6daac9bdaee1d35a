"""What the leader does during one lease term: decide every job's fires exactly once and write them as
`pending` runs, and fail the runs whose claimer died (`worker lost`), retrying them per their policy.

Executing runs is not the leader's: every replica claims pending runs (`worker/dispatcher.py`). A term
starts with recovery (runs whose lease lapsed are failed; missed fires are caught up or recorded
`missed`) and ends on SIGTERM or when the lease is lost. Every fire and job write carries the term's
fencing token.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bson import ObjectId
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from syncjobs.shared.clock import Clock
from syncjobs.shared.cron import CronSchedule, parse_schedule
from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import JobRun, RunStatus, SyncJob, from_document
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.retry import DB_RETRY_SECONDS
from syncjobs.shared.run_events import RunEventSubscriptions, run_event
from syncjobs.shared.store import job_changes, job_runs, sync_jobs
from syncjobs.shared.store.run_stats import ALERT_WINDOW
from syncjobs.shared.waits import taking_turns, wait_any
from syncjobs.worker.claimed_run import insert_retry
from syncjobs.worker.fire_plan import FireDecision, FirePlan, HeldFires, decide_due_fires, hold_fires, should_retry
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.lease import Lease
from syncjobs.worker.run_leases import lapsed_runs

log = get_logger(__name__)


@dataclass
class PlannedJob:
    """One job as the leader plans it: the job, its parsed schedule, its next fire, and the instant up to
    which its fires are already decided (a change event carrying an older nextRunAt must not fire again).
    A removed job keeps its record (inactive) for the term, so re-enabling it cannot repeat a fire."""

    job: SyncJob
    schedule: CronSchedule
    next_fire: datetime
    decided_through: datetime | None = None
    active: bool = True


@dataclass(frozen=True)
class _Fired:
    """A job whose due fires were decided in one batch, with what to restore if the batch is not written."""

    job_id: ObjectId
    record: PlannedJob
    decision: FireDecision
    previous: tuple[datetime, datetime | None]
    held: HeldFires


# Jobs decided and written per batch of a burst. Each batch's writes must land within what remains of
# the 3 s lease's trust (`within_term`): SecantusDB spends ~3.7 ms per update of a bulk_write when idle,
# several times that under a burst, so 1,000 nextRunAt moves in one write (or 100) outlasted the trust,
# timed out, and were decided and retried again and again. A batch also lets the first runs start while
# the rest are decided.
FIRE_BATCH_JOBS = 25


class Leadership:
    def __init__(
        self,
        db: Database,
        lease: Lease,
        clock: Clock,
        *,
        health: DatabaseHealth,
        run_lease_seconds: float,
        random_fraction: Callable[[], float] = random.random,
        run_events: RunEventSubscriptions | None = None,
    ) -> None:
        self.db = db
        self.lease = lease
        self.token = lease.fencing_token
        self.clock = clock
        self.health = health
        self.plan: FirePlan[ObjectId] = FirePlan()
        self._planned: dict[ObjectId, PlannedJob] = {}
        self._run_lease_seconds = run_lease_seconds
        self._random = random_fraction
        self._wake = asyncio.Event()
        self._run_events = run_events

    def planned_versions(self) -> dict[ObjectId, int]:
        """Id -> version of every job planned now (what the polling fallback compares)."""
        return {job_id: record.job.version for job_id, record in self._planned.items() if record.active}

    # --- start of term ---

    async def recover(self) -> None:
        """Fail the runs whose claimer is gone, then load every enabled job."""
        await self.fail_lost_runs()
        async for doc in taking_turns(await sync_jobs.enabled_job_docs(self.db)):
            self.job_changed(doc)
        log.info("leader_ready", fencing_token=self.token, jobs=len(self.planned_versions()))

    # --- what the change feed tells us ---

    def job_changed(self, doc: Document) -> None:
        """(Re)plan a job from its document: an edit, a toggle or our own write."""
        job_id = doc["_id"]
        if not doc.get("enabled"):
            self.job_removed(job_id)
            return
        record = self._planned.get(job_id)
        try:
            job = from_document(SyncJob, doc)
            same = record is not None and record.schedule.cron == job.schedule.cron
            if same and record is not None and record.schedule.timezone == job.schedule.timezone:
                schedule = record.schedule
            else:
                schedule = parse_schedule(job.schedule.cron, job.schedule.timezone)
        except (ValidationFailed, ValidationError):
            log.warning("job_schedule_invalid", job_id=str(job_id))
            self.job_removed(job_id)
            return
        due = job.next_run_at or schedule.next_after(self.clock.now())
        decided = record.decided_through if record is not None else None
        if decided is not None and due <= decided:
            due = schedule.next_after(decided)
        self._planned[job_id] = PlannedJob(job, schedule, due, decided)
        self.plan.plan(job_id, due)
        log.debug("job_planned", job_id=str(job_id), due=due.isoformat(), version=job.version)
        self._wake.set()

    def job_removed(self, job_id: ObjectId) -> None:
        record = self._planned.get(job_id)
        if record is not None:
            record.active = False
        self.plan.remove(job_id)

    # --- the fire loop ---

    async def fire_due(self) -> None:
        """Sleep until the earliest planned time (or a change), fire what is due in one batch; forever."""
        while True:
            self._wake.clear()
            due = self.plan.next_due()
            await wait_any(self._wake.wait(), *([self.clock.sleep_until(due)] if due is not None else []))
            job_ids = self.plan.pop_due(self.clock.now())
            for start in range(0, len(job_ids), FIRE_BATCH_JOBS):
                if not self.lease.is_held():  # a lapsed term fires nothing more: the next leader will
                    break
                await self._fire(job_ids[start : start + FIRE_BATCH_JOBS])

    async def _fire(self, job_ids: list[ObjectId]) -> None:
        """Decide every due job's fires, then write them all with one insert_many (a duplicate fire key
        means the fire is already taken) and move their nextRunAt with one bulk_write."""
        now = self.clock.now()
        fired: list[_Fired] = []
        async for job_id in taking_turns(job_ids):  # a turn for the lease between jobs: see TURN_SECONDS
            record = self._planned.get(job_id)
            if record is None or not record.active:
                continue
            decision = decide_due_fires(record.schedule, record.next_fire, now, record.job.catch_up_fires)
            job = record.job
            held = hold_fires(job.paused, job.paused_until, job.skip_count, decision.run, decision.missed)
            fired.append(_Fired(job_id, record, decision, (record.next_fire, record.decided_through), held))
            # Set before the writes: a change event arriving meanwhile must not plan these fires again.
            record.decided_through, record.next_fire = now, decision.next_fire
            self.plan.plan(job_id, decision.next_fire)
        docs = [doc for one in fired for doc in self._fire_documents(one, now)]
        moves = [
            sync_jobs.NextRun(
                ObjectId(one.record.job.id),
                one.record.job.version,
                one.decision.next_fire,
                now + ALERT_WINDOW if one.decision.missed or one.held.skipped else None,
            )
            for one in fired
        ]
        try:
            with self.lease.within_term():
                written = await job_runs.insert_fires(self.db, docs)
                await sync_jobs.advance_next_runs(self.db, moves, self.token)
            self.health.succeeded()
        except PyMongoError as error:  # undo, and decide the same fires again in a moment
            self.health.failed(error)
            for one in fired:
                one.record.next_fire, one.record.decided_through = one.previous
                self.plan.plan(one.job_id, now + timedelta(seconds=DB_RETRY_SECONDS))
            return
        taken = {doc["_id"] for doc in written}
        for doc in docs:
            if doc["_id"] not in taken and doc["status"] == RunStatus.PENDING:
                log.info("fire_already_taken", job_id=str(doc["jobId"]), scheduled_for=doc["scheduledFor"].isoformat())
        for one in fired:
            if one.decision.older_missed_left_out:
                log.warning(
                    "older_missed_fires_not_recorded", job_id=one.record.job.id, recorded=len(one.decision.missed)
                )
        await self._announce_missed(written, fired, now)
        if written:
            log.info("fires_written", runs=sum(doc["status"] == RunStatus.PENDING for doc in written), jobs=len(fired))
        for one in fired:
            await self._release_holds(one)

    async def _announce_missed(self, written: list[Document], fired: list[_Fired], now: datetime) -> None:
        """A `run.missed` webhook event per missed fire written, for workspaces subscribed to run events."""
        if self._run_events is None:
            return
        names = {ObjectId(one.record.job.id): one.record.job.name for one in fired}
        events = [
            (
                doc["workspaceId"],
                "run.missed",
                run_event("run.missed", doc, names.get(doc["jobId"]), now, doc.get("error")),
            )
            for doc in written
            if doc["status"] == RunStatus.MISSED and doc["workspaceId"] in self._run_events.workspaces
        ]
        await self._run_events.publish_many(events, now)

    async def _release_holds(self, fired: _Fired) -> None:
        """After a batch: use up the job's skips, end a pause that ran out (once: the write matches only
        that pause), and keep the planned job in step (these writes do not replan it)."""
        record, held = fired.record, fired.held
        job_id, until = ObjectId(record.job.id), record.job.paused_until
        try:
            with self.lease.within_term():  # leader writes, like the fires: only within this term
                if held.skips_used:
                    await sync_jobs.use_skips(self.db, job_id, held.skips_used, self.token)
                    skips = record.job.skip_count - held.skips_used
                    record.job = record.job.model_copy(update={"skip_count": skips})
                if held.resumed and until is not None:
                    if await sync_jobs.end_pause(self.db, job_id, until, self.token):
                        log.info("job_resumed", job_id=record.job.id, paused_until=until.isoformat())
                        await job_changes.record_by_scheduler(self.db, record.job, until, "resume")
                    resumed = {"paused": False, "paused_until": None, "pause_note": None}
                    record.job = record.job.model_copy(update=resumed)
        except PyMongoError as error:  # the fires are written; the next batch decides from the stored job
            self.health.failed(error)

    def _fire_documents(self, fired: _Fired, now: datetime) -> list[Document]:
        job = fired.record.job

        def fire(at: datetime, status: RunStatus, error: str | None = None) -> Document:
            return job_runs.fire_document(
                job,
                trigger="schedule",
                scheduled_for=at,
                attempt=1,
                status=status,
                worker_id=self.lease.owner,
                token=self.token,
                now=now,
                error=error,
            )

        missed = [fire(at, RunStatus.MISSED, "missed: no worker could fire it in time") for at in fired.held.missed]
        skipped = [fire(at, RunStatus.SKIPPED, f"skipped: {reason}") for at, reason in fired.held.skipped]
        return missed + skipped + [fire(at, RunStatus.PENDING) for at in fired.held.run]

    # --- runs whose claimer died ---

    async def fail_lost_runs_forever(self) -> None:
        """Every third of a run lease: a run not renewed for a whole lease is lost with its replica."""
        while True:
            await asyncio.sleep(self._run_lease_seconds / 3)
            try:
                with self.lease.within_term():
                    await self.fail_lost_runs()
                self.health.succeeded()
            except PyMongoError as error:
                self.health.failed(error)

    async def fail_lost_runs(self) -> None:
        """`failed: worker lost` on every running run whose lease lapsed (on the server's clock), recorded
        on its job and retried by its job's policy; a heartbeat that lands first keeps the run."""
        now = self.clock.now()
        for doc in await lapsed_runs(self.db):
            run = from_document(JobRun, doc)
            duration = int((now - run.started_at).total_seconds() * 1000) if run.started_at else None
            if not await job_runs.mark_lost(self.db, doc, token=self.token, now=now, duration_ms=duration):
                continue
            log.warning("run_worker_lost", run_id=run.id, job_id=run.job_id, worker=run.worker_id)
            job_id = ObjectId(run.job_id)
            await sync_jobs.record_run_outcome(
                self.db,
                job_id,
                self.token,
                status=RunStatus.FAILED,
                finished_at=now,
                error="worker lost",
                duration_ms=duration,
                watch_alerts_until=now + ALERT_WINDOW,
            )
            job = await sync_jobs.find_job(self.db, job_id)
            if job is not None and should_retry(RunStatus.FAILED, run.attempt, job.retry.max_attempts):
                await insert_retry(
                    self.db, job, run, worker_id=self.lease.owner, token=self.token, now=now, random=self._random
                )
