"""`syncjobs exec --run-id ID`: run one sync, spawned by the worker or by hand for debugging.

Events (NDJSON) go to stdout, logs to stderr. Exit 0 when every selected entity synced, 1 when the run
or any entity failed, 2 for a bad invocation. The worker, not the executor, stores the result and status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bson import ObjectId
from pymongo import uri_parser
from pymongo.errors import PyMongoError
from syncjobs.executor.change_stream import sync_change_stream
from syncjobs.executor.destination import Destination
from syncjobs.executor.events import EventWriter
from syncjobs.executor.guard import (
    DESTINATION,
    SOURCE,
    ControlMembers,
    check_connected,
    check_destination,
    exempt_host,
    runnable_source_config,
)
from syncjobs.executor.sources import Source, SourceError, build_source
from syncjobs.executor.sources.mongodb import MongoSource
from syncjobs.executor.sync import (
    EntityResult,
    EntitySelectionError,
    EntityStats,
    select_entities,
    sync_entity,
    sync_options,
)
from syncjobs.shared.clock import utc_now
from syncjobs.shared.connection_rules import ConnectionRules, discover_control_cluster
from syncjobs.shared.egress import ConnectGuard, EgressPolicy, guarded_loop_factory
from syncjobs.shared.errors import SyncjobsError
from syncjobs.shared.logging import configure_logging, get_logger
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Client, Database, connect_for_one_run
from syncjobs.shared.process import limit_address_space
from syncjobs.shared.run_spec import RUN_SPEC_ENV, RunSpec, RunSpecError, read_run_spec
from syncjobs.shared.secret_fields import scrub, secret_values
from syncjobs.shared.secrets import SecretKeyError, install_keys
from syncjobs.shared.settings import Settings, SettingsError
from syncjobs.shared.store import job_runs
from syncjobs.shared.store.sync_state import JobCursors

log = get_logger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_BATCH_SIZE = 1000
PROGRESS_WRITE_SECONDS = 1.0
MAX_ERROR_CHARS = 2000


class RunFailed(Exception):
    """The run cannot start for a reason the store does not report itself (a destination config unusable)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncjobs exec",
        description="Run one sync: move the run's job's entities from its data source to its destination.",
    )
    parser.add_argument("--run-id", required=True, help="the job_runs document to execute")
    parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="records per bulk write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    events = EventWriter()
    try:
        settings = Settings.from_env()
        uri = settings.require_mongodb_uri()
        install_keys(settings.secret_keys)
    except (SettingsError, SecretKeyError) as exc:
        configure_logging()
        log.error("executor_misconfigured", error=str(exc))
        return _bad_invocation(events, str(exc))
    configure_logging(settings.log_level)
    if not ObjectId.is_valid(args.run_id) or args.batch_size < 1:
        return _bad_invocation(events, "--run-id must be an ObjectId and --batch-size >= 1")
    run_id = ObjectId(args.run_id)
    try:
        spec_text = os.environ.get(RUN_SPEC_ENV)
        spec = RunSpec.from_json(spec_text, run_id) if spec_text else None
    except RunSpecError as exc:
        return _bad_invocation(events, str(exc))
    # Every TCP connect of this process is checked against the egress policy; the control server is exempt.
    guard = ConnectGuard(EgressPolicy.from_strings(settings.allowed_networks))
    limit_address_space(settings.executor_memory_mb)
    try:
        with asyncio.Runner(loop_factory=guarded_loop_factory(guard)) as runner:
            return runner.run(_main(settings, uri, guard, run_id, spec, args.dry_run, args.batch_size, events))
    except MemoryError:
        limit = settings.executor_memory_mb
        log.error("run_out_of_memory", run_id=str(run_id), limit_mb=limit)
        error = f"out of memory: the run needed more than SYNCJOBS_EXECUTOR_MEMORY_MB ({limit} MiB)"
        events.emit(
            "result", status=RunStatus.FAILED, error=error, stats=empty_stats(0), details=[], dryRun=args.dry_run
        )
        return EXIT_FAILED
    except Exception as exc:  # a bug or an unforeseen failure: still one failed result, the traceback on stderr
        log.exception("executor_crashed", run_id=args.run_id)
        events.emit(
            "result",
            status=RunStatus.FAILED,
            error=scrub(f"executor error: {type(exc).__name__}: {exc}", _secrets_of(spec))[:MAX_ERROR_CHARS],
            stats=empty_stats(0),
            details=[],
            dryRun=args.dry_run,
        )
        return EXIT_FAILED


