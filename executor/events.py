"""Newline-delimited JSON events on stdout: what the worker reads back from an executor."""

from __future__ import annotations

import json
import sys
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


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
