"""`syncjobs exec --run-id ID`: run one sync, spawned by the worker or by hand for debugging.

Events (NDJSON) go to stdout, logs to stderr; the exit codes are `shared.executor_protocol`'s. With
`--channel` this is the executor proper (`executor/run.py`): it holds nothing of the control plane and
takes its spec and control-database answers from its parent over stdin. Without it (by hand), this
process reads the run's spec with the control settings it has and starts that executor as its child,
serving it over the same channel (`executor/by_hand.py`). The worker, not the executor, stores the result.
`--host WORKSPACE` (from the fork server only) is a workspace's executor host (`executor/host.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os

from bson import ObjectId
from syncjobs.executor.channel import WorkerChannel
from syncjobs.executor.events import CpuSteps, EventWriter
from syncjobs.executor.guard import ControlFence, remove_pem_files
from syncjobs.executor.run import DEFAULT_BATCH_SIZE, MAX_ERROR_CHARS, RunClients, execute_run, run_stats
from syncjobs.shared.connection_rules import ConnectionRules
from syncjobs.shared.egress import ConnectGuard, EgressPolicy, guarded_loop_factory
from syncjobs.shared.executor_protocol import (
    CHANNEL_FLAG,
    EXECUTOR_ENV_NAMES,
    EXECUTOR_SETTINGS,
    EXIT_FAILED,
    EXIT_USAGE,
    HOST_FLAG,
    ChannelError,
    result_event,
)
from syncjobs.shared.logging import configure_logging, get_logger
from syncjobs.shared.models import RunStatus
from syncjobs.shared.process import limit_address_space, make_non_dumpable
from syncjobs.shared.run_spec import RunSpecError
from syncjobs.shared.settings import Settings, SettingsError

log = get_logger(__name__)


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """Built once per process: the fork server builds it (and parses once) before it forks, so a child
    does not (~2 ms of its CPU)."""
    parser = argparse.ArgumentParser(
        prog="syncjobs exec",
        description="Run one sync: move the run's job's entities from its data source to its destination.",
    )
    parser.add_argument("--run-id", required=True, help="the job_runs document to execute")
    parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="records per bulk write")
    parser.add_argument(CHANNEL_FLAG, action="store_true", help=argparse.SUPPRESS)  # the worker's executor
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == HOST_FLAG:  # a workspace's executor host, started by the fork server
        from syncjobs.executor.host import serve_workspace

        return serve_workspace(argv[1:])
    cpu = CpuSteps()
    args = build_parser().parse_args(argv)
    events = EventWriter()
    if not ObjectId.is_valid(args.run_id) or args.batch_size < 1:
        configure_logging()
        return bad_invocation(events, "--run-id must be an ObjectId and --batch-size >= 1")
    run_id = ObjectId(args.run_id)
    if not args.channel:
        from syncjobs.executor.by_hand import run_by_hand

        return run_by_hand(run_id, args.dry_run, args.batch_size, events)
    try:
        settings, guard = prepare_executor_process()
    except SettingsError as exc:
        configure_logging()
        return bad_invocation(events, str(exc))
    cpu.step("settings")
    try:
        with asyncio.Runner(loop_factory=guarded_loop_factory(guard)) as runner:
            return runner.run(_served(settings, guard, run_id, args.dry_run, args.batch_size, events, cpu))
    except MemoryError:
        log.error("run_out_of_memory", run_id=args.run_id, limit_mb=settings.executor_memory_mb)
        return failed(events, out_of_memory(settings), dry_run=args.dry_run)
    except Exception as exc:  # a bug or an unforeseen failure: still one failed result, the traceback on stderr
        log.exception("executor_crashed", run_id=args.run_id)
        return failed(events, crashed(exc), dry_run=args.dry_run)
    finally:
        remove_pem_files()


def prepare_executor_process() -> tuple[Settings, ConnectGuard]:
    """What every executor process does first: non-dumpable, only the allowlisted environment (what it
    was started with beyond it, no child (a tap) inherits either), its settings and log level, a connect
    guard that checks every TCP connect against the egress policy (and, per run, the control fence), and
    its address-space limit."""
    make_non_dumpable()
    held = held_settings()
    os.environ.clear()
    os.environ.update(held)
    settings = Settings.from_env(held)
    configure_logging(settings.log_level)
    guard = ConnectGuard(EgressPolicy.from_strings(settings.allowed_networks))
    limit_address_space(settings.executor_memory_mb)
    return settings, guard


def out_of_memory(settings: Settings) -> str:
    limit = settings.executor_memory_mb
    return f"out of memory: the run needed more than SYNCJOBS_EXECUTOR_MEMORY_MB ({limit} MiB)"


def crashed(exc: BaseException) -> str:
    return f"executor error: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def failed(events: EventWriter, error: str, *, dry_run: bool) -> int:
    """The failed `result` of a run that broke off (out of memory, a crash), and its exit code."""
    stats = run_stats([], 0)
    events.emit("result", **result_event(RunStatus.FAILED, stats=stats, details=[], error=error, dry_run=dry_run))
    return EXIT_FAILED


def held_settings() -> dict[str, str]:
    """The executor's settings: only the allowlisted variables count, whatever else its environment has
    (an executor started by hand with a full environment still reads no control setting)."""
    allowed = EXECUTOR_ENV_NAMES | EXECUTOR_SETTINGS
    return {name: value for name, value in os.environ.items() if name in allowed}


async def _served(
    settings: Settings,
    guard: ConnectGuard,
    run_id: ObjectId,
    dry_run: bool,
    batch_size: int,
    events: EventWriter,
    cpu: CpuSteps,
) -> int:
    """The run, in this process that exits after it: its clients are left to the exit, not closed."""
    try:
        channel = await WorkerChannel.open(events)
        spec = await channel.read_spec(run_id)
    except (RunSpecError, ChannelError) as exc:
        return bad_invocation(events, str(exc))
    rules = ConnectionRules.from_settings(settings, spec.control_cluster(settings))
    cpu.step("spec")
    return await execute_run(
        channel,
        spec,
        rules=rules,
        guard=guard,
        dry_run=dry_run,
        batch_size=batch_size,
        events=events,
        cpu=cpu,
        clients=RunClients(ControlFence(rules), after_run="leave"),
    )


def bad_invocation(events: EventWriter, error: str) -> int:
    """The failed `result` of a run that could not start as invoked, and its exit code."""
    log.error("executor_bad_invocation", error=error)
    events.emit("result", **result_event(RunStatus.FAILED, stats=run_stats([], 0), details=[], error=error))
    return EXIT_USAGE