def _bad_invocation(events: EventWriter, error: str) -> int:
    """The failed `result` of a run that could not start as invoked, and its exit code."""
    events.emit("result", status=RunStatus.FAILED, error=error, stats=empty_stats(0), details=[])
    return EXIT_USAGE


async def _main(
    settings: Settings,
    uri: str,
    guard: ConnectGuard,
    run_id: ObjectId,
    spec: RunSpec | None,
    dry_run: bool,
    batch_size: int,
    events: EventWriter,
) -> int:
    for host, port in uri_parser.parse_uri(uri)["nodelist"]:
        exempt_host(guard, host, port)
    control = ControlDatabase.connecting(uri, settings.database, guard)
    try:
        if spec is None:  # by hand, or from a worker that could not read it: discover who the control server is
            cluster = await discover_control_cluster((await control.database()).client, settings)
        else:
            cluster = spec.control_cluster(settings)
        rules = ConnectionRules.from_settings(settings, cluster)
        return await execute_run(
            control, run_id, rules=rules, spec=spec, dry_run=dry_run, batch_size=batch_size, events=events
        )
    finally:
        await control.close()


class ControlDatabase:
    """The executor's control database, connected on first use: an executor handed its run's spec needs it
    only for incremental cursors and for the progress of a run that lasts."""

    def __init__(self, open_database: Callable[[], Database], close: Callable[[Database], Awaitable[None]]) -> None:
        self._open_database = open_database
        self._close = close
        self._database: Database | None = None

    @classmethod
    def connecting(cls, uri: str, database: str, guard: ConnectGuard) -> ControlDatabase:
        """A client of its own, exempt from the egress guard for every member of the control replica set."""

        def open_database() -> Database:
            return connect_for_one_run(uri, event_listeners=[ControlMembers(guard)])[database]

        async def close(db: Database) -> None:
            await db.client.close()

        return cls(open_database, close)

    @classmethod
    def of(cls, db: Database) -> ControlDatabase:
        """A database the caller opened and closes."""

        async def leave_open(_: Database) -> None:
            return None

        return cls(lambda: db, leave_open)

    async def database(self) -> Database:
        if self._database is None:
            self._database = self._open_database()
        return self._database

    async def close(self) -> None:
        if self._database is not None:
            await self._close(self._database)


class ControlCursors:
    """The job's incremental cursors (`sync_state`), through the control database opened when first needed."""

    def __init__(self, control: ControlDatabase, job_id: ObjectId) -> None:
        self._control = control
        self._job_id = job_id

    async def load(self, entity: str) -> Any | None:
        return await JobCursors(await self._control.database(), self._job_id).load(entity)

    async def save(self, entity: str, cursor: Any) -> None:
        await JobCursors(await self._control.database(), self._job_id).save(entity, cursor)


