"""`syncjobs worker`: one replica. Every replica claims and runs pending runs for its whole life; one of
them also holds the lease and leads (decides fires, fails lost runs) until SIGTERM or until the lease is
lost, and stands by again. A database outage never stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Collection, Coroutine
from typing import Any, TypeVar

from bson import ObjectId
from pymongo.errors import PyMongoError
from syncjobs.shared import metrics
from syncjobs.shared.clock import Clock, SystemClock
from syncjobs.shared.connection_rules import ControlClusterCache
from syncjobs.shared.egress import EgressPolicy
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import (
    Database,
    Document,
    bounded_waits,
    check_replica_set,
    close_client,
    connect,
    ensure_indexes,
    shutdown_budget,
)
from syncjobs.shared.run_events import RunEventSubscriptions
from syncjobs.shared.settings import Settings
from syncjobs.shared.store.job_runs import Claimant
from syncjobs.shared.tap_isolation import isolation
from syncjobs.shared.waits import spawn, wait_any
from syncjobs.worker import notifier
from syncjobs.worker.change_feed import ChangeFeed
from syncjobs.worker.dispatcher import RunDispatcher
from syncjobs.worker.executor_hosts import ExecutorHosts
from syncjobs.worker.executor_process import ExecutorSpec
from syncjobs.worker.fork_server import ForkServer
from syncjobs.worker.group_keeper import cold_groups
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.leadership import Leadership
from syncjobs.worker.lease import Lease
from syncjobs.worker.run_event_delivery import deliver_run_events_forever
from syncjobs.worker.server_clock import ServerClock

log = get_logger(__name__)

T = TypeVar("T")
# A standby asks for the lease this often: a lapsed lease is taken within half a second (failover in TTL + 0.5 s).
STANDBY_RETRY_SECONDS = 0.5
NOTIFY_CONCURRENCY = 2
CLAIM_LOOP_STOP_SECONDS = 0.2
CANCEL_WAIT_SECONDS = 0.2


def main(settings: Settings) -> None:
    if settings.worker_metrics_port:
        metrics.start_metrics_server(settings.worker_metrics_port)
    asyncio.run(run_worker(settings))


async def run_worker(settings: Settings, *, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (SIGTERM/SIGINT set it when it is not given). `clock` is this machine's (the
    system clock unless a test gives one); the worker acts on the database server's (ServerClock)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    client = connect(settings.require_mongodb_uri(), **bounded_waits(settings.run_lease_seconds))
    db = client[settings.database]
    server_clock = ServerClock(clock or SystemClock(), db)
    lease = Lease(db, settings.worker_id, settings.lease_ttl_seconds)
    worker = _Worker(db, settings, lease, server_clock, stop)
    log.info(
        "worker_started",
        worker_id=settings.worker_id,
        lease_ttl_seconds=settings.lease_ttl_seconds,
        tap_isolation=await asyncio.to_thread(isolation),
    )
    warming = None
    if settings.warm_executor and not settings.executor_command:
        warming = spawn(worker.fork_server.warm_up(), "fork server warm-up")
    try:
        await worker.run()
    finally:
        if warming is not None:  # a warm-up still starting (a loaded machine) does not hold up the stop
            await _cancel_all([warming])
        worker.executor_hosts.close()
        await worker.fork_server.close()
        cold_groups().close()
        await close_client(client, reachable=not worker.database_gone and worker.health.available)
        log.info("worker_stopped", worker_id=settings.worker_id)


async def _open(feed: ChangeFeed, leadership: Leadership) -> bool:
    """The change stream first (no edit slips between recovery and it), then recovery of the last term."""
    await feed.open()
    await leadership.recover()
    return True


async def _cancel_all(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel and wait briefly, twice: a driver call may answer its first cancel with cleanup on the
    database (a change stream closes its cursor), which on a dead server waits out server selection; the
    second cancel cuts that short, so stopping never waits on it."""
    for _ in range(2):
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_WAIT_SECONDS)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: what failed was logged where it failed


async def _ensure_indexes(db: Database, settings: Settings) -> bool:
    await check_replica_set(db.client, allow_arbiters=settings.allow_arbiters)
    await ensure_indexes(db, settings.run_retention_days)
    return True


