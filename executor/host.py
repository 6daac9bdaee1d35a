"""A workspace's executor host (`SYNCJOBS_EXECUTOR_HOST=workspace`): one long-lived executor process that
serves one workspace's runs, one at a time, keeping its database clients from run to run.

A run in a process of its own pays for that process and for a new client's connections and handshakes,
most of a short run's CPU (issue 22, docs/DECISIONS.md). A host pays them once. The fork server forks it
as it forks a run's executor, and it is what that child is: the allowlisted environment and no control
secret, non-dumpable, killed with its group when the worker dies. Its stdin is a socket over which the
worker hands it one run at a time (`shared.executor_protocol`): the run's channel, stdout, stderr and
status pipe. For the run's length the host's stdout and stderr are the run's (a run's events, logs and
tap output are its own); then it writes the run's exit code to the status pipe, `retire` beside it when
it will serve no other run, and closes the run's descriptors.

What keeps runs apart: a host serves one workspace (a run of another is refused) and one run at a time,
so a run's cancel or timeout kills the host's group as it killed a run's process, taking no other run
with it. Its clients are kept per URI (the same credentials of the same workspace) with the host's
control fence; each run pings and judges them again before it moves data. It retires past
MAX_RUNS_PER_HOST runs, past MEMORY_MARK of its address-space limit, after a run that ran out of memory
or crashed, after a tripped control fence, and after a refused run of another workspace.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from syncjobs.executor.channel import WorkerChannel
from syncjobs.executor.cli import (
    bad_invocation,
    build_parser,
    crashed,
    failed,
    out_of_memory,
    prepare_executor_process,
)
from syncjobs.executor.events import CpuSteps, EventWriter
from syncjobs.executor.guard import ControlFence, remove_pem_files
from syncjobs.executor.run import RunClients, execute_run
from syncjobs.shared.connection_rules import ConnectionRules
from syncjobs.shared.egress import ConnectGuard, guarded_loop_factory
from syncjobs.shared.executor_protocol import (
    EXIT_FAILED,
    EXIT_USAGE,
    HOST_FDS_PER_RUN,
    MAX_FORK_REQUEST_BYTES,
    ChannelError,
    host_status,
)
from syncjobs.shared.logging import configure_logging, get_logger
from syncjobs.shared.run_spec import RunSpecError
from syncjobs.shared.settings import Settings, SettingsError

log = get_logger(__name__)

MAX_RUNS_PER_HOST = 500
MEMORY_MARK = 0.75  # of SYNCJOBS_EXECUTOR_MEMORY_MB: past it after a run, the host retires


@dataclass
class Served:
    """How one run ended in the host: its exit code, and whether the host serves no run after it."""

    code: int
    retire: bool = False


def serve_workspace(args: list[str]) -> int:
    """`--host WORKSPACE`: serve that workspace's runs from the socket on stdin until the worker closes it."""
    if len(args) != 1 or not ObjectId.is_valid(args[0]):
        configure_logging()
        log.error("executor_host_bad_invocation", args=args)
        return EXIT_USAGE
    requests = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # a run's channel is its own descriptor; nothing reads stdin
    try:
        settings, guard = prepare_executor_process()
    except SettingsError as exc:
        configure_logging()
        log.error("executor_host_bad_settings", error=str(exc))
        return EXIT_USAGE
    host = Host(args[0], settings, guard, requests, null)
    try:
        with asyncio.Runner(loop_factory=guarded_loop_factory(guard)) as runner:
            return runner.run(host.serve())
    finally:
        remove_pem_files()


