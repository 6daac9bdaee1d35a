"""Run leases: the claim of a run is a lease on it, renewed by its claimer and failed by the leader once
it lapses. The claim and renewal writes are in `shared/store/job_runs.py`; this module is their timing.

Both leases, the scheduler's (`lease.py`) and a run's, are trusted locally on the monotonic clock from the
send time of the write that set them (the server set the lease's end after we sent), a little less long
than they last (`trusted_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.retry import Backoff
from syncjobs.shared.store import job_runs
from syncjobs.shared.store.job_runs import Claimant
from syncjobs.shared.waits import spawn
from syncjobs.worker.health import DatabaseHealth

# A write on a claimed run through a database outage, retried only while its lease is trusted: 0.2 s,
# doubling, at most 2 s apart.
WRITE_BACKOFF = Backoff(0.2, cap_seconds=2.0)


def trusted_seconds(lease_seconds: float) -> float:
    """How long a lease is acted on after the write that set it was sent: a little less long than it
    lasts, for the event loop's latency."""
    return lease_seconds - min(1.0, lease_seconds / 10)


class LeasedRun(Protocol):
    """A claimed run as its lease renewal sees it (`claimed_run.ClaimedRun`)."""

    @property
    def recording(self) -> bool: ...

    @property
    def lost(self) -> bool: ...

    @property
    def trusted_until(self) -> float: ...

    def lease_trusted(self, at: float) -> bool: ...

    def renewed(self, sent_at: float) -> None: ...

    def lose(self) -> None: ...


class RunLeaseRenewal:
    """Every third of a lease, one write renews the lease of every run this replica holds. A run the
    leader took back, or whose lease could not be renewed in time, loses it (its executor is killed: the
    leader retries the run, and two executors of one run must not write at once)."""

    def __init__(
        self, db: Database, claimant: Claimant, health: DatabaseHealth, held: Mapping[ObjectId, LeasedRun]
    ) -> None:
        self._db = db
        self._claimant = claimant
        self._health = health
        self._held = held
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Renew while any run is held (a no-op while renewing)."""
        if self._task is None or self._task.done():
            self._task = spawn(self._renew_while_held(), "run lease renewal")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _renew_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(self._until_trust_ends())
            await self.renew()

    def _until_trust_ends(self) -> float:
        """A third of a lease, or less: the seconds until the first live run's lease can no longer be
        trusted (0 once one is past), so a renewal that cannot land loses that run in time."""
        third = self._claimant.lease_seconds / 3
        live = [run.trusted_until for run in self._held.values() if not (run.lost or run.recording)]
        return min(third, max(0.0, min(live) - time.monotonic())) if live else third

    async def renew(self) -> None:
        run_ids = list(self._held)
        sent_at = time.monotonic()
        renewed = False
        try:
            # Bounded, never past the first run's trust: a database that does not answer (a partition drops
            # the request) must not keep this loop from killing that run's executor before its lease lapses.
            async with asyncio.timeout(self._until_trust_ends()):
                lost = await job_runs.renew_run_leases(self._db, self._claimant, run_ids)
            renewed = True
            self._health.succeeded()
        except (PyMongoError, TimeoutError) as error:
            self._health.failed(error)
            now = time.monotonic()
            lost = {run_id for run_id in run_ids if run_id in self._held and not self._held[run_id].lease_trusted(now)}
        for run_id in run_ids:
            run = self._held.get(run_id)
            if run is None:
                continue
            if run_id in lost and not run.recording:
                run.lose()
            elif renewed and run_id not in lost:
                run.renewed(sent_at)


async def lapsed_runs(db: Database) -> list[Document]:
    """The running runs whose lease lapsed on the server's clock: their claimer is gone (the leader fails
    them as `worker lost`)."""
    server_now: datetime = await job_runs.server_time(db)
    return await job_runs.runs_with_lapsed_lease(db, server_now)
