"""The outcomes of this replica's runs, written in batches: one write on `job_runs` and one on `syncjobs`
for all the outcomes that arrive together, instead of two writes per run one after the other.

Why: every command costs the server a round trip and a fixed part of its CPU whatever it carries, and a
burst's runs end in waves (a claim round fills every free slot at once). A batch is what arrived while
the previous batch was being written: an outcome never waits for company (a window of a few ms coalesced
no more in a burst: bench/RESULTS.md). Each run keeps its guarantees: its outcome lands only while the
run is ours (`job_runs.finish_claimed_runs`, guarded by the run's lease), its job's outcome is written
only once its own landed, and through a database outage each write is retried only while its run's
lease is known to hold (then given up: the leader fails the run as lost and retries it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pymongo.errors import PyMongoError
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import job_runs, sync_jobs
from syncjobs.shared.store.job_runs import Claimant, FinishedRun
from syncjobs.shared.store.sync_jobs import JobOutcome
from syncjobs.shared.waits import spawn
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.run_leases import WRITE_BACKOFF, LeasedRun


@dataclass(frozen=True)
class Recorded:
    """What of one run's outcome is stored: on the run (False: the run was not ours any more, or its
    lease could no longer be trusted through an outage), and on its job (False also: the job is gone)."""

    run: bool
    job: bool


@dataclass
class _Outcome:
    """One run's outcome on its way; `failed` once a write carrying it failed (it is then retried only
    while the run's lease is trusted, as `ClaimedRun._persist` does)."""

    run: LeasedRun
    finished: FinishedRun
    job: JobOutcome | None  # None: the run has no job to record it on (deleted before it started)
    answer: asyncio.Future[Recorded]
    failed: bool = False

    def settle(self, run: bool, job: bool = False) -> None:
        if not self.answer.done():  # its waiter may have been cancelled (a replica abandoning its runs)
            self.answer.set_result(Recorded(run, job))


@dataclass
class OutcomeWriter:
    """Records the outcomes of one replica's claimed runs; one flush at a time, started by the first
    outcome queued and ended when none is left."""

    db: Database
    claimant: Claimant
    health: DatabaseHealth
    _queue: list[_Outcome] = field(default_factory=list, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def record(self, run: LeasedRun, finished: FinishedRun, job: JobOutcome | None) -> Recorded:
        """The run's outcome, then (once it landed) its job's; what of them is stored."""
        if run.lost:
            return Recorded(run=False, job=False)
        outcome = _Outcome(run, finished, job, asyncio.get_running_loop().create_future())
        self._queue.append(outcome)
        if self._task is None or self._task.done():
            self._task = spawn(self._write_while_queued(), "run outcome writer")
        return await outcome.answer

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write_while_queued(self) -> None:
        on_runs: list[_Outcome] = []  # their run's outcome is to be written
        on_jobs: list[_Outcome] = []  # their run's outcome landed: their job's is to be written
        attempt = 0
        try:
            while True:
                on_runs += self._queue
                self._queue = []
                on_runs, on_jobs = self._worth_writing(on_runs, on_jobs)
                if not (on_runs or on_jobs):
                    return
                try:
                    on_jobs += await self._write_runs(on_runs)
                    on_runs = []
                    await self._write_jobs(on_jobs)
                    on_jobs = []
                except PyMongoError as error:
                    self.health.failed(error)
                    for outcome in (*on_runs, *on_jobs):
                        outcome.failed = True
                    attempt += 1
                    await asyncio.sleep(WRITE_BACKOFF.seconds(attempt))
                    continue
                self.health.succeeded()
                attempt = 0
        except BaseException as error:  # cancelled (the replica stops) or a bug: no waiter may wait for ever
            for outcome in (*on_runs, *on_jobs, *self._queue):
                if outcome.answer.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    outcome.answer.cancel()
                else:
                    outcome.answer.set_exception(error)
            self._queue = []
            raise

    def _worth_writing(self, on_runs: list[_Outcome], on_jobs: list[_Outcome]) -> tuple[list[_Outcome], list[_Outcome]]:
        """Give up the outcomes whose run was lost, and those a write failed for whose lease can no longer
        be trusted: the leader fails their run (or has failed it) as lost."""
        now = time.monotonic()

        def kept(outcome: _Outcome) -> bool:
            return not outcome.run.lost and not (outcome.failed and not outcome.run.lease_trusted(now))

        for outcome in on_runs:
            if not kept(outcome):
                outcome.settle(run=False)
        for outcome in on_jobs:
            if not kept(outcome):
                outcome.settle(run=True)
        return [o for o in on_runs if kept(o)], [o for o in on_jobs if kept(o)]

    async def _write_runs(self, on_runs: list[_Outcome]) -> list[_Outcome]:
        """The runs' outcomes in one write; those that landed, whose job's outcome is to be written."""
        stored = await job_runs.finish_claimed_runs(self.db, self.claimant, [outcome.finished for outcome in on_runs])
        landed = []
        for outcome in on_runs:
            if outcome.finished.run_id not in stored:
                outcome.settle(run=False)
            elif outcome.job is None:
                outcome.settle(run=True)
            else:
                landed.append(outcome)
        return landed

    async def _write_jobs(self, on_jobs: list[_Outcome]) -> None:
        jobs = [outcome.job for outcome in on_jobs if outcome.job is not None]
        written = await sync_jobs.record_run_outcomes(self.db, jobs)
        for outcome in on_jobs:
            outcome.settle(run=True, job=outcome.job is not None and outcome.job.job_id in written)
