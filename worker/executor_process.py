"""One executor process: spawned in its own process group, watched, killed as a group.

The executor prints NDJSON events on stdout (the last `result` event is the run's result) and human
logs on stderr (the last 4 KiB are kept for a failure). Whatever it prints, the worker's memory stays
bounded: stdout is read in chunks, a line longer than MAX_EVENT_LINE_BYTES is dropped as it streams by
(never buffered whole), and only a tail of stderr is kept. Output that is not NDJSON fails a run that
has no `result` event. It dies with the worker, so a SIGKILLed worker leaves no orphan writing to a
destination while its run is marked lost. It is started cold (a new interpreter, PR_SET_PDEATHSIG, its
group killed by `group_keeper` when the worker dies), or, given a fork server, forked warm from it
(`worker/fork_server.py`), or handed to an executor host of the run's workspace
(`worker/executor_hosts.py`, SYNCJOBS_EXECUTOR_HOST=workspace).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from syncjobs.shared import metrics
from syncjobs.shared.connection_rules import ControlClusterCache
from syncjobs.shared.executor_protocol import (
    ASK,
    EXECUTOR_COMMAND,
    MAX_EVENT_LINE_BYTES,
    ChannelError,
    RunChannel,
    answer,
    executor_environment,
    is_result,
    loads,
)
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import RunStatus
from syncjobs.shared.process import die_with_this_process
from syncjobs.shared.secret_fields import scrub
from syncjobs.shared.settings import Settings
from syncjobs.shared.waits import spawn, wait_any
from syncjobs.worker.executor_hosts import ExecutorHosts, HostedRun
from syncjobs.worker.fairness import share_slots
from syncjobs.worker.fork_server import READ_CHUNK_BYTES, ForkServer, ForkServerLost, read_tail
from syncjobs.worker.group_keeper import cold_groups

log = get_logger(__name__)

KILL_GRACE_SECONDS = 3.0


class ExecutorProcess(Protocol):
    """What `run_executor` needs of a started executor, cold (asyncio's Process) or warm."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    @property
    def stderr(self) -> asyncio.StreamReader | None: ...
    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...
    async def wait(self) -> int | None: ...


@dataclass(frozen=True)
class ExecutorSpec:
    """How runs are executed: the executor's argv prefix and environment, how many run at once here, how
    many run at once per workspace across the cluster (None: unlimited), the fork server that starts
    them warm (None: a new process per run), and the control cluster to name in each run's spec (None:
    an operator's own executor command, which gets no run channel)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    max_concurrent_runs: int
    max_runs_per_workspace: int | None = None
    fork_server: ForkServer | None = None
    control: ControlClusterCache | None = None
    workspace_share: int | None = None  # slots one workspace may hold here while another waits
    hosts: ExecutorHosts | None = None  # SYNCJOBS_EXECUTOR_HOST=workspace: a workspace's runs go to its hosts

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        fork_server: ForkServer | None = None,
        control: ControlClusterCache | None = None,
        hosts: ExecutorHosts | None = None,
    ) -> ExecutorSpec:
        """The default executor gets the allowlisted environment only (no control URI, no keys, no admin
        token: its spec and control-database answers come over the run channel); `fork_server` and
        `control` are used only for it, the fork server only with SYNCJOBS_WARM_EXECUTOR on. An
        operator's own SYNCJOBS_EXECUTOR_COMMAND is trusted as the worker is: it finds the database
        through the worker's settings. `hosts` serve the default executor's runs only with
        SYNCJOBS_EXECUTOR_HOST=workspace (and the warm executor)."""
        default = not settings.executor_command
        warm = default and settings.warm_executor
        env = executor_environment(os.environ) | {"SYNCJOBS_DATABASE": settings.database}
        if not default:
            env = {**os.environ, "SYNCJOBS_MONGODB_URI": settings.require_mongodb_uri(), **env}
        return cls(
            settings.executor_command or EXECUTOR_COMMAND,
            env,
            settings.max_concurrent_runs,
            settings.max_runs_per_workspace,
            fork_server if warm else None,
            control if default else None,
            share_slots(settings.max_concurrent_runs, settings.workspace_share),
            hosts if warm and settings.executor_host == "workspace" else None,
        )


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

    def scrub(self, secrets: list[str]) -> None:
        """Remove the run's secrets from every text of this outcome: an executor that crashed, or a tap,
        may have printed what it held, and the run's error and stderr tail are shown to its workspace."""
        if self.error is not None:
            self.error = scrub(self.error, secrets)
        if self.stderr_tail is not None:
            self.stderr_tail = scrub(self.stderr_tail, secrets)
        if self.details:
            self.details = [
                {**d, "error": scrub(str(d["error"]), secrets)} if isinstance(d, dict) and d.get("error") else d
                for d in self.details
            ]


@dataclass
class _Output:
    result: dict[str, Any] | None = None
    stderr: bytearray = field(default_factory=bytearray)
    first_event: asyncio.Event = field(default_factory=asyncio.Event)
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
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout_seconds: float,
    cancel: asyncio.Event,
    *,
    fork_server: ForkServer | None = None,
    channel: RunChannel | None = None,
    hosts: ExecutorHosts | None = None,
    workspace: str | None = None,
    secrets: Sequence[str] = (),
) -> ExecutionOutcome:
    """Run the executor to its end, its timeout (timed_out) or `cancel` being set (cancelled); forked
    from `fork_server` when one is given and `argv` is the default executor command, or handed to an
    executor host of `workspace` when `hosts` are given (`secrets`: the run's, kept from the host's own
    output). With `channel`, the executor's stdin carries its spec and the answers to its requests."""
    started = time.monotonic()
    oom_kills_before = oom_kill_count()
    hosted = hosts if channel is not None and workspace is not None else None
    process, kind = await _start(argv, env, fork_server, channel is not None, hosted, workspace, secrets)
    output = _Output()
    readers = asyncio.gather(
        _read_events(process.stdout, output, process.stdin, channel), read_tail(process.stderr, output.stderr)
    )
    first_event = spawn(_observe_first_event(output, started, kind), f"executor {process.pid} first event")
    exited = spawn(process.wait(), f"executor {process.pid} exit")
    try:
        done = await wait_any(exited, cancel.wait(), within=timeout_seconds)
        if exited in done:
            status = RunStatus.SUCCEEDED if process.returncode == 0 else RunStatus.FAILED
        elif done:  # the cancel switch
            status = RunStatus.CANCELLED
        else:
            status = RunStatus.TIMED_OUT
            _signal(process, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE_SECONDS)
    finally:
        _signal(process, signal.SIGKILL)  # the whole group, grandchildren included
        if kind == "cold":
            cold_groups().remove(process.pid)
        await exited
        with contextlib.suppress(Exception):
            await asyncio.wait_for(readers, KILL_GRACE_SECONDS)
        first_event.cancel()
    tail = bytes(output.stderr).decode("utf-8", "replace")
    result = output.result or {}
    error = None
    if status == RunStatus.TIMED_OUT:
        error = f"timed out after {timeout_seconds:g}s"
    elif status == RunStatus.CANCELLED:
        error = "cancelled"
    elif status == RunStatus.FAILED:
        killed = killed_error(process.returncode, oom_kills_before, oom_kill_count())
        error = (
            result.get("error") or output.junk_error() or killed or _last_line(tail) or _exit_error(process.returncode)
        )
    elif output.junk_error() is not None:
        status, error = RunStatus.FAILED, output.junk_error()
    return ExecutionOutcome(
        status=status,
        exit_code=process.returncode,
        duration_ms=int((time.monotonic() - started) * 1000),
        error=error,
        stats=result.get("stats"),
        details=result.get("details"),
        stderr_tail=tail,
    )


