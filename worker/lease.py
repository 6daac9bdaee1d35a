"""The scheduler lease: one active worker, a fencing token per leadership term.

The lease document lives in `worker_locks` (`shared/store/worker_locks.py`: one atomic take-or-renew on the
server's clock). Locally the holder trusts its lease only until (send time of the last successful renewal +
TTL - a margin: `run_leases.trusted_seconds`, as for a run's lease), on the monotonic clock: the server set
lockedUntil after we sent, so the real lease lasts at least that long.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pymongo
from pymongo.errors import PyMongoError
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import worker_locks
from syncjobs.worker.run_leases import trusted_seconds

log = get_logger(__name__)


@dataclass(frozen=True)
class LeaseState:
    """A held lease: the token to fence writes with and until when (monotonic) we may act on it."""

    fencing_token: int
    valid_until: float


class Lease:
    """Acquire, renew and release the scheduler lease for one owner."""

    def __init__(self, db: Database, owner: str, ttl_seconds: float, lease_id: str = worker_locks.LEASE_ID) -> None:
        self._db = db
        self.owner = owner
        self.instance = uuid.uuid4().hex
        self.ttl_seconds = ttl_seconds
        self.lease_id = lease_id
        self.state: LeaseState | None = None

    @property
    def renew_interval(self) -> float:
        return self.ttl_seconds / 3

    def is_held(self) -> bool:
        return self.state is not None and time.monotonic() < self.state.valid_until

    def within_term(self) -> AbstractContextManager[None]:
        """Database calls inside give up when the lease's trust ends: none is sent, or retried by the
        driver, under a token that may already be a past term's."""
        remaining = self.state.valid_until - time.monotonic() if self.state else 0.0
        return pymongo.timeout(max(remaining, 0.001))  # timeout(0) would mean no limit

    @property
    def fencing_token(self) -> int:
        if self.state is None:
            raise RuntimeError("lease not held")
        return self.state.fencing_token

    async def acquire(self) -> bool:
        """Take the lease if it lapsed, or renew it if ours; False when another owner holds it."""
        sent_at = time.monotonic()
        doc = await worker_locks.take_or_renew(
            self._db, self.lease_id, owner=self.owner, instance=self.instance, ttl_seconds=self.ttl_seconds
        )
        if doc is None:
            self.state = None
            return False
        self.state = LeaseState(
            fencing_token=int(doc["fencingToken"]), valid_until=sent_at + trusted_seconds(self.ttl_seconds)
        )
        return True

    async def hold(self) -> None:
        """Renew every TTL/3 and return when the lease is lost: taken by another owner, or no renewal
        could land before it would lapse. The caller must stop acting as leader at once."""
        next_renewal = time.monotonic() + self.renew_interval
        failing = False
        while True:
            valid_until = self.state.valid_until if self.state else 0.0
            await asyncio.sleep(max(0.0, min(next_renewal, valid_until) - time.monotonic()))
            remaining = valid_until - time.monotonic()
            if remaining <= 0:
                log.warning("lease_lapsed", owner=self.owner)
                self.state = None
                return
            try:
                async with asyncio.timeout(remaining):
                    held = await self.acquire()
            except (PyMongoError, TimeoutError) as error:
                if not failing:
                    log.warning("lease_renewal_failed", owner=self.owner, error=str(error)[:200])
                failing = True
                next_renewal = time.monotonic() + min(1.0, self.renew_interval / 3)
                continue
            if not held:
                log.warning("lease_taken", owner=self.owner)
                return
            if failing:
                log.info("lease_renewed", owner=self.owner, fencing_token=self.fencing_token)
            failing = False
            next_renewal = time.monotonic() + self.renew_interval

    async def release(self) -> None:
        """Let a standby take over at once: lockedUntil = now, only if the lease is still ours."""
        self.state = None
        await worker_locks.release(self._db, self.lease_id, owner=self.owner, instance=self.instance)
