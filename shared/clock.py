"""Time as an injected dependency, and the one rule for BSON's millisecond precision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol


def to_ms(instant: datetime) -> datetime:
    """Truncate to whole milliseconds in UTC: what BSON stores, so a round trip compares equal."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: syncjobs only handles aware datetimes")
    instant = instant.astimezone(UTC)
    return instant.replace(microsecond=instant.microsecond - instant.microsecond % 1000)


def utc_now() -> datetime:
    return to_ms(datetime.now(UTC))


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware UTC."""
        ...

    async def sleep_until(self, deadline: datetime) -> None:
        """Return at or after `deadline` (or earlier if the caller cancels)."""
        ...


class SystemClock:
    """The wall clock, for production."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        delay = (deadline - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
