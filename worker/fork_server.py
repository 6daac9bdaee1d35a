"""The worker's side of the warm executor (`executor/fork_server.py`): start the fork server, ask it for
a child per run, and collect that child's pid, output and exit status.

A server that dies is started again and the run it was starting is asked for again; after
START_ATTEMPTS failed servers in a row the run is spawned cold, so a broken fork server costs speed,
never a run. Children already running outlive their server: their output pipes belong to the worker and
each writes its exit code to a status pipe, which is read when the server can no longer report it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncjobs.shared import executor_protocol as protocol
from syncjobs.shared.logging import get_logger
from syncjobs.shared.process import die_with_this_process

log = get_logger(__name__)

SERVER_MODULE = "syncjobs.executor.fork_server"
START_ATTEMPTS = 3
READY_TIMEOUT_SECONDS = 60.0
STDERR_TAIL_BYTES = 4096  # of an executor's stderr: a run's, or a host's own between runs
READ_CHUNK_BYTES = 65536

_lifeline: int | None = None


class ForkServerLost(Exception):
    """The fork server died or refused: the request is retried on a new server."""


def lifeline_fd() -> int:
    """The read end of a pipe whose write end only this process holds, for its whole life: when the
    worker dies, however it dies, the fork server's children read end of file and kill their group."""
    global _lifeline
    if _lifeline is None:
        _lifeline, _ = os.pipe()  # the write end is never closed and never inherited (O_CLOEXEC)
    return _lifeline


async def pipe_reader(fd: int, limit: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


async def read_tail(stream: asyncio.StreamReader | None, tail: bytearray) -> None:
    """Read `stream` to its end (so its writer never blocks), keeping its last STDERR_TAIL_BYTES in `tail`."""
    assert stream is not None
    while chunk := await stream.read(READ_CHUNK_BYTES):
        tail += chunk[-STDERR_TAIL_BYTES:]
        del tail[:-STDERR_TAIL_BYTES]


async def pipe_writer(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop=loop), os.fdopen(fd, "wb", 0)
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)


@dataclass
class RunPipes:
    """The four descriptors a child or a host gets for a run (its go descriptor or run channel, stdout,
    stderr, status) and our ends of them."""

    theirs: list[int]
    ours: list[int]

    @classmethod
    def open(cls, go: tuple[int, int]) -> RunPipes:
        """`go`: (their end, ours) of the go descriptor or the run channel."""
        (out_read, out_write), (err_read, err_write), (status_read, status_write) = os.pipe(), os.pipe(), os.pipe()
        return cls([go[0], out_write, err_write, status_write], [go[1], out_read, err_read, status_read])

    async def send(self, control: socket.socket, message: bytes) -> None:
        """Their ends, with `message`, over `control` (then closed here: the receiver holds copies); on
        an OSError ours are closed too."""
        try:
            await send_with_fds(control, message, self.theirs)
        except OSError:
            _close_all(self.ours)
            raise
        finally:
            _close_all(self.theirs)


async def send_with_fds(control: socket.socket, message: bytes, fds: list[int]) -> None:
    """One SOCK_SEQPACKET message carrying `fds`, on a non-blocking socket, waiting while it is full."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            socket.send_fds(control, [message], fds)
            return
        except BlockingIOError:
            writable = loop.create_future()
            loop.add_writer(control.fileno(), writable.set_result, None)
            try:
                await writable
            finally:
                loop.remove_writer(control.fileno())


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _socket_go() -> tuple[int, int]:
    """A host's go descriptor is a socket: after the go byte, the runs come over it."""
    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return theirs.detach(), ours.detach()


