"""Feed the leader every job edit, toggle and delete as it happens (new runs go to the claimers).

A change stream on the database (resumed from its token after a reconnect); where the server has no
change streams (a standalone mongod), a poll every SYNCJOBS_POLL_SECONDS that compares job versions.
The stream is opened before the leader loads its jobs, so no change between the two is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.errors import OperationFailure, PyMongoError
from syncjobs.shared import metrics
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import Database, Document, no_change_streams, paced_changes
from syncjobs.shared.retry import DB_RETRY_SECONDS
from syncjobs.shared.store import sync_jobs
from syncjobs.worker.health import DatabaseHealth
from syncjobs.worker.leadership import Leadership

log = get_logger(__name__)


class ChangeFeed:
    def __init__(self, db: Database, leadership: Leadership, poll_seconds: float, health: DatabaseHealth) -> None:
        self.db = db
        self.leadership = leadership
        self.poll_seconds = poll_seconds
        self.health = health
        self.polling = False
        self._stream: AsyncChangeStream[Document] | None = None
        self._resume_token: Any = None

    async def open(self) -> None:
        """Open the change stream, or settle for polling when the server has none; any other failure
        to open it is raised (the leader steps down and tries again)."""
        try:
            self._stream = await sync_jobs.watch_job_edits(self.db)
            self._resume_token = self._stream.resume_token
            log.info("change_feed_started", mode="change_stream")
        except PyMongoError as error:
            if not no_change_streams(error):
                raise
            self.polling = True
            log.warning("change_feed_started", mode="polling", poll_seconds=self.poll_seconds, reason=str(error)[:200])

    async def run(self) -> None:
        try:
            if self.polling:
                await self._poll_forever()
            else:
                await self._stream_forever()
        finally:
            if self._stream is not None:
                await self._stream.close()

    async def _stream_forever(self) -> None:
        needs_resync = False
        while True:
            try:
                if self._stream is None:
                    self._stream = await sync_jobs.watch_job_edits(self.db, resume_after=self._resume_token)
                    self.health.succeeded()
                    metrics.change_stream_reconnects_total.inc()
                    log.info("change_feed_resumed", resynced=needs_resync)
                if needs_resync:  # the stream could not resume: changes may have been lost meanwhile
                    await self.resync()
                    needs_resync = False
                async for change in paced_changes(self._stream):
                    await self._apply(change)
                    self._resume_token = self._stream.resume_token
                # The stream ended without an error (invalidated, e.g. the database was dropped): its token
                # cannot resume it, so open a fresh one and re-read the jobs instead of spinning on a dead cursor.
                log.warning("change_feed_ended")
                await self._drop_stream()
                self._resume_token = None
                needs_resync = True
                await asyncio.sleep(DB_RETRY_SECONDS)
            except OperationFailure as error:
                log.warning("change_feed_resume_failed", error=str(error)[:200])
                await self._drop_stream()
                self._resume_token = None
                needs_resync = True
                await asyncio.sleep(DB_RETRY_SECONDS)
            except PyMongoError as error:
                self.health.failed(error)
                await self._drop_stream()
                await asyncio.sleep(DB_RETRY_SECONDS)

    async def _drop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._resume_token = stream.resume_token or self._resume_token
            with contextlib.suppress(PyMongoError):
                await stream.close()

    async def _apply(self, change: Document) -> None:
        operation = change["operationType"]
        job_id = change["documentKey"]["_id"]
        if operation == "delete":
            self.leadership.job_removed(job_id)
            return
        doc = change.get("fullDocument") or await sync_jobs.find_job_doc(self.db, job_id)
        if doc is None:
            self.leadership.job_removed(job_id)
        else:
            self.leadership.job_changed(doc)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.resync()
                self.health.succeeded()
            except PyMongoError as error:
                self.health.failed(error)

    async def resync(self) -> None:
        """Compare every enabled job's version with the leader's."""
        versions = await sync_jobs.enabled_job_versions(self.db)
        known = self.leadership.planned_versions()
        for job_id in [job_id for job_id in known if job_id not in versions]:
            self.leadership.job_removed(job_id)
        for job_id, version in versions.items():
            if known.get(job_id) != version:
                doc = await sync_jobs.find_job_doc(self.db, job_id)
                if doc is not None:
                    self.leadership.job_changed(doc)
