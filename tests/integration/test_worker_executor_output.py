"""An executor that floods stdout or stderr, never exits, or prints junk: the worker's memory stays
bounded (measured with tracemalloc over the reading side) and the run ends with a clear outcome."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta

import pytest
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings
from syncjobs.worker.executor_process import MAX_EVENT_LINE_BYTES, ExecutionOutcome, run_executor
from syncjobs.worker.fork_server import STDERR_TAIL_BYTES

from tests.fixtures.eventually import eventually
from tests.fixtures.worker_harness import ONCE_AT_T0_PLUS_5S, T0, leadership_harness
from tests.fixtures.worker_jobs import FAKE_EXECUTOR, make_job

pytestmark = pytest.mark.slow
FLOOD_MIB = 48
# What the worker may hold while FLOOD_MIB stream through: a line's bound, the pipe reader's buffer
# (twice its limit) and slack; a tenth or less of what was written.
MEMORY_BOUND_BYTES = 4 * MAX_EVENT_LINE_BYTES


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


async def _run(behaviour: str, timeout_seconds: float = 60) -> tuple[ExecutionOutcome, int]:
    """The outcome and the peak of memory allocated while the executor ran."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    argv = [*FAKE_EXECUTOR, "--behaviour", behaviour, "--run-id", "unused"]
    outcome = await run_executor(argv, dict(os.environ), timeout_seconds, asyncio.Event())
    return outcome, tracemalloc.get_traced_memory()[1] - before


async def test_a_line_of_tens_of_megabytes_on_stdout_is_dropped_and_the_result_still_read(traced: None) -> None:
    outcome, peak = await _run(f"flood:stdout:{FLOOD_MIB}")
    assert (outcome.status, outcome.stats, outcome.error) == ("succeeded", {"read": 1}, None)
    assert peak < MEMORY_BOUND_BYTES, f"{peak} bytes held while {FLOOD_MIB} MiB went by"


async def test_tens_of_megabytes_on_stderr_keep_only_a_tail(traced: None) -> None:
    outcome, peak = await _run(f"flood:stderr:{FLOOD_MIB}")
    assert outcome.status == "succeeded"
    assert outcome.stderr_tail is not None and len(outcome.stderr_tail) <= STDERR_TAIL_BYTES
    assert outcome.stderr_tail.endswith("last words on stderr\n")
    assert peak < MEMORY_BOUND_BYTES, f"{peak} bytes held while {FLOOD_MIB} MiB went by"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_an_executor_that_floods_and_never_exits_times_out(traced: None, stream: str) -> None:
    outcome, peak = await _run(f"flood-forever:{stream}", timeout_seconds=2)
    assert (outcome.status, outcome.error) == ("timed_out", "timed out after 2s")
    assert peak < MEMORY_BOUND_BYTES, f"{peak} bytes held by a flood on {stream}"


async def test_junk_on_stdout_fails_a_run_that_exits_0_with_a_clear_error() -> None:
    outcome = await run_executor([*FAKE_EXECUTOR, "--behaviour", "junk"], dict(os.environ), 60, asyncio.Event())
    assert (outcome.status, outcome.exit_code, outcome.stats) == ("failed", 0, None)
    assert outcome.error == (
        "the executor printed no result event and 5 line(s) that are not JSON events"
        f" and 0 line(s) over {MAX_EVENT_LINE_BYTES} bytes (dropped) on stdout"
    )


async def test_an_executor_that_prints_nothing_and_exits_0_succeeds() -> None:
    """`true` as the executor command (the benches use it): no output is not junk."""
    outcome = await run_executor(["true"], dict(os.environ), 60, asyncio.Event())
    assert (outcome.status, outcome.error) == ("succeeded", None)


async def test_a_run_whose_executor_prints_junk_is_stored_failed(db: Database, settings: Settings) -> None:
    async with leadership_harness(db, settings) as harness:
        job = await make_job(db, "junk", ONCE_AT_T0_PLUS_5S, T0)
        await harness.start()
        harness.clock.set(T0 + timedelta(seconds=5))
        run = await eventually(lambda: harness.run_with(job["_id"], status="failed"))
    assert run["exitCode"] == 0
    assert run["error"].startswith("the executor printed no result event and 5 line(s) that are not JSON events")