class WarmProcess:
    """A child of the fork server, with the face of `asyncio.subprocess.Process` that the worker uses."""

    def __init__(
        self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader, exit_status: asyncio.Future[int]
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.stdin: asyncio.StreamWriter | None = None  # the run channel, when the run has one
        self.returncode: int | None = None
        self._exit_status = exit_status
        self._status_fd: int | None = None
        self._done = asyncio.Event()

    async def wait(self) -> int | None:
        if not self._done.is_set():
            try:
                self.returncode = await asyncio.shield(self._exit_status)
            except ForkServerLost:  # the child goes on: its own status pipe closes when it ends
                self.returncode = await self._status_from_pipe()
            self._close_status()
            self._done.set()
        return self.returncode

    async def _status_from_pipe(self) -> int | None:
        fd, self._status_fd = self._status_fd, None
        if fd is None:
            return None
        written = await (await pipe_reader(fd, protocol.MAX_FORK_REPLY_BYTES)).read()
        try:
            return int(written)
        except ValueError:  # killed by a signal: the status is lost with the server that would have reaped it
            return None

    def _close_status(self) -> None:
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None


class ForkServer:
    """One fork server per worker, started on first use and again whenever it dies."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        # A fresh interpreter with the executor's allowlisted environment: it never holds a control secret.
        self._env = protocol.executor_environment(os.environ if env is None else env)
        self._process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._starting = asyncio.Lock()
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[tuple[int, asyncio.Future[int]]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[None] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._control is not None else None

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], *, stdout_limit: int, stdin: bool = False
    ) -> WarmProcess:
        """What `python -P -m syncjobs.executor ARGS` would be, forked warm; `argv` is that command line.
        With `stdin`, the child's stdin is a pipe the returned process writes to (the run channel)."""
        if list(argv[: len(protocol.EXECUTOR_COMMAND)]) != list(protocol.EXECUTOR_COMMAND):
            raise ValueError(f"the fork server runs {' '.join(protocol.EXECUTOR_COMMAND)} only, not {argv}")
        args = list(argv[len(protocol.EXECUTOR_COMMAND) :])
        process, go = await self._spawn(args, env, stdout_limit, os.pipe)
        if stdin:
            process.stdin = await pipe_writer(go)
        else:
            os.close(go)
        return process

    async def spawn_host(self, workspace: str, env: Mapping[str, str]) -> tuple[WarmProcess, socket.socket]:
        """A workspace's executor host (`executor/host.py`), and our end of the socket it takes runs on."""
        process, go = await self._spawn([protocol.HOST_FLAG, workspace], env, protocol.MAX_FORK_REPLY_BYTES, _socket_go)
        return process, socket.socket(fileno=go)

    async def _spawn(
        self, args: list[str], env: Mapping[str, str], stdout_limit: int, make_go: Callable[[], tuple[int, int]]
    ) -> tuple[WarmProcess, int]:
        """The child and our end of its go descriptor (`make_go`: its end, ours), which carried the go byte."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self.start()
                return await self._spawn_once(args, env, stdout_limit, make_go())
            except ForkServerLost as lost:
                log.warning("fork_server_lost", attempt=attempt, error=str(lost))
                await self._discard()
        raise ForkServerLost(f"no fork server could start the executor in {START_ATTEMPTS} attempts")

    async def start(self) -> None:
        """Start the server unless it runs; return once its imports are done."""
        async with self._starting:
            if self._control is not None:
                return
            loop = asyncio.get_running_loop()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            lifeline = lifeline_fd()
            try:
                self._process = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-P", "-m", SERVER_MODULE),
                    *("--control-fd", str(theirs.fileno()), "--lifeline-fd", str(lifeline)),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    env=self._env,
                    pass_fds=(theirs.fileno(), lifeline),
                    start_new_session=True,
                    preexec_fn=die_with_this_process(),
                )
            except OSError as exc:
                ours.close()
                raise ForkServerLost(f"cannot start the fork server: {exc}") from None
            finally:
                theirs.close()
            ours.setblocking(False)
            self._control = ours
            self._ready = loop.create_future()
            loop.add_reader(ours.fileno(), self._on_message, ours)
            self.starts += 1
            try:
                await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT_SECONDS)
            except TimeoutError:
                self._lost("the fork server did not become ready")
                raise ForkServerLost("the fork server did not become ready") from None
            log.info("fork_server_started", pid=self._process.pid)

    async def warm_up(self) -> None:
        """Start the server ahead of the first run (a failure here is retried by that run)."""
        try:
            await self.start()
        except ForkServerLost as lost:
            log.warning("fork_server_not_started", error=str(lost))

    async def close(self) -> None:
        """Stop the server (children still running go on until they end or the worker dies)."""
        process = self._process
        self._lost("the fork server was closed")
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def _spawn_once(
        self, args: list[str], env: Mapping[str, str], stdout_limit: int, go: tuple[int, int]
    ) -> tuple[WarmProcess, int]:
        control = self._control
        if control is None:
            _close_all(list(go))
            raise ForkServerLost("the fork server is not running")
        request_id = next(self._ids)
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        pipes = RunPipes.open(go)
        ours = pipes.ours
        go_write, out_read, err_read, status_read = ours
        message = json.dumps({protocol.KEY_ID: request_id, protocol.KEY_ARGS: args, protocol.KEY_ENV: dict(env)})
        try:
            await pipes.send(control, message.encode())
        except OSError as exc:
            raise ForkServerLost(f"cannot reach the fork server: {exc}") from None
        try:
            pid, exit_status = await reply
        except BaseException:  # lost or cancelled: a child forked but never told reads end of file on `go`
            _close_all(ours)
            raise
        finally:
            self._replies.pop(request_id, None)
        os.write(go_write, b"1")  # then the go descriptor is the child's stdin
        process = WarmProcess(
            pid,
            await pipe_reader(out_read, stdout_limit),
            await pipe_reader(err_read, 1 << 16),
            exit_status,
        )
        process._status_fd = status_read
        return process, go_write

    def _on_message(self, control: socket.socket) -> None:
        try:
            data = control.recv(protocol.MAX_FORK_REPLY_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("the fork server died")
            return
        message: dict[str, Any] = json.loads(data)
        if message.get(protocol.KEY_READY) and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif protocol.KEY_RETURNCODE in message:
            exit_status = self._exits.pop(message[protocol.KEY_PID], None)
            if exit_status is not None and not exit_status.done():
                exit_status.set_result(int(message[protocol.KEY_RETURNCODE]))
        elif (reply := self._replies.get(message.get(protocol.KEY_ID, -1))) is not None and not reply.done():
            if protocol.KEY_PID in message:
                exit_status = asyncio.get_running_loop().create_future()
                self._exits[message[protocol.KEY_PID]] = exit_status
                reply.set_result((int(message[protocol.KEY_PID]), exit_status))
            else:
                reply.set_exception(ForkServerLost(f"the fork server refused: {message.get(protocol.KEY_ERROR)}"))

    def _lost(self, reason: str) -> None:
        """Fail every wait on this server: spawns are retried, running children are read from their pipes."""
        control, self._control = self._control, None
        if control is not None:
            asyncio.get_running_loop().remove_reader(control.fileno())
            control.close()
        for future in [*self._replies.values(), *self._exits.values(), self._ready]:
            if future is not None and not future.done():
                future.set_exception(ForkServerLost(reason))
                future.exception()  # retrieved: a child nobody waits on any more must not warn
        self._exits.clear()

    async def _discard(self) -> None:
        process, self._process = self._process, None
        self._lost("the fork server was discarded")
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
