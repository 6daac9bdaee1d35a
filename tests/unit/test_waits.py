"""A long pass over many items hands the event loop back: the lease renews on the same loop."""

from __future__ import annotations

import asyncio

from syncjobs.shared.waits import taking_turns


async def _pass_with_a_task_waiting(turn_seconds: float) -> list[int]:
    """The items seen when a task started before the pass got its turn."""
    seen: list[int] = []
    ran_after: list[int] = []

    async def waiting() -> None:
        ran_after.append(len(seen))

    task = asyncio.create_task(waiting())
    async for item in taking_turns(range(5), turn_seconds=turn_seconds):
        seen.append(item)
    await task
    return ran_after


async def test_a_pass_whose_turn_is_up_lets_a_waiting_task_run_before_it_goes_on() -> None:
    assert await _pass_with_a_task_waiting(turn_seconds=0) == [1]


async def test_a_pass_within_its_turn_keeps_the_loop() -> None:
    assert await _pass_with_a_task_waiting(turn_seconds=60) == [5]