class Host:
    def __init__(
        self, workspace: str, settings: Settings, guard: ConnectGuard, requests: socket.socket, null: int
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.guard = guard
        self.requests = requests
        self.runs = 0
        self._null = null
        self._own_stdout = os.dup(1)
        self._own_stderr = os.dup(2)
        self._clients: RunClients | None = None
        self._rules: ConnectionRules | None = None

    async def serve(self) -> int:
        self.requests.setblocking(False)
        try:
            while (request := await self._next_request()) is not None:
                served = await self._serve_one(*request)
                if served.retire:
                    return 0
            return 0  # the worker closed our socket: idle, or stopping
        finally:
            if self._clients is not None:
                await self._clients.close()

    async def _next_request(self) -> tuple[dict[str, Any], list[int]] | None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.requests, MAX_FORK_REQUEST_BYTES, HOST_FDS_PER_RUN)
            except BlockingIOError:
                readable = loop.create_future()
                loop.add_reader(self.requests.fileno(), readable.set_result, None)
                try:
                    await readable
                finally:
                    loop.remove_reader(self.requests.fileno())
                continue
            except OSError:
                return None
            if not data:
                return None
            if len(fds) != HOST_FDS_PER_RUN:
                for fd in fds:
                    os.close(fd)
                log.error("executor_host_bad_request", descriptors=len(fds))
                continue
            return json.loads(data), fds

    async def _serve_one(self, request: dict[str, Any], fds: list[int]) -> Served:
        """The run on its own descriptors: stdout and stderr are the run's until it ends."""
        channel, stdout, stderr, status = fds
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.close(stdout)
        os.close(stderr)
        served = Served(EXIT_FAILED, retire=True)
        try:
            served = await self._run(request.get("args"), channel)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self._own_stdout, 1)  # the run's pipes close with their last copies: its reader sees the end
            os.dup2(self._own_stderr, 2)
            os.close(channel)
            self.runs += 1
            served.retire = served.retire or self.runs >= MAX_RUNS_PER_HOST or self._past_memory_mark()
            try:
                os.write(status, host_status(served.code, retire=served.retire))
            except OSError:
                served.retire = True  # the worker gave up on the run: it will not hand us another
            os.close(status)
        return served

    async def _run(self, args: Any, channel_fd: int) -> Served:
        cpu = CpuSteps()
        events = EventWriter()
        try:
            parsed = build_parser().parse_args(args if isinstance(args, list) else [])
        except SystemExit:
            return Served(bad_invocation(events, f"not an executor command line: {args!r}"))
        if not ObjectId.is_valid(parsed.run_id) or parsed.batch_size < 1:
            return Served(bad_invocation(events, "--run-id must be an ObjectId and --batch-size >= 1"))
        channel = None
        try:
            channel = await WorkerChannel.open(events, channel_fd)
            spec = await channel.read_spec(ObjectId(parsed.run_id))
            if spec.job.workspace_id != self.workspace:
                error = f"this executor host serves workspace {self.workspace}, not {spec.job.workspace_id}"
                return Served(bad_invocation(events, error), retire=True)  # it holds another's secrets now
            rules = ConnectionRules.from_settings(self.settings, spec.control_cluster(self.settings))
            clients = await self._clients_for(rules)
            cpu.step("spec")
            code = await execute_run(
                channel,
                spec,
                rules=rules,
                guard=self.guard,
                dry_run=parsed.dry_run,
                batch_size=parsed.batch_size,
                events=events,
                cpu=cpu,
                clients=clients,
            )
            await clients.keep_recent()
            return Served(code, retire=clients.fence.refusal is not None)
        except (RunSpecError, ChannelError) as exc:
            return Served(bad_invocation(events, str(exc)))
        except MemoryError:
            log.error("run_out_of_memory", run_id=parsed.run_id, limit_mb=self.settings.executor_memory_mb)
            return Served(failed(events, out_of_memory(self.settings), dry_run=parsed.dry_run), retire=True)
        except Exception as exc:  # a bug: the run fails with it, and the host serves no other
            log.exception("executor_crashed", run_id=parsed.run_id)
            return Served(failed(events, crashed(exc), dry_run=parsed.dry_run), retire=True)
        finally:
            if channel is not None:
                channel.close()

    async def _clients_for(self, rules: ConnectionRules) -> RunClients:
        """The kept clients, judged by the host's one fence; a run naming another control cluster (its
        members changed) gets a new fence and new clients."""
        if self._clients is None or rules != self._rules:
            if self._clients is not None:
                await self._clients.close()
            self._clients = RunClients(ControlFence(rules), after_run="keep")
            self._rules = rules
        return self._clients

    def _past_memory_mark(self) -> bool:
        """The host's address space (what RLIMIT_AS counts) past MEMORY_MARK of the limit."""
        try:
            with open("/proc/self/statm") as statm:
                pages = int(statm.read().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return pages * os.sysconf("SC_PAGE_SIZE") > MEMORY_MARK * self.settings.executor_memory_mb * 1024 * 1024