async def _start(
    argv: Sequence[str],
    env: Mapping[str, str],
    fork_server: ForkServer | None,
    stdin: bool,
    hosts: ExecutorHosts | None,
    workspace: str | None,
    secrets: Sequence[str],
) -> tuple[ExecutorProcess, str]:
    if hosts is not None and workspace is not None and tuple(argv[: len(EXECUTOR_COMMAND)]) == EXECUTOR_COMMAND:
        try:
            return await hosts.run(workspace, argv, env, stdout_limit=MAX_EVENT_LINE_BYTES, secrets=secrets), "hosted"
        except ForkServerLost as lost:  # slower, never lost
            log.warning("executor_host_unavailable", reason=str(lost))
    if fork_server is not None and tuple(argv[: len(EXECUTOR_COMMAND)]) == EXECUTOR_COMMAND:
        try:
            return await fork_server.spawn(argv, env, stdout_limit=MAX_EVENT_LINE_BYTES, stdin=stdin), "warm"
        except ForkServerLost as lost:  # slower, never lost
            log.warning("executor_spawned_cold", reason=str(lost))
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
        preexec_fn=die_with_this_process(),
        limit=MAX_EVENT_LINE_BYTES,
    )
    cold_groups().add(process.pid)  # its children, too, die with the worker
    return process, "cold"


