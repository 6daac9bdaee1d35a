"""The worker's side of the workspace executor hosts (`executor/host.py`, `SYNCJOBS_EXECUTOR_HOST=workspace`):
per workspace, the hosts this worker started that are idle; a run takes one (or has the fork server start
one), and gives it back when it ended on its own.

A host serves one run at a time, so a workspace has as many hosts as it has runs going here at once (up
to the worker's slots). A run that is cancelled or times out kills its host's group, as it killed a run's
own process; a host that died, retired or was killed is never handed another run. An idle host is closed
after IDLE_SECONDS (it exits when its socket closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from syncjobs.shared import executor_protocol as protocol
from syncjobs.shared.logging import get_logger
from syncjobs.shared.secret_fields import scrub
from syncjobs.shared.waits import spawn
from syncjobs.worker.fork_server import (
    ForkServer,
    ForkServerLost,
    RunPipes,
    WarmProcess,
    pipe_reader,
    pipe_writer,
    read_tail,
)

log = get_logger(__name__)

IDLE_SECONDS = 60.0


@dataclass(eq=False)
class _Host:
    workspace: str
    process: WarmProcess
    requests: socket.socket
    drains: list[asyncio.Task[None]] = field(default_factory=list)
    stderr_tail: bytearray = field(default_factory=bytearray)  # its own, logged if it dies between runs
    secrets: set[str] = field(default_factory=set)  # of the runs it served: its own output must not echo them
    idle_timer: asyncio.TimerHandle | None = None
    usable: bool = True

    def close(self) -> None:
        """Close our end of its socket: it exits once it sees the end (after its run, if it has one)."""
        self.usable = False
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.requests.close()

    def kill(self) -> None:
        self.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class HostedRun:
    """One run in a host, with the face of a process that `run_executor` uses (`ExecutorProcess`): `pid` is
    the host's, `wait` reads the run's own status pipe, and `signal_group` signals the host only while the
    run is in it."""

    def __init__(
        self,
        hosts: ExecutorHosts,
        host: _Host,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        stdin: asyncio.StreamWriter,
        status: int,
    ) -> None:
        self._hosts = hosts
        self._host = host
        self.stdout = stdout
        self.stderr = stderr
        self.stdin: asyncio.StreamWriter | None = stdin
        self.returncode: int | None = None
        self._status = status
        self._ended = False  # the host reported the run's end: it is no longer the run's to signal
        self._signalled = False
        self._done = asyncio.Event()

    @property
    def pid(self) -> int:
        return self._host.process.pid

    async def wait(self) -> int | None:
        if not self._done.is_set():
            written = await (await pipe_reader(self._status, protocol.MAX_FORK_REPLY_BYTES)).read()
            status = protocol.parse_host_status(written)
            if status is None:  # the host died in the run (killed, out of memory): its own exit tells how
                self.returncode = await self._host.process.wait()
                self._hosts.discard(self._host)
            else:
                self.returncode, retire = status
                self._ended = True
                if retire or self._signalled:
                    self._hosts.discard(self._host)
                else:
                    self._hosts.release(self._host)
            self._done.set()
        return self.returncode

    def signal_group(self, signum: int) -> None:
        """Signal the host's group (timeout, cancel, the worker's stop): only while the run is in it."""
        if self._ended:
            return
        self._signalled = True
        self._hosts.discard(self._host)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._host.process.pid, signum)


class ExecutorHosts:
    """This worker's executor hosts, by workspace."""

    def __init__(self, fork_server: ForkServer, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._fork_server = fork_server
        self._idle_seconds = idle_seconds
        self._idle: dict[str, list[_Host]] = {}
        self._hosts: set[_Host] = set()
        self.started = 0  # hosts started, for tests and benches

    async def run(
        self,
        workspace: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout_limit: int,
        secrets: Iterable[str] = (),
    ) -> HostedRun:
        """Hand the run (`argv`: the default executor's command line) to an idle host of `workspace`, or to
        a new one; ForkServerLost when no host could take it (the caller forks it on its own instead).
        `secrets`: the run's clear secrets, scrubbed from what the host itself ever writes."""
        if list(argv[: len(protocol.EXECUTOR_COMMAND)]) != list(protocol.EXECUTOR_COMMAND):
            raise ValueError(f"an executor host runs {' '.join(protocol.EXECUTOR_COMMAND)} only, not {argv}")
        args = list(argv[len(protocol.EXECUTOR_COMMAND) :])
        for _ in range(2):  # an idle host that died meanwhile: once more, on a new one
            host = self._take_idle(workspace) or await self._start(workspace, env)
            host.secrets.update(secrets)
            try:
                return await self._hand(host, args, stdout_limit)
            except OSError as exc:
                log.warning("executor_host_lost", workspace=workspace, pid=host.process.pid, error=str(exc))
                self.discard(host)
        raise ForkServerLost(f"no executor host of workspace {workspace} took the run")

    def idle_pids(self, workspace: str) -> list[int]:
        """The pids of the workspace's idle hosts, the next to serve last."""
        return [host.process.pid for host in self._idle.get(workspace, [])]

    def is_idle(self, host: _Host) -> bool:
        return host in self._idle.get(host.workspace, [])

    def release(self, host: _Host) -> None:
        """A host whose run ended on its own: idle again, closed after IDLE_SECONDS without a run."""
        if not host.usable:
            return
        self._idle.setdefault(host.workspace, []).append(host)
        host.idle_timer = asyncio.get_running_loop().call_later(self._idle_seconds, self._expire, host)

    def discard(self, host: _Host) -> None:
        """A host that will serve no other run (retired, dead or being killed)."""
        host.close()
        idle = self._idle.get(host.workspace, [])
        if host in idle:
            idle.remove(host)
        self._hosts.discard(host)

    def close(self) -> None:
        """Close every host's socket: idle ones exit; one still running a run exits after it."""
        for host in list(self._hosts):
            self.discard(host)

    def _take_idle(self, workspace: str) -> _Host | None:
        idle = self._idle.get(workspace)
        while idle:
            host = idle.pop()  # the most recently used: its clients are the freshest
            if host.idle_timer is not None:
                host.idle_timer.cancel()
                host.idle_timer = None
            if host.usable and host.process.returncode is None:
                return host
            self.discard(host)
        return None

    def _expire(self, host: _Host) -> None:
        if host in self._idle.get(host.workspace, []):
            log.debug("executor_host_idle", workspace=host.workspace, pid=host.process.pid)
            self.discard(host)

    async def _start(self, workspace: str, env: Mapping[str, str]) -> _Host:
        process, requests = await self._fork_server.spawn_host(workspace, env)
        requests.setblocking(False)
        host = _Host(workspace, process, requests)
        # Between runs a host writes little (its own errors); its output is read so that it never blocks,
        # and the tail of its stderr kept for a host that dies between runs (a run's output is the run's).
        stderr_read = spawn(read_tail(process.stderr, host.stderr_tail), f"executor host {process.pid} stderr")
        host.drains = [
            spawn(_drain(process.stdout), f"executor host {process.pid} stdout"),
            stderr_read,
            spawn(_reap(self, host, stderr_read), f"executor host {process.pid} exit"),
        ]
        self._hosts.add(host)
        self.started += 1
        log.debug("executor_host_started", workspace=workspace, pid=process.pid)
        return host

    async def _hand(self, host: _Host, args: list[str], stdout_limit: int) -> HostedRun:
        pipes = RunPipes.open(os.pipe())
        channel_write, out_read, err_read, status_read = pipes.ours
        await pipes.send(host.requests, json.dumps({protocol.KEY_ID: 0, protocol.KEY_ARGS: args}).encode())
        return HostedRun(
            self,
            host,
            await pipe_reader(out_read, stdout_limit),
            await pipe_reader(err_read, 1 << 16),
            await pipe_writer(channel_write),
            status_read,
        )


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass


async def _reap(hosts: ExecutorHosts, host: _Host, stderr_read: asyncio.Task[None]) -> None:
    """A host that ended (retired, idle, killed, crashed) is never handed a run again. One that died while
    idle, unasked, is logged with the tail of its stderr: no run's outcome tells of it."""
    code = None
    with contextlib.suppress(ForkServerLost):
        code = await host.process.wait()
    died_idle = host.usable and hosts.is_idle(host)
    hosts.discard(host)
    if died_idle and code != 0:
        with contextlib.suppress(TimeoutError):  # its stderr ends with it (unless a child still holds it)
            await asyncio.wait_for(asyncio.shield(stderr_read), 1.0)
        tail = scrubbed_tail(host.stderr_tail, host.secrets)
        log.warning("executor_host_died", workspace=host.workspace, pid=host.process.pid, code=code, stderr=tail)


def scrubbed_tail(tail: bytes | bytearray, secrets: Iterable[str]) -> str:
    """A host's own stderr as the worker may log it: without any secret of the runs it served."""
    return scrub(tail.decode(errors="replace").strip(), sorted(set(secrets), key=len, reverse=True))
