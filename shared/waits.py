"""Waiting for the first of several things, naming every task, and taking turns on the loop, in one place."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

# How long a pass over many items may hold the event loop before it hands it back once. The lease renews
# on the same loop: a leader deciding 1,000 jobs' fires in one synchronous stretch (croniter, ~1-3 ms a job
# for a rare cron) starved its renewals past the 3 s lease and lost its term in every burst.
TURN_SECONDS = 0.05

Waitable = asyncio.Future[Any] | Coroutine[Any, Any, Any]


def spawn(work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """A named task: a crash log and `asyncio.all_tasks()` say which loop it is."""
    return asyncio.create_task(work, name=name)


async def wait_any(*waits: Waitable, within: float | None = None) -> set[asyncio.Future[Any]]:
    """Until the first of `waits` is done (or `within` seconds); the ones done (empty on timeout).

    A coroutine given here is waited through a task of its own, cancelled on return: it is only a
    wake-up (an event, a sleep). A task or future given here is left as it is: its owner decides.
    """
    futures = [wait for wait in waits if isinstance(wait, asyncio.Future)]
    owned = [
        spawn(wait, f"wait_any:{getattr(wait, '__qualname__', 'wait')}")
        for wait in waits
        if not isinstance(wait, asyncio.Future)
    ]
    try:
        done, _ = await asyncio.wait([*futures, *owned], timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()
    return done


class Turns:
    """A long pass's share of the event loop: `take()` after each item hands the loop back once
    `turn_seconds` of work have passed since it last did, so a pass over many jobs (or a change stream's
    buffered batch) never holds up the lease's renewal or anything else waiting on the loop."""

    def __init__(self, turn_seconds: float = TURN_SECONDS) -> None:
        self._seconds = turn_seconds
        self._ends = time.monotonic() + turn_seconds

    async def take(self) -> None:
        if time.monotonic() >= self._ends:
            await asyncio.sleep(0)
            self._ends = time.monotonic() + self._seconds


async def taking_turns(items: Iterable[T], turn_seconds: float = TURN_SECONDS) -> AsyncIterator[T]:
    """Each of `items`, taking `Turns` between them."""
    turns = Turns(turn_seconds)
    for item in items:
        yield item
        await turns.take()
