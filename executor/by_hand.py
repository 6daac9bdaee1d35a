"""`syncjobs exec --run-id ID` by hand: this process has the control settings (URI, keys), so it reads the
run's spec and serves the run channel, and the executor proper runs as its child without any of them,
exactly as under the worker. Its events are passed through to stdout, its logs go to stderr."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.executor.cli import bad_invocation
from syncjobs.executor.events import EventWriter
from syncjobs.executor.run import run_stats
from syncjobs.shared.connection_rules import discover_control_cluster
from syncjobs.shared.errors import SyncjobsError
from syncjobs.shared.executor_protocol import (
    ASK,
    EXIT_FAILED,
    MAX_EVENT_LINE_BYTES,
    ChannelError,
    RunControl,
    answer,
    executor_argv,
    executor_environment,
    loads,
    result_event,
)
from syncjobs.shared.logging import configure_logging, get_logger
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import connect_for_one_run
from syncjobs.shared.process import die_with_this_process
from syncjobs.shared.run_spec import RunControlAccess, read_run_spec
from syncjobs.shared.secrets import SecretKeyError, install_keys
from syncjobs.shared.settings import Settings, SettingsError

log = get_logger(__name__)


def run_by_hand(run_id: ObjectId, dry_run: bool, batch_size: int, events: EventWriter) -> int:
    try:
        settings = Settings.from_env()
        uri = settings.require_mongodb_uri()
        install_keys(settings.secret_keys)
    except (SettingsError, SecretKeyError) as exc:
        configure_logging()
        return bad_invocation(events, str(exc))
    configure_logging(settings.log_level)
    return asyncio.run(_launch(settings, uri, run_id, dry_run, batch_size, events))


async def _launch(
    settings: Settings, uri: str, run_id: ObjectId, dry_run: bool, batch_size: int, events: EventWriter
) -> int:
    client = connect_for_one_run(uri)
    try:
        db = client[settings.database]
        try:
            spec = await read_run_spec(db, run_id, await discover_control_cluster(client, settings))
            spec_line = spec.to_line()
        except (SyncjobsError, PyMongoError, SecretKeyError) as exc:
            error = getattr(exc, "message", None) or str(exc)
            log.error("run_failed", run_id=str(run_id), error=error)
            events.emit("result", **result_event(RunStatus.FAILED, stats=run_stats([], 0), details=[], error=error))
            return EXIT_FAILED
        child = await asyncio.create_subprocess_exec(
            *executor_argv(str(run_id), dry_run=dry_run, batch_size=batch_size),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=executor_environment(os.environ) | {"SYNCJOBS_DATABASE": settings.database},
            limit=MAX_EVENT_LINE_BYTES,
            preexec_fn=die_with_this_process(),
        )
        control = RunControlAccess(db, run_id, ObjectId(spec.job.id))
        return await serve_child(child, spec_line, control)
    finally:
        await client.close()


async def serve_child(child: asyncio.subprocess.Process, spec_line: bytes, control: RunControl) -> int:
    """Hand the child its spec, answer its requests, pass its events on; its exit code."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(spec_line)
    try:
        while line := await child.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and event.get("event") == ASK:
                child.stdin.write(await answer(loads(line), control))
                await child.stdin.drain()
            else:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
    except (ValueError, ConnectionError, ChannelError) as exc:  # a line over the limit, or the child went away
        log.error("executor_channel_broken", error=str(exc))
        child.kill()
    return await child.wait()
