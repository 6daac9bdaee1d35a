"""Every replica's claimer: it claims due pending runs up to its slot count, round-robin across
workspaces and under the per-workspace cap, runs their executors, keeps their run leases alive, and
records their outcome and retries.

A claim round is one write for the runs it picked (pending -> running, this worker, a run lease); each
run's claim is also its job's execution lock (see `job_runs.claim_runs`). New pending runs wake the
claimer through a change stream on `job_runs` inserts (or a poll every SYNCJOBS_POLL_SECONDS where the
server has none); a run finishing here wakes it too. The claimer's writes on its run are guarded by the
run's lease, not by a fencing token; the outcomes of runs that end together are written together
(`outcome_writer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from bson import ObjectId
from pymongo.errors import ConnectionFailure, PyMongoError
from syncjobs.shared.clock import Clock
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import DEFAULT_OVERLAP, JobRun, from_document
from syncjobs.shared.mongo import Database, Document, no_change_streams, paced_changes
from syncjobs.shared.retry import DB_RETRY_SECONDS
from syncjobs.shared.run_events import RunEventSubscriptions
from syncjobs.shared.settings import AlertThresholds
from syncjobs.shared.store import job_runs, sync_jobs, workspaces
from syncjobs.shared.store.job_runs import Claimant
from syncjobs.shared.store.run_stats import ALERT_WINDOW
from syncjobs.shared.waits import spawn, wait_any
from syncjobs.worker.claimed_run import ClaimedRun, RunCallback, RunContext
from syncjobs.worker.executor_process import ExecutorSpec
from syncjobs.worker.fairness import RESERVE_SLOTS, pick_claims
from syncjobs.worker.fire_plan import runs_to_skip
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.outcome_writer import OutcomeWriter
from syncjobs.worker.pending_runs import PendingRun, PendingRuns
from syncjobs.worker.run_leases import RunLeaseRenewal

log = get_logger(__name__)

ABANDON_WAIT_SECONDS = 0.2  # for run tasks to end once cancelled (their executors killed)
# After a claim finds its run taken by another replica, the pending runs are re-read this soon (not at
# once: one read per burst of lost races), so a replica stops trying every run the others already took.
REREAD_AFTER_CONTENTION_SECONDS = 0.5
# How often a replica with runs asks whether a client cancelled one (the bound is 2 s).
CANCEL_POLL_SECONDS = 1.0


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
        run_events: RunEventSubscriptions | None = None,
        alert_thresholds: AlertThresholds | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.claimant = claimant
        self.health = health
        self._executor = executor
        self._outcomes = OutcomeWriter(db, claimant, health)
        self._context = RunContext(
            db,
            clock,
            claimant,
            health,
            executor,
            on_run_finished,
            random_fraction,
            self._outcomes,
            run_events,
            alert_thresholds or AlertThresholds(),
        )
        self._poll_seconds = poll_seconds
        self._claimed: dict[ObjectId, ClaimedRun] = {}
        # Claims sent whose answer was lost (a partition): (the run as pending, when it was claimed).
        self._in_doubt: dict[ObjectId, tuple[Document, datetime]] = {}
        self._pending = PendingRuns()
        self._arrived: list[PendingRun] = []  # runs the stream brought during a re-read
        self._reread_at = 0.0  # monotonic
        self._waiting_jobs: set[ObjectId] = set()  # jobs whose run goes on: their pending runs wait
        self._last_workspace: ObjectId | None = None
        self._reserve = 0  # slots a workspace past its share leaves free (RESERVE_SLOTS with several workspaces)
        self._wake = asyncio.Event()
        self._stopping = False
        self._leases = RunLeaseRenewal(db, claimant, health, self._claimed)
        self._cancels: asyncio.Task[None] | None = None

    # --- what others may ask ---

    def running(self) -> int:
        """Executor slots in use here."""
        return sum(claimed.executing for claimed in self._claimed.values())

    def waits_for_lock(self, job_id: ObjectId) -> bool:
        """A run of this job waits here because the job's previous run still goes (overlap)."""
        return job_id in self._waiting_jobs

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    # --- the claim loop ---

    async def run(self) -> None:
        """Claim and start runs until cancelled or `stop_claiming` is called."""
        watcher = spawn(self._watch(), "pending run watch")
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self._settle_in_doubt()
                    if time.monotonic() >= self._reread_at:
                        await self._reread()
                    next_due = await self._claim_round()
                    self.health.succeeded()
                except PyMongoError as error:  # an unreachable database: claim nothing, try again shortly
                    self.health.failed(error)
                    await self._idle(None, DB_RETRY_SECONDS)
                    continue
                await self._idle(next_due, self._reread_at - time.monotonic())
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _idle(self, next_due: datetime | None, seconds: float) -> None:
        """Until woken (a new pending run, a slot freed), `next_due` on the clock, or `seconds`."""
        due = [self.clock.sleep_until(next_due)] if next_due is not None else []
        await wait_any(self._wake.wait(), *due, within=max(0.0, seconds))

    async def _reread(self) -> None:
        """Every SYNCJOBS_POLL_SECONDS (and when the stream opens): the pending runs as stored, which also
        forgets runs claimed elsewhere and retries runs that waited for another replica's run; and whether
        there are several workspaces (with one, a slot kept free for another would only idle)."""
        self._arrived = []
        docs = await job_runs.pending_runs(self.db)
        self._pending.replace([*(PendingRun.from_document(doc) for doc in docs), *self._arrived])
        self._waiting_jobs.clear()
        reserve = RESERVE_SLOTS if await workspaces.several_workspaces(self.db) else 0
        if reserve != self._reserve:
            log.info("fair_share_reserve", slots=reserve, share=self._executor.workspace_share)
        self._reserve = reserve
        self._reread_at = time.monotonic() + self._poll_seconds

    async def _claim_round(self) -> datetime | None:
        """Claim up to the free slots at once, picked round-robin across workspaces; the next due time if
        slots stay free. A claim lost to another replica or to a running job makes the loop look again."""
        free = self._executor.max_concurrent_runs - self.running()
        if free <= 0 or self._stopping:
            return None
        now = self.clock.now()
        due = self._pending.due_by_workspace(now, self._waiting_jobs)
        if due:
            cap = self._executor.max_runs_per_workspace
            running = await job_runs.running_per_workspace(self.db) if cap is not None else {}
            here = Counter(ObjectId(c.run.workspace_id) for c in self._claimed.values() if c.executing)
            share = self._executor.workspace_share
            picked = pick_claims(
                due, running, cap, self._last_workspace, free, here=here, share=share, reserve=self._reserve
            )
            if picked:
                self._last_workspace = picked[-1].workspace_id
                if not await self._claim(picked, now):
                    self._wake.set()
        return self._pending.next_due_after(now) if free > 0 else None

    async def _claim(self, picked: list[PendingRun], now: datetime) -> bool:
        """Claim the picked runs in one write and start those won; False when one was not (gone, or its job
        runs somewhere: it then waits), so the loop looks again."""
        sent_at = time.monotonic()
        try:
            batch = await job_runs.claim_runs(
                self.db, self.claimant, [candidate.document for candidate in picked], now=now, token=ObjectId()
            )
        except ConnectionFailure:  # the claims may have landed and only the answer been lost
            for candidate in picked:
                self._in_doubt[candidate.run_id] = (candidate.document, now)
            raise
        for doc in batch.won:
            self._pending.discard(doc["_id"])
            self._start(doc, sent_at)
        if len(batch.won) == len(picked):
            return True
        if batch.locked_job is not None:  # the job's run goes somewhere: its lock is taken; the rest wait
            self._waiting_jobs.add(batch.locked_job)
            await self._apply_overlap(batch.locked_job, now)
        else:  # another replica took them: others may be taken too, so re-read soon
            won = {doc["_id"] for doc in batch.won}
            for candidate in picked:
                if candidate.run_id not in won:
                    self._pending.discard(candidate.run_id)
            self._reread_at = min(self._reread_at, time.monotonic() + REREAD_AFTER_CONTENTION_SECONDS)
        return False

    async def _settle_in_doubt(self) -> None:
        """A claim whose answer was lost is ours if its lease renews under our instance: run it (else it is
        still pending, or another replica's, and the pending runs say which)."""
        for run_id, (pending, claimed_at) in list(self._in_doubt.items()):
            sent_at = time.monotonic()
            lost = await job_runs.renew_run_leases(self.db, self.claimant, [run_id])
            del self._in_doubt[run_id]
            if run_id not in lost:
                self._pending.discard(run_id)
                log.info("claim_recovered", run_id=str(run_id))
                doc = job_runs.claimed_document(self.claimant, pending, now=claimed_at)
                self._start(doc, sent_at)

    async def _apply_overlap(self, job_id: ObjectId, now: datetime) -> None:
        """Skip the fires that the job's overlap policy skips while its previous run goes; the rest wait
        (until a run of the job ends here, a new run of it arrives, or the next re-read)."""
        job = await sync_jobs.find_job(self.db, job_id)
        waiting = await job_runs.due_runs_of_job(self.db, job_id, now)
        skipped = runs_to_skip(
            job.overlap if job else DEFAULT_OVERLAP, [(run["_id"], run["trigger"]) for run in waiting]
        )
        await job_runs.skip_pending_runs(self.db, skipped, now=now, error="skipped: the previous run is still going")
        if skipped:  # a skipped fire can raise `missed_runs`: the job's runs are evaluated for a window
            await sync_jobs.watch_alerts(self.db, job_id, now + ALERT_WINDOW)
        for run_id in skipped:
            self._pending.discard(run_id)
            log.info("fire_skipped", run_id=str(run_id), job_id=str(job_id))

    async def _watch(self) -> None:
        """Learn of every pending run inserted anywhere, at once; without change streams the re-read does."""
        while True:
            try:
                async with await job_runs.watch_pending_inserts(self.db) as stream:
                    self._reread_at = 0.0  # what was inserted while the stream was down
                    self._wake.set()
                    async for change in paced_changes(stream):
                        self._arrive(change.get("fullDocument") or {})
            except PyMongoError as error:
                if no_change_streams(error):
                    log.warning("claims_polling", poll_seconds=self._poll_seconds, reason=str(error)[:200])
                    return
                self.health.failed(error)
                await asyncio.sleep(DB_RETRY_SECONDS)

    def _arrive(self, doc: Document) -> None:
        if "_id" not in doc:
            return
        run = PendingRun.from_document(doc)
        self._pending.add(run)
        self._arrived.append(run)
        self._waiting_jobs.discard(run.job_id)  # a new fire of a running job: its policy decides it now
        self._wake.set()

    # --- one claimed run ---

    def _start(self, doc: Document, claimed_at: float) -> None:
        claimed = ClaimedRun(self._context, from_document(JobRun, doc), claimed_at, slot_freed=self._wake.set)
        run_id = doc["_id"]
        self._claimed[run_id] = claimed
        claimed.task = spawn(self._execute(run_id, claimed), f"run {run_id} of job {claimed.run.job_id}")
        self._leases.start()
        if self._cancels is None or self._cancels.done():
            self._cancels = spawn(self._watch_cancels(), "run cancel watch")

    async def _execute(self, run_id: ObjectId, claimed: ClaimedRun) -> None:
        try:
            await claimed.execute()
        except Exception:
            log.exception("run_failed_in_worker", run_id=str(run_id))
        finally:
            del self._claimed[run_id]
            self._waiting_jobs.discard(ObjectId(claimed.run.job_id))  # a run of it may wait here
            self._wake.set()

    # --- cancels asked by clients ---

    async def _watch_cancels(self) -> None:
        """Every CANCEL_POLL_SECONDS while runs execute here, one read by `_id` finds the ones a client
        asked to cancel: their executors' process groups are killed and they are recorded `cancelled`.
        A poll rather than a change stream: it costs one indexed read a second only while runs go, and
        it needs no stream of updates (SecantusDB answers a stream's getMore on every write)."""
        while self._claimed:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            executing = [run_id for run_id, claimed in self._claimed.items() if claimed.executing]
            try:
                wanted = await job_runs.cancel_requested(self.db, executing)
            except PyMongoError as error:
                self.health.failed(error)
                continue
            for run_id in wanted:
                if (claimed := self._claimed.get(run_id)) is not None:
                    claimed.cancel_on_request()

    # --- the end ---

    async def abandon(self) -> None:
        """Stopping with the database gone: no outcome could be recorded, so the executors are killed now
        and nothing more is written (the leader marks these runs lost once their leases lapse), instead of
        a grace spent on writes that cannot land."""
        self.stop_claiming()
        tasks = []
        for claimed in list(self._claimed.values()):
            claimed.lose()
            if claimed.task is not None:
                claimed.task.cancel()  # its executor's group is killed on the way out
                tasks.append(claimed.task)
        if tasks:
            await asyncio.wait(tasks, timeout=ABANDON_WAIT_SECONDS)
            log.warning("runs_abandoned", count=len(tasks))
        await self._stop_background()

    async def finish(self, grace_seconds: float) -> None:
        """Claim nothing more; wait up to `grace_seconds`, then kill what still runs (`cancelled`)."""
        self.stop_claiming()
        tasks = [claimed.task for claimed in self._claimed.values() if claimed.task is not None]
        if tasks:
            log.info("waiting_for_runs", count=len(tasks), grace_seconds=grace_seconds)
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            if pending:
                for claimed in list(self._claimed.values()):
                    claimed.kill()
                await asyncio.wait(pending)
        await self._stop_background()

    async def _stop_background(self) -> None:
        await self._leases.stop()
        await self._outcomes.stop()
        if self._cancels is not None:
            self._cancels.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cancels
