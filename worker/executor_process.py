"""One executor subprocess: spawned in its own process group, watched, killed as a group.

The executor prints NDJSON events on stdout (the last `result` event is the run's result) and human
logs on stderr (the last 4 KiB are kept for a failure). Whatever it prints, the worker's memory stays
bounded: stdout is read in chunks, a line longer than MAX_EVENT_LINE_BYTES is dropped as it streams by
(never buffered whole), and only a tail of stderr is kept. Output that is not NDJSON fails a run that
has no `result` event. It dies with the worker (PR_SET_PDEATHSIG), so a
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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncjobs.shared.process import die_with_this_process

STDERR_TAIL_BYTES = 4096
KILL_GRACE_SECONDS = 3.0
MAX_EVENT_LINE_BYTES = 1024 * 1024  # an event line longer than this is dropped: no real event comes near
READ_CHUNK_BYTES = 65536


def default_executor_command() -> tuple[str, ...]:
    return (sys.executable, "-P", "-m", "syncjobs.executor")


@dataclass
class ExecutionOutcome:
    """How one executor process ended, in the terms of a job_runs document."""

    status: str
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
        if self.status != "succeeded":
            fields["stderrTail"] = self.stderr_tail
        return fields


@dataclass
class _Output:
    result: dict[str, Any] | None = None
    stderr: bytearray = field(default_factory=bytearray)
    events: int = 0  # lines that parsed as a JSON object
    malformed: int = 0  # lines that did not
    overlong: int = 0  # lines dropped for their length

    def junk_error(self) -> str | None:
        """Why stdout does not count as the executor's events, when it had no result event."""
        if self.result is not None or not (self.malformed or self.overlong):
            return None
        return (
            f"the executor printed no result event and {self.malformed} line(s) that are not JSON events"
            f" and {self.overlong} line(s) over {MAX_EVENT_LINE_BYTES} bytes (dropped) on stdout"
        )


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
            status = "succeeded" if process.returncode == 0 else "failed"
        elif cancelled in done:
            status = "cancelled"
        else:
            status = "timed_out"
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
    if status == "timed_out":
        error = f"timed out after {timeout_seconds:g}s"
    elif status == "cancelled":
        error = "cancelled"
    elif status == "failed":
        error = result.get("error") or output.junk_error() or _last_line(tail) or f"exit code {process.returncode}"
    elif output.junk_error() is not None:
        status, error = "failed", output.junk_error()
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
    """Parse stdout line by line, holding at most MAX_EVENT_LINE_BYTES + one chunk at any time."""
    assert stream is not None
    async for line in bounded_lines(stream, MAX_EVENT_LINE_BYTES, output):
        _parse_event(line, output)


async def bounded_lines(stream: asyncio.StreamReader, max_bytes: int, output: _Output) -> AsyncIterator[bytes]:
    """The stream's lines (a last one without newline included); longer ones are counted and skipped."""
    pending = bytearray()
    dropping = False  # inside a line already known to be too long: skip up to its newline
    while chunk := await stream.read(READ_CHUNK_BYTES):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if not dropping:
                pending += chunk[start:end]
                if len(pending) <= max_bytes:
                    yield bytes(pending)
                else:
                    output.overlong += 1
            dropping = False
            pending.clear()
            start = end + 1
        if not dropping:
            pending += chunk[start:]
            if len(pending) > max_bytes:
                output.overlong += 1
                dropping = True
                pending.clear()
    if pending and not dropping:
        yield bytes(pending)


def _parse_event(line: bytes, output: _Output) -> None:
    if not line.strip():
        return
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: `[[[[...` nested past the parser's depth
        event = None
    if not isinstance(event, dict) or (event.get("event") == "result" and not _is_result(event)):
        output.malformed += 1
        return
    output.events += 1
    if event.get("event") == "result":
        output.result = event


def _is_result(event: dict[str, Any]) -> bool:
    """A result event whose fields have the types a job_runs document stores."""
    return (
        isinstance(event.get("stats"), dict | None)
        and isinstance(event.get("details"), list | None)
        and isinstance(event.get("error"), str | None)
    )


async def _read_tail(stream: asyncio.StreamReader | None, output: _Output) -> None:
    assert stream is not None
    while chunk := await stream.read(READ_CHUNK_BYTES):
        output.stderr += chunk[-STDERR_TAIL_BYTES:]
        del output.stderr[:-STDERR_TAIL_BYTES]


def _last_line(text: str) -> str | None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
