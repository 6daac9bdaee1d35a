"""One run in the executor: every selected entity of the run's job, from its data source to its destination.

The run holds nothing of the control plane: its spec (connection settings opened) and what it needs of the
control database (`RunControl`: cursors, progress) come from its parent over the run channel. Every
tenant client it opens is fenced off the control cluster (`guard.ControlFence`); a refusal anywhere fails
the run at once, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from pymongo.errors import PyMongoError
from syncjobs.executor.change_stream import StreamSync, sync_change_stream
from syncjobs.executor.destination import Destination
from syncjobs.executor.events import CpuSteps, EventWriter
from syncjobs.executor.guard import (
    DESTINATION,
    SOURCE,
    ControlFence,
    Roles,
    check_connected,
    check_destination,
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
from syncjobs.shared.connection_rules import ConnectionRules
from syncjobs.shared.egress import ConnectGuard
from syncjobs.shared.errors import SyncjobsError
from syncjobs.shared.executor_protocol import EXIT_FAILED, EXIT_OK, ChannelError, RunControl, result_event
from syncjobs.shared.logging import get_logger
from syncjobs.shared.models import RunStatus, SyncJob
from syncjobs.shared.mongo import Client, connect_for_one_run
from syncjobs.shared.run_spec import RunSpec
from syncjobs.shared.secret_fields import scrub
from syncjobs.shared.waits import spawn, wait_any

log = get_logger(__name__)

DEFAULT_BATCH_SIZE = 1000
PROGRESS_WRITE_SECONDS = 1.0
MAX_ERROR_CHARS = 2000


class RunFailed(Exception):
    """The run cannot start for a reason the store does not report itself (a destination config unusable)."""


async def execute_run(
    control: RunControl,
    spec: RunSpec,
    *,
    rules: ConnectionRules,
    guard: ConnectGuard | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    events: EventWriter | None = None,
    progress_every_seconds: float = PROGRESS_WRITE_SECONDS,
    cpu: CpuSteps | None = None,
    clients: RunClients | None = None,
) -> int:
    """Sync every selected entity of the spec's job; emits the events and returns the exit code. With
    `guard` (the process's connect guard), every socket is judged by the run's control fence too.
    `clients`: the run's database clients and fence, whose `after_run` says what becomes of them (by
    default the run's own, closed when it ends)."""
    events = events or EventWriter()
    cpu = cpu or CpuSteps()
    started = time.monotonic()
    clients = clients or RunClients(ControlFence(rules))
    fence = clients.fence
    if guard is not None:
        guard.fence = fence.check_socket
    syncing = spawn(
        _sync_run(
            control,
            rules,
            clients,
            spec,
            dry_run,
            batch_size,
            events,
            progress_every_seconds,
            cpu,
        ),
        f"run {spec.run_id}",
    )
    try:
        await wait_any(syncing, fence.tripped.wait())
        if fence.refusal is not None:  # refused anywhere, whatever the driver made of it: the run fails
            syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await syncing
            raise fence.refusal
        results = syncing.result()
    except (RunFailed, SourceError, EntitySelectionError, SyncjobsError, PyMongoError, ChannelError) as exc:
        error = scrub(getattr(exc, "message", None) or str(exc), spec.secrets())[:MAX_ERROR_CHARS]
        log.error("run_failed", run_id=str(spec.run_id), error=error)
        stats = run_stats([], _elapsed_ms(started))
        events.emit("result", **result_event(RunStatus.FAILED, stats=stats, details=[], error=error, dry_run=dry_run))
        _log_cpu(cpu, spec)
        return EXIT_FAILED
    secrets = spec.secrets()
    details = [{**d, "error": scrub(d["error"], secrets)} if "error" in d else d for d in (r.detail() for r in results)]
    failed = [f"{d['entity']}: {d['error']}" for d in details if d["status"] == "failed"]
    summary = (f"{len(failed)} of {len(details)} entities failed: " + "; ".join(failed))[:MAX_ERROR_CHARS]
    status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
    stats = run_stats(results, _elapsed_ms(started))
    events.emit(
        "result",
        **result_event(status, stats=stats, details=details, error=summary if failed else None, dry_run=dry_run),
    )
    log.info("run_finished", run_id=str(spec.run_id), ok=not failed, entities=len(results))
    _log_cpu(cpu, spec)
    return EXIT_FAILED if failed else EXIT_OK


def _log_cpu(cpu: CpuSteps, spec: RunSpec) -> None:
    cpu.step("result")
    log.debug("run_cpu", run_id=str(spec.run_id), total_ms=cpu.total_ms(), **cpu.steps)


async def _sync_run(
    control: RunControl,
    rules: ConnectionRules,
    clients: RunClients,
    spec: RunSpec,
    dry_run: bool,
    batch_size: int,
    events: EventWriter,
    progress_every_seconds: float,
    cpu: CpuSteps,
) -> list[EntityResult]:
    job, run_id = spec.job, spec.run_id
    source_doc, destination_doc = spec.source, spec.destination
    try:
        dest_uri = str(destination_doc["config"]["uri"])
        dest_database = str(destination_doc["config"]["database"])
    except (KeyError, TypeError):
        raise RunFailed("the destination config needs `uri` and `database`") from None
    source_config = await runnable_source_config(rules, source_doc)
    dest_uri = await check_destination(rules, destination_doc["config"])
    clients.next_run()
    kind = str(source_doc.get("kind"))
    source_uri = source_config.get("uri") if kind == "mongodb" else None
    source_database = str(source_config.get("database"))
    options = sync_options(job)
    source = build_source(
        kind,
        source_config,
        batch_size=batch_size,
        egress=rules.egress,
        control=rules.control.addresses,
        mongo_client=clients.get(source_uri, source_database, SOURCE) if isinstance(source_uri, str) else None,
        incremental=options.incremental,
    )
    cpu.step("checks")
    try:
        if isinstance(source, MongoSource):
            await clients.check(source.client, source_database, SOURCE)
        dest_client = clients.get(dest_uri, dest_database, DESTINATION)
        await clients.check(dest_client, dest_database, DESTINATION)
        cpu.step("connect")
        selected = await _selected(source, job)
        log.debug(
            "run_started",
            run_id=str(run_id),
            job_id=job.id,
            mode=job.sync_mode,
            source_kind=kind,
            entities=selected,
            dry_run=dry_run,
        )
        destination = Destination(dest_client[dest_database], dry_run=dry_run)
        progress = RunProgress(control, events, selected, record=not dry_run, every_seconds=progress_every_seconds)
        if job.sync_mode == "changeStream":
            if not isinstance(source, MongoSource):
                raise RunFailed("changeStream needs a mongodb data source")
            stream_started = time.monotonic()
            stream = StreamSync(source, destination, control, progress.on_batch, options, batch_size)
            results = await sync_change_stream(stream, selected)
            for result in results:
                result.duration_ms = _elapsed_ms(stream_started)
                await _entity_done(progress, events, result)
            return results
        results = []
        for entity in selected:
            entity_started = time.monotonic()
            await progress.start(entity)
            result = await sync_entity(job.sync_mode, source, destination, control, entity, progress.on_batch, options)
            result.duration_ms = _elapsed_ms(entity_started)
            await _entity_done(progress, events, result)
            results.append(result)
        cpu.step("sync")
        return results
    finally:
        if clients.after_run != "leave":
            await _close(source)  # the run's own (an http session)
        if clients.after_run == "close":
            await clients.close()


async def _selected(source: Source, job: SyncJob) -> list[str]:
    """The entities to sync. A mongodb source's one named collection is not listed first (a burst of runs
    would pay a `listCollections` each): the source checks it exists when its read finds nothing, before
    anything of it is written or deleted. Several named (one could be synced before another is found
    missing) or a change stream (it watches the database): listed first."""
    include, exclude = job.entities.include, job.entities.exclude
    if include is not None and isinstance(source, MongoSource) and job.sync_mode != "changeStream":
        named = select_entities(include, include, exclude)
        if len(named) == 1 == len(set(include)) and not named[0].startswith("system."):
            source.check_when_empty()
            return named
    return select_entities(await source.list_entities(), include, exclude)


async def _entity_done(progress: RunProgress, events: EventWriter, result: EntityResult) -> None:
    await progress.finish(result)
    events.emit(
        "entity",
        entity=result.entity,
        status=result.status,
        stats={**result.stats.as_dict(), "durationMs": result.duration_ms},
        **({"error": result.detail()["error"]} if result.status == "failed" else {}),
    )
    log.debug("entity_synced", entity=result.entity, status=result.status, **result.stats.as_dict())


async def _close(source: Source) -> None:
    try:
        await source.close()
    except Exception as exc:  # closing must not hide the run's own outcome
        log.warning("source_close_failed", error=str(exc))


AfterRun = Literal["close", "leave", "keep"]


class RunClients:
    """The run's database clients, one per URI (a source and a destination on one server share it), each
    fenced off the control cluster for every database it was opened for.

    `after_run` says who owns them once a run ends: `close` (the run: they are closed), `leave` (a process
    that exits after its one run leaves them to the exit: no `endSessions`, no monitor teardown; every
    write was acknowledged before the result is emitted), `keep` (an executor host, for its next runs: the
    same URI (same credentials) of the same workspace reuses its client, its connections and its fence,
    and a client's roles only grow, so it is judged for each)."""

    def __init__(self, fence: ControlFence, *, after_run: AfterRun = "close", max_clients: int = 8) -> None:
        self.fence = fence
        self.after_run = after_run
        self._max_clients = max_clients
        self._by_uri: dict[str, tuple[Client, Roles]] = {}
        self._reached: set[int] = set()

    def next_run(self) -> None:
        """A new run pings (and judges) each client again before it moves data."""
        self._reached.clear()

    def get(self, uri: str, database: str, prefix: str) -> Client:
        if uri not in self._by_uri:
            roles: Roles = []
            client = connect_for_one_run(uri, **self.fence.client_options(roles))
            self.fence.watch(client, roles)
            self._by_uri[uri] = (client, roles)
        client, roles = self._by_uri.pop(uri)
        self._by_uri[uri] = (client, roles)  # the most recently used last
        if (database, prefix) not in roles:
            roles.append((database, prefix))
        return client

    async def keep_recent(self) -> None:
        """Close the least recently used clients past `max_clients` (a host of a workspace with many servers)."""
        while len(self._by_uri) > self._max_clients:
            uri = next(iter(self._by_uri))
            client, _ = self._by_uri.pop(uri)
            self.fence.unwatch(client)
            self._reached.discard(id(client))
            await client.close()

    async def check(self, client: Client, database: str, prefix: str) -> None:
        """`guard.check_connected` for one of the client's roles; a client that answered its ping for one
        role is judged again for the next without a second ping (the topology it judges is the same)."""
        await check_connected(self.fence, client, database, prefix, reached=id(client) in self._reached)
        self._reached.add(id(client))

    async def close(self) -> None:
        for client, _ in self._by_uri.values():
            await client.close()


@dataclass
class RunProgress:
    """Progress on stdout for every batch; on the run document (through the parent) at most once every
    `every_seconds`, and only once the run has lasted that long: a shorter run's result says it all (a
    burst of short runs saves two writes each). A run that wrote progress writes it again as each entity
    starts and ends."""

    control: RunControl
    events: EventWriter
    entities: list[str]
    _: KW_ONLY
    record: bool
    every_seconds: float = PROGRESS_WRITE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _done: list[str] = field(default_factory=list, init=False)
    _last_write: float = field(init=False)
    _written: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._last_write = self.clock()

    async def start(self, entity: str) -> None:
        await self._write(entity, EntityStats(), force=self._written)

    async def on_batch(self, entity: str, stats: EntityStats) -> None:
        self.events.emit("progress", entity=entity, **stats.as_dict())
        await self._write(entity, stats, force=False)

    async def finish(self, result: EntityResult) -> None:
        self._done.append(result.entity)
        await self._write(result.entity, result.stats, force=self._written)

    async def _write(self, entity: str, stats: EntityStats, *, force: bool) -> None:
        now = self.clock()
        if not self.record or (not force and now - self._last_write < self.every_seconds):
            return
        self._last_write = now
        self._written = True
        progress: dict[str, Any] = {
            "entity": entity,
            "entitiesDone": len(self._done),
            "entitiesTotal": len(self.entities),
            **stats.as_dict(),
        }
        try:
            await self.control.record_progress(progress)
        except (ChannelError, PyMongoError) as exc:  # progress is a courtesy: never fail a sync over it
            log.warning("progress_not_recorded", error=str(exc))


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
