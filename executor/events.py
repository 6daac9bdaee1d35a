"""Newline-delimited JSON events on stdout: what the worker reads back from an executor."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any, TextIO


class EventWriter:
    """One JSON object per line, flushed at once so a reader sees progress as it happens."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=_plain, separators=(",", ":"))
        self._stream.write(line + "\n")
        self._stream.flush()

    def send(self, line: bytes) -> None:
        """A line already encoded (a run channel request, in extended JSON)."""
        self._stream.write(line.decode())
        self._stream.flush()


class CpuSteps:
    """The process's own CPU (`time.process_time()`) spent in each named step of a run, in ms: the
    executor's per-run breakdown, logged at debug as `run_cpu` (what a burst pays per run, and where)."""

    def __init__(self) -> None:
        self._last = time.process_time()
        self.steps: dict[str, float] = {"start": round(self._last * 1000, 2)}  # before: the fork, or imports

    def step(self, name: str) -> None:
        now = time.process_time()
        self.steps[name] = round((now - self._last) * 1000, 2)
        self._last = now

    def total_ms(self) -> float:
        return round(time.process_time() * 1000, 2)


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