async def execute_run(
    control: ControlDatabase,
    run_id: ObjectId,
    *,
    rules: ConnectionRules,
    spec: RunSpec | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    events: EventWriter | None = None,
    progress_every_seconds: float = PROGRESS_WRITE_SECONDS,
) -> int:
    """Sync every selected entity of the run's job (as `spec` says, else as read); emits the events and
    returns the exit code."""
    events = events or EventWriter()
    started = time.monotonic()
    results: list[EntityResult] = []
    try:
        if spec is None:
            spec = await read_run_spec(await control.database(), run_id, rules.control)
        results = await _sync_run(control, rules, spec, dry_run, batch_size, events, progress_every_seconds)
    except (RunFailed, SourceError, EntitySelectionError, SyncjobsError, PyMongoError, SecretKeyError) as exc:
        error = scrub(getattr(exc, "message", None) or str(exc), _secrets_of(spec))
        log.error("run_failed", run_id=str(run_id), error=error)
        events.emit(
            "result",
            status=RunStatus.FAILED,
            error=error,
            stats=empty_stats(_elapsed_ms(started)),
            details=[],
            dryRun=dry_run,
        )
        return EXIT_FAILED
    secrets = _secrets_of(spec)
    details = [{**d, "error": scrub(d["error"], secrets)} if "error" in d else d for d in (r.detail() for r in results)]
    failed = [f"{d['entity']}: {d['error']}" for d in details if d["status"] == "failed"]
    ok = not failed
    summary = f"{len(failed)} of {len(details)} entities failed: " + "; ".join(failed)
    summary_error = {} if ok else {"error": summary[:MAX_ERROR_CHARS]}
    events.emit(
        "result",
        status=RunStatus.SUCCEEDED if ok else RunStatus.FAILED,
        stats=run_stats(results, _elapsed_ms(started)),
        details=details,
        dryRun=dry_run,
        **summary_error,
    )
    log.info("run_finished", run_id=str(run_id), ok=ok, entities=len(results))
    return EXIT_OK if ok else EXIT_FAILED


def _secrets_of(spec: RunSpec | None) -> list[str]:
    """The run's clear secrets, which no error it reports may echo."""
    if spec is None:
        return []
    return secret_values([spec.opened_source().get("config"), spec.opened_destination().get("config")])


async def _sync_run(
    control: ControlDatabase,
    rules: ConnectionRules,
    spec: RunSpec,
    dry_run: bool,
    batch_size: int,
    events: EventWriter,
    progress_every_seconds: float,
) -> list[EntityResult]:
    job, run_id = spec.job, spec.run_id
    source_doc, destination_doc = spec.opened_source(), spec.opened_destination()
    try:
        dest_uri = str(destination_doc["config"]["uri"])
        dest_database = str(destination_doc["config"]["database"])
    except (KeyError, TypeError):
        raise RunFailed("the destination config needs `uri` and `database`") from None
    source_config = await runnable_source_config(rules, source_doc)
    dest_uri = await check_destination(rules, destination_doc["config"])
    clients = RunClients()
    kind = str(source_doc.get("kind"))
    source_uri = source_config.get("uri") if kind == "mongodb" else None
    options = sync_options(job)
    source = build_source(
        kind,
        source_config,
        batch_size=batch_size,
        egress=rules.egress,
        control=rules.control.addresses,
        mongo_client=clients.get(source_uri) if isinstance(source_uri, str) else None,
        incremental=options.incremental,
    )
    try:
        if isinstance(source, MongoSource):
            await check_connected(rules, source.client, str(source_config.get("database")), SOURCE)
        dest_client = clients.get(dest_uri)
        await check_connected(rules, dest_client, dest_database, DESTINATION)
        selected = select_entities(await source.list_entities(), job.entities.include, job.entities.exclude)
        log.info(
            "run_started",
            run_id=str(run_id),
            job_id=job.id,
            mode=job.sync_mode,
            source_kind=kind,
            entities=selected,
            dry_run=dry_run,
        )
        destination = Destination(dest_client[dest_database], dry_run=dry_run)
        progress = RunProgress(
            control, run_id, events, selected, record=not dry_run, every_seconds=progress_every_seconds
        )
        cursors = ControlCursors(control, ObjectId(job.id))
        if job.sync_mode == "changeStream":
            if not isinstance(source, MongoSource):
                raise RunFailed("changeStream needs a mongodb data source")
            stream_started = time.monotonic()
            results = await sync_change_stream(
                source, destination, cursors, selected, progress.on_batch, options, batch_size
            )
            for result in results:
                result.duration_ms = _elapsed_ms(stream_started)
                await _entity_done(progress, events, result)
            return results
        results = []
        for entity in selected:
            entity_started = time.monotonic()
            await progress.start(entity)
            result = await sync_entity(job.sync_mode, source, destination, cursors, entity, progress.on_batch, options)
            result.duration_ms = _elapsed_ms(entity_started)
            await _entity_done(progress, events, result)
            results.append(result)
        return results
    finally:
        await _close(source)
        await clients.close()


