"""The database's clock, read locally: fires are decided on the server's time, not on each replica's.

A replica whose clock runs 30 s ahead would otherwise fire every job 30 s early while it leads. The offset
is measured from `hello`'s `localTime`, each sample bracketed by its round trip (the server read its clock
about half-way through it), keeping the sample with the shortest round trip: its error is at most half
that round trip plus BSON's millisecond. The lease already runs on the server's clock (`$$NOW`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.errors import PyMongoError
from syncjobs.shared import metrics
from syncjobs.shared.clock import Clock
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import Database
from syncjobs.shared.store.job_runs import server_time

log = get_logger(__name__)

SAMPLES = 3
# Re-measured this often: clocks drift by parts per million, an NTP step moves one at once.
MEASURE_EVERY_SECONDS = 30.0
RETRY_SECONDS = 1.0
# Beyond this the replica's own clock is off by more than a fire's precision: logged at warning.
OFFSET_WARNING_SECONDS = 1.0


@dataclass(frozen=True)
class OffsetSample:
    """server time - local time, and the round trip that bounds its error."""

    offset: timedelta
    round_trip_seconds: float


async def sample_offset(db: Database, local: Clock) -> OffsetSample:
    sent = time.monotonic()
    server = await server_time(db)
    round_trip = time.monotonic() - sent
    offset = server + timedelta(seconds=round_trip / 2) - local.now()
    return OffsetSample(offset, round_trip)


class ServerClock:
    """The local clock plus the offset last measured to the database server's clock (a `Clock`)."""

    def __init__(self, local: Clock, db: Database) -> None:
        self.local = local
        self._db = db
        self.offset = timedelta(0)
        self.measured = False

    def now(self) -> datetime:
        server_now: datetime = self.local.now() + self.offset
        return server_now

    async def sleep_until(self, deadline: datetime) -> None:
        # The offset may be re-measured meanwhile: wake on the local clock, then check on the server's.
        while self.now() < deadline:
            await self.local.sleep_until(deadline - self.offset)

    async def measure(self) -> None:
        """Take SAMPLES samples and keep the one with the shortest round trip; PyMongoError if none lands."""
        best = min([await sample_offset(self._db, self.local) for _ in range(SAMPLES)], key=_round_trip)
        self.offset, self.measured = best.offset, True
        seconds = best.offset.total_seconds()
        metrics.clock_offset_seconds.set(seconds)
        if abs(seconds) > OFFSET_WARNING_SECONDS:
            log.warning(
                "clock_offset_large",
                offset_seconds=round(seconds, 3),
                round_trip_seconds=round(best.round_trip_seconds, 4),
                bound_seconds=OFFSET_WARNING_SECONDS,
            )

    async def keep_measuring(self) -> None:
        """Forever: re-measure every MEASURE_EVERY_SECONDS (every RETRY_SECONDS until one lands)."""
        while True:
            await asyncio.sleep(MEASURE_EVERY_SECONDS if self.measured else RETRY_SECONDS)
            with contextlib.suppress(PyMongoError):
                await self.measure()


def _round_trip(sample: OffsetSample) -> float:
    return sample.round_trip_seconds
