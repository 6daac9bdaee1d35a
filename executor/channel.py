"""The executor's side of the run channel (`shared.executor_protocol`): its spec and what it needs of the
control database, asked of its parent over its own stdin and stdout; the executor holds no control client."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

from bson import ObjectId
from syncjobs.executor.events import EventWriter
from syncjobs.shared.executor_protocol import (
    MAX_CHANNEL_LINE_BYTES,
    MAX_EVENT_LINE_BYTES,
    OP_CURSOR_LOAD,
    OP_CURSOR_SAVE,
    OP_PROGRESS,
    ChannelError,
    ask_line,
    loads,
)
from syncjobs.shared.run_spec import RunSpec


class WorkerChannel:
    """A `RunControl` whose every call is one request line on stdout and one reply line on stdin."""

    def __init__(
        self, replies: asyncio.StreamReader, events: EventWriter, transport: asyncio.BaseTransport | None = None
    ) -> None:
        self._replies = replies
        self._events = events
        self._transport = transport
        self._ids = 0
        self._one_at_a_time = asyncio.Lock()

    @classmethod
    async def open(cls, events: EventWriter, fd: int = 0) -> WorkerChannel:
        """The channel on `fd` (stdin; an executor host's run: the descriptor the worker handed it)."""
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise ChannelError("stdin is not the run channel (a pipe from the executor's parent)")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_CHANNEL_LINE_BYTES, loop=loop)
        pipe = os.fdopen(os.dup(fd), "rb", 0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
        return cls(reader, events, transport)

    def close(self) -> None:
        """Stop reading the channel (an executor host's run ended; a process that exits needs not)."""
        if self._transport is not None:
            pipe = self._transport.get_extra_info("pipe")
            self._transport.close()
            if pipe is not None:  # the transport closes it on the loop's next turn: now, before the run's end is told
                pipe.close()

    async def read_spec(self, run_id: ObjectId) -> RunSpec:
        """The first line: this run's spec, its connection settings opened by the parent."""
        return RunSpec.from_line(await self._line(), run_id)

    async def load_cursor(self, entity: str) -> Any | None:
        return await self._ask(OP_CURSOR_LOAD, entity=entity)

    async def save_cursor(self, entity: str, cursor: Any) -> None:
        await self._ask(OP_CURSOR_SAVE, entity=entity, cursor=cursor)

    async def record_progress(self, progress: dict[str, Any]) -> None:
        await self._ask(OP_PROGRESS, progress=progress)

    async def _ask(self, op: str, **fields: Any) -> Any:
        async with self._one_at_a_time:
            self._ids += 1
            line = ask_line(self._ids, op, **fields)
            if len(line) > MAX_EVENT_LINE_BYTES:  # the parent would drop it and never answer
                raise ChannelError(f"{op}: a request of {len(line)} bytes is over {MAX_EVENT_LINE_BYTES}")
            self._events.send(line)
            reply = loads(await self._line())
            if not isinstance(reply, dict) or reply.get("id") != self._ids:
                raise ChannelError(f"the reply to request {self._ids} ({op}) is not its reply")
            if reply.get("ok") is not True:
                raise ChannelError(f"{op}: {reply.get('error')}")
            return reply.get("value")

    async def _line(self) -> bytes:
        try:
            line = await self._replies.readline()
        except ValueError as exc:  # over the limit
            raise ChannelError(f"a line on the run channel is too long: {exc}") from None
        if not line:
            raise ChannelError("the executor's parent closed the run channel")
        return line