async def _observe_first_event(output: _Output, started: float, kind: str) -> None:
    """Spawn-to-first-event: from asking for an executor to its first NDJSON event."""
    await output.first_event.wait()
    metrics.executor_first_event_seconds.labels(kind).observe(time.monotonic() - started)


def _exit_error(returncode: int | None) -> str:
    if returncode is None:
        return "the executor ended without an exit status (its fork server was lost and it was killed)"
    return f"exit code {returncode}"


def killed_error(returncode: int | None, oom_kills_before: int | None, oom_kills_after: int | None) -> str | None:
    """What a signal death says: the signal by number and name, and out of memory when the kernel's OOM
    killer ran in our cgroup meanwhile (a SIGKILL of its own looks the same from the exit status)."""
    if returncode is None or returncode >= 0:
        return None
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "unknown signal"
    error = f"executor killed by signal {-returncode} ({name})"
    oom = oom_kills_before is not None and oom_kills_after is not None and oom_kills_after > oom_kills_before
    if -returncode == signal.SIGKILL and oom:
        return f"out of memory: {error} (the kernel's OOM killer)"
    return error


def oom_kill_count(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The kernel's `oom_kill` count for our cgroup (v2 `memory.events`, v1 `memory.oom_control`; the
    mount's root when our path is not visible, as in a container), or None where none can be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates += [root / path.lstrip("/") / "memory.events", root / "memory.events"]
        elif "memory" in controllers.split(","):
            v1 = root / "memory"
            candidates += [v1 / path.lstrip("/") / "memory.oom_control", v1 / "memory.oom_control"]
    for candidate in candidates:
        try:
            fields = dict(line.split() for line in candidate.read_text().splitlines() if len(line.split()) == 2)
            return int(fields["oom_kill"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def _signal(process: ExecutorProcess, signum: int) -> None:
    """The process's group; a hosted run's host only while the run is in it (then it is the run's)."""
    if isinstance(process, HostedRun):
        process.signal_group(signum)
    else:
        _signal_group(process.pid, signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _read_events(
    stream: asyncio.StreamReader | None,
    output: _Output,
    stdin: asyncio.StreamWriter | None,
    channel: RunChannel | None,
) -> None:
    """Parse stdout line by line, holding at most MAX_EVENT_LINE_BYTES + one chunk at any time; with a
    run channel, send the spec first and answer each request as it comes (the executor waits for it)."""
    assert stream is not None
    try:
        if channel is not None and stdin is not None:
            await _send(stdin, channel.spec_line)
        async for line in bounded_lines(stream, MAX_EVENT_LINE_BYTES, output):
            event = _parse_event(line, output)
            if event is not None and event.get("event") == ASK and channel is not None and stdin is not None:
                try:
                    request = loads(line)
                except ChannelError:
                    continue
                await _send(stdin, await answer(request, channel.control))
    finally:
        if stdin is not None:
            stdin.close()


async def _send(stdin: asyncio.StreamWriter, line: bytes) -> None:
    with contextlib.suppress(ConnectionError):  # the executor is gone: its exit tells the rest
        stdin.write(line)
        await stdin.drain()


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


def _parse_event(line: bytes, output: _Output) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: `[[[[...` nested past the parser's depth
        event = None
    if not isinstance(event, dict) or (event.get("event") == "result" and not is_result(event)):
        output.malformed += 1
        return None
    output.events += 1
    output.first_event.set()
    if event.get("event") == "result":
        output.result = event
    return event


def _last_line(text: str) -> str | None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