class _Worker:
    def __init__(self, db: Database, settings: Settings, lease: Lease, clock: ServerClock, stop: asyncio.Event) -> None:
        self.db = db
        self.settings = settings
        self.lease = lease
        self.clock = clock
        self.stop = stop
        self.health = DatabaseHealth()
        self.fork_server = ForkServer()  # warmed up at start (when used), shared by every term
        self.executor_hosts = ExecutorHosts(self.fork_server)  # used with SYNCJOBS_EXECUTOR_HOST=workspace
        self._background: set[asyncio.Task[object]] = set()
        self._notify_latest: dict[ObjectId, tuple[Document, ObjectId]] = {}
        self._notify_slots = asyncio.Semaphore(NOTIFY_CONCURRENCY)
        self.database_gone = False  # found unreachable while stopping: nothing more is written
        self.run_events = RunEventSubscriptions(db, settings.poll_seconds)

    async def run(self) -> None:
        await self._ensure_indexes()
        claimant = Claimant(self.settings.worker_id, self.lease.instance, float(self.settings.run_lease_seconds))
        dispatcher = RunDispatcher(
            self.db,
            self.clock,
            claimant,
            executor=ExecutorSpec.from_settings(
                self.settings,
                self.fork_server,
                ControlClusterCache(self.db.client, self.settings),
                self.executor_hosts,
            ),
            health=self.health,
            poll_seconds=self.settings.poll_seconds,
            on_run_finished=self._notify,
            run_events=self.run_events,
            alert_thresholds=self.settings.alerts,
        )
        with contextlib.suppress(PyMongoError):  # the first run's events already know their subscribers
            await self._unless_stopped(self.run_events.refresh())
        claiming = spawn(dispatcher.run(), "claim loop")
        measuring = spawn(self.clock.keep_measuring(), "server clock measurement")
        run_events = [
            spawn(self.run_events.refresh_forever(), "run event subscriptions"),
            spawn(
                deliver_run_events_forever(
                    self.db,
                    self.run_events,
                    EgressPolicy.from_strings(self.settings.allowed_networks),
                    self.clock,
                    poll_seconds=self.settings.poll_seconds,
                ),
                "run event delivery",
            ),
        ]
        # Claims stop the moment SIGTERM comes, beside the leader's own stop: one after the other, their
        # waits on an unreachable database added up past the 2 s a stop may take.
        claims_stopped = spawn(self._stop_claiming_when_stopped(dispatcher, claiming), "claim stop")
        try:
            await self._lead_when_possible()
        finally:
            self.stop.set()
            await _cancel_all([measuring])
            await claims_stopped
            if dispatcher.running() and (self.database_gone or not await self._database_answers()):
                self.database_gone = True
                await dispatcher.abandon()
            else:
                await dispatcher.finish(self.settings.shutdown_grace_seconds)
            await _cancel_all(run_events)  # what is still queued waits in webhook_events for a replica
        if self._background and not self.database_gone:  # alert evaluations need the database
            await asyncio.wait(self._background, timeout=self.settings.shutdown_grace_seconds)

    async def _stop_claiming_when_stopped(self, dispatcher: RunDispatcher, claiming: asyncio.Task[None]) -> None:
        await self.stop.wait()
        log.info("worker_stopping", worker_id=self.settings.worker_id)
        await self._stop_claiming(dispatcher, claiming)

    async def _stop_claiming(self, dispatcher: RunDispatcher, claiming: asyncio.Task[None]) -> None:
        """The claim loop ends after its current claim; one stuck on an unreachable database is cancelled
        (a claim that landed meanwhile lapses with its run lease, and the leader retries the run)."""
        dispatcher.stop_claiming()
        _, stuck = await asyncio.wait([claiming], timeout=CLAIM_LOOP_STOP_SECONDS)
        await _cancel_all(stuck)

    async def _lead_when_possible(self) -> None:
        standing_by = False
        while not self.stop.is_set():
            try:
                if not self.clock.measured:  # no term is led on an unmeasured clock
                    await self._unless_stopped(self.clock.measure())
                held = await self._unless_stopped(self.lease.acquire())
                if held is None:
                    break
                self.health.succeeded()
            except PyMongoError as error:
                self.health.failed(error)
                held = False
            if not held:
                if not standing_by:
                    log.info("standing_by", worker_id=self.lease.owner)
                standing_by = True
                await self._pause(STANDBY_RETRY_SECONDS)
                continue
            standing_by = False
            await self._lead()

    async def _lead(self) -> None:
        log.info("lease_acquired", owner=self.lease.owner, fencing_token=self.lease.fencing_token)
        metrics.lease_held.set(1)
        leadership = Leadership(
            self.db,
            self.lease,
            self.clock,
            health=self.health,
            run_lease_seconds=float(self.settings.run_lease_seconds),
            run_events=self.run_events,
        )
        feed = ChangeFeed(self.db, leadership, self.settings.poll_seconds, self.health)
        holding = spawn(self.lease.hold(), "scheduler lease renewal")
        working: list[asyncio.Task[None]] = []
        try:
            if not await self._unless_stopped(_open(feed, leadership)):
                return
            working = [
                spawn(leadership.fire_due(), "fire loop"),
                spawn(feed.run(), "change feed"),
                spawn(leadership.fail_lost_runs_forever(), "lost run check"),
                spawn(notifier.sweep_alerts_forever(self.db, self.settings, self.clock), "alert sweep"),
            ]
            done = await wait_any(holding, self.stop.wait(), *working)
            for task in working:
                if task in done and task.exception() is not None:
                    log.error("leader_failed", exc_info=task.exception())
        except PyMongoError as error:
            self.health.failed(error)
            log.warning("leader_start_failed", error=str(error)[:200])
        finally:
            if holding.done():
                log.warning("stepped_down", owner=self.lease.owner)
            await _cancel_all([*working, holding])
            metrics.lease_held.set(0)
            if self.lease.state is not None and not self.database_gone:
                await self._release()
        if not self.stop.is_set():
            await self._pause(STANDBY_RETRY_SECONDS)

    async def _release(self) -> None:
        try:
            with shutdown_budget():
                await self.lease.release()
            log.info("lease_released", owner=self.lease.owner)
        except PyMongoError as error:
            log.warning("lease_release_failed", error=str(error)[:200])
            if self.stop.is_set():  # stopping: no need to ask the database again whether it answers
                self.database_gone = True

    async def _notify(self, job: Document, run_id: ObjectId) -> None:
        """Alerts and webhooks run beside the worker, so a slow webhook never holds a job's lock.

        At most NOTIFY_CONCURRENCY evaluations run at once and a job waits in line once: its evaluation
        reads the job's latest state, so a burst of runs costs the database one evaluation per job, and
        the fire path keeps its share of the database.
        """
        job_id = job["_id"]
        queued = job_id in self._notify_latest
        self._notify_latest[job_id] = (job, run_id)
        if queued:
            return
        task = spawn(self._evaluate_alerts(job_id), f"alert evaluation of job {job_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _evaluate_alerts(self, job_id: ObjectId) -> None:
        async with self._notify_slots:
            job, run_id = self._notify_latest.pop(job_id)
            await notifier.on_run_finished(self.db, self.settings, job_id, run_id, clock=self.clock, job=job)

    async def _ensure_indexes(self) -> None:
        while not self.stop.is_set():
            try:
                if await self._unless_stopped(_ensure_indexes(self.db, self.settings)):
                    self.health.succeeded()
                return
            except PyMongoError as error:
                self.health.failed(error)
                await self._pause(STANDBY_RETRY_SECONDS)

    async def _database_answers(self) -> bool:
        """One ping on the shutdown budget: whether what runs can still be recorded."""
        try:
            with shutdown_budget():
                await self.db.command("ping")
            return True
        except PyMongoError:
            return False

    async def _unless_stopped(self, work: Coroutine[object, object, T]) -> T | None:
        """`work`'s result, or None once stop is set (`work` cancelled): SIGTERM never waits on the
        database's server selection."""
        task = spawn(work, f"{getattr(work, '__qualname__', 'work')} unless stopped")
        await wait_any(task, self.stop.wait())
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