async def _entity_done(progress: RunProgress, events: EventWriter, result: EntityResult) -> None:
    await progress.finish(result)
    events.emit(
        "entity",
        entity=result.entity,
        status=result.status,
        stats={**result.stats.as_dict(), "durationMs": result.duration_ms},
        **({"error": result.detail()["error"]} if result.status == "failed" else {}),
    )
    log.info("entity_synced", entity=result.entity, status=result.status, **result.stats.as_dict())


async def _close(source: Source) -> None:
    try:
        await source.close()
    except Exception as exc:  # closing must not hide the run's own outcome
        log.warning("source_close_failed", error=str(exc))


class RunClients:
    """The run's database clients, one per URI: a source and a destination on one server share it."""

    def __init__(self) -> None:
        self._by_uri: dict[str, Client] = {}

    def get(self, uri: str) -> Client:
        if uri not in self._by_uri:
            self._by_uri[uri] = connect_for_one_run(uri)
        return self._by_uri[uri]

    async def close(self) -> None:
        for client in self._by_uri.values():
            await client.close()


class RunProgress:
    """Progress on stdout for every batch; on the run document at most once every `every_seconds`, and
    only once the run has lasted that long: a shorter run's result says it all (a burst of short runs
    saves two writes each). A run that wrote progress writes it again as each entity starts and ends."""

    def __init__(
        self,
        control: ControlDatabase,
        run_id: ObjectId,
        events: EventWriter,
        entities: list[str],
        *,
        record: bool,
        every_seconds: float = PROGRESS_WRITE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = control
        self._run_id = run_id
        self._events = events
        self._entities = entities
        self._record = record
        self._every_seconds = every_seconds
        self._clock = clock
        self._done: list[str] = []
        self._last_write = clock()
        self._written = False

    async def start(self, entity: str) -> None:
        await self._write(entity, EntityStats(), force=self._written)

    async def on_batch(self, entity: str, stats: EntityStats) -> None:
        self._events.emit("progress", entity=entity, **stats.as_dict())
        await self._write(entity, stats, force=False)

    async def finish(self, result: EntityResult) -> None:
        self._done.append(result.entity)
        await self._write(result.entity, result.stats, force=self._written)

    async def _write(self, entity: str, stats: EntityStats, *, force: bool) -> None:
        now = self._clock()
        if not self._record or (not force and now - self._last_write < self._every_seconds):
            return
        self._last_write = now
        self._written = True
        progress: dict[str, Any] = {
            "entity": entity,
            "entitiesDone": len(self._done),
            "entitiesTotal": len(self._entities),
            **stats.as_dict(),
            "updatedAt": utc_now(),
        }
        try:
            await job_runs.record_progress(await self._control.database(), self._run_id, progress)
        except PyMongoError as exc:  # progress is a courtesy: never fail a sync over it
            log.warning("progress_not_recorded", error=str(exc))


def empty_stats(duration_ms: int) -> dict[str, Any]:
    return run_stats([], duration_ms)


def run_stats(results: list[EntityResult], duration_ms: int) -> dict[str, Any]:
    """`stats` of the result event: per entity and totals, each with the counts and durationMs."""
    totals = EntityStats()
    for result in results:
        totals.add(result.stats)
    return {
        "entities": {r.entity: {**r.stats.as_dict(), "durationMs": r.duration_ms} for r in results},
        "totals": {**totals.as_dict(), "durationMs": duration_ms},
        "durationMs": duration_ms,
    }


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
