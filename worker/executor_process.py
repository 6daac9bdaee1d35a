"""One executor subprocess: spawned in its own process group, watched, killed as a group.

The executor prints NDJSON events on stdout (the last `result` event is the run's result) and human
logs on stderr (the last 4 KiB are kept for a failure). It dies with the worker (PR_SET_PDEATHSIG), so a
SIGKILLed leader leaves no orphan writing to a destination while the new leader marks its run lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncjobs.shared.models import RunStatus
from syncjobs.shared.process import die_with_this_process

STDERR_TAIL_BYTES = 4096
KILL_GRACE_SECONDS = 3.0
MAX_EVENT_LINE_BYTES = 16 * 1024 * 1024


def default_executor_command() -> tuple[str, ...]:
    return (sys.executable, "-P", "-m", "syncjobs.executor")


@dataclass
class ExecutionOutcome:
    """How one executor process ended, in the terms of a job_runs document."""

    status: RunStatus
    exit_code: int | None
    duration_ms: int
    error: str | None = None
    stats: dict[str, Any] | None = None
    details: list[Any] | None = None
    stderr_tail: str | None = None

    def run_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "exitCode": self.exit_code,
            "durationMs": self.duration_ms,
            "error": self.error,
            "stats": self.stats,
            "details": self.details,
        }
        if self.status != RunStatus.SUCCEEDED:
            fields["stderrTail"] = self.stderr_tail
        return fields


@dataclass
class _Output:
    result: dict[str, Any] | None = None
    stderr: bytearray = field(default_factory=bytearray)


async def run_executor(
    argv: Sequence[str], env: Mapping[str, str], timeout_seconds: float, cancel: asyncio.Event
) -> ExecutionOutcome:
    """Run the executor to its end, its timeout (timed_out) or `cancel` being set (cancelled)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
        preexec_fn=die_with_this_process(),
        limit=MAX_EVENT_LINE_BYTES,
    )
    output = _Output()
    readers = asyncio.gather(_read_events(process.stdout, output), _read_tail(process.stderr, output))
    exited = asyncio.ensure_future(process.wait())
    cancelled = asyncio.ensure_future(cancel.wait())
    try:
        done, _ = await asyncio.wait({exited, cancelled}, timeout=timeout_seconds, return_when="FIRST_COMPLETED")
        if exited in done:
            status = RunStatus.SUCCEEDED if process.returncode == 0 else RunStatus.FAILED
        elif cancelled in done:
            status = RunStatus.CANCELLED
        else:
            status = RunStatus.TIMED_OUT
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE_SECONDS)
    finally:
        cancelled.cancel()
        _signal_group(process.pid, signal.SIGKILL)  # the whole group, grandchildren included
        await exited
        with contextlib.suppress(Exception):
            await asyncio.wait_for(readers, KILL_GRACE_SECONDS)
    tail = bytes(output.stderr).decode("utf-8", "replace")
    result = output.result or {}
    error = None
    if status == RunStatus.TIMED_OUT:
        error = f"timed out after {timeout_seconds:g}s"
    elif status == RunStatus.CANCELLED:
        error = "cancelled"
    elif status == RunStatus.FAILED:
        error = result.get("error") or _last_line(tail) or f"exit code {process.returncode}"
    return ExecutionOutcome(
        status=status,
        exit_code=process.returncode,
        duration_ms=int((time.monotonic() - started) * 1000),
        error=error,
        stats=result.get("stats"),
        details=result.get("details"),
        stderr_tail=tail,
    )


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _read_events(stream: asyncio.StreamReader | None, output: _Output) -> None:
    assert stream is not None
    async for line in stream:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "result":
            output.result = event


async def _read_tail(stream: asyncio.StreamReader | None, output: _Output) -> None:
    assert stream is not None
    while chunk := await stream.read(65536):
        output.stderr += chunk
        del output.stderr[:-STDERR_TAIL_BYTES]


def _last_line(text: str) -> str | None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
