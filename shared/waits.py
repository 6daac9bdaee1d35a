"""Waiting for the first of several things, and naming every task, in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

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
