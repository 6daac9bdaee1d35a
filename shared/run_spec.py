"""What one run needs to know, handed by the worker to the executor it starts: the run, its job, the job's
data source and destination, and who the control server is (its addresses and process ids), which the
executor must refuse to connect to.

The worker has read the job to claim the run; it reads the source and destination (secrets sealed),
opens them (`opened`) and writes the spec as the first line of the executor's stdin (the run channel,
`shared.executor_protocol`): the executor holds no key and no control client. `syncjobs exec --run-id`
by hand reads the same facts (`read_run_spec`) and hands them over the same way. What the run needs of
the control database afterwards (cursors, progress) its parent serves through `RunControlAccess`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from syncjobs.shared.clock import utc_now
from syncjobs.shared.connection_rules import ControlCluster
from syncjobs.shared.executor_protocol import ChannelError, dumps, loads
from syncjobs.shared.models import SyncJob
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.secret_fields import secret_values
from syncjobs.shared.secrets import open_config
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import data_sources, destinations, job_runs, sync_jobs, sync_state


class RunSpecError(ValueError):
    """What the executor was handed is not a spec of its run."""


@dataclass(frozen=True)
class RunSpec:
    run_id: ObjectId
    job: SyncJob
    source: Document
    destination: Document
    control_addresses: frozenset[tuple[str, int]]
    control_process_ids: frozenset[str]

    def opened_source(self) -> Document:
        """`source` with its secrets in clear, for the executor only: never serialise it."""
        return _opened(self.source)

    def opened_destination(self) -> Document:
        """`destination` with its secrets in clear, for the executor only: never serialise it."""
        return _opened(self.destination)

    def control_cluster(self, settings: Settings) -> ControlCluster:
        return ControlCluster(
            settings.database, self.control_addresses, self.control_process_ids, settings.control_cluster_databases
        )

    def opened(self) -> RunSpec:
        """This spec with its source's and destination's secrets in clear: for the executor's stdin only."""
        return RunSpec(
            self.run_id,
            self.job,
            self.opened_source(),
            self.opened_destination(),
            self.control_addresses,
            self.control_process_ids,
        )

    def secrets(self) -> list[str]:
        """The clear secrets of an opened spec, longest first: what no error text of its run may echo."""
        return secret_values([self.source.get("config"), self.destination.get("config")])

    def to_document(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "job": self.job.model_dump(mode="json"),
            "source": self.source,
            "destination": self.destination,
            "controlAddresses": sorted([host, port] for host, port in self.control_addresses),
            "controlProcessIds": sorted(self.control_process_ids),
        }

    def to_line(self) -> bytes:
        """The run channel's first line: this spec, opened (for the executor's stdin only, never stored)."""
        return dumps({"spec": self.opened().to_document()})

    @classmethod
    def from_line(cls, line: bytes, run_id: ObjectId) -> RunSpec:
        """The spec on the run channel's first line, which must be `run_id`'s."""
        try:
            message = loads(line)
        except ChannelError as exc:
            raise RunSpecError(f"not a run spec: {exc}") from None
        if not isinstance(message, dict) or "spec" not in message:
            raise RunSpecError("the run channel's first line is not the run's spec")
        return cls.from_document(message["spec"], run_id)

    @classmethod
    def from_document(cls, raw: Any, run_id: ObjectId) -> RunSpec:
        """The spec in `raw`, which must be `run_id`'s."""
        try:
            spec = cls(
                raw["runId"],
                SyncJob.model_validate(raw["job"]),
                raw["source"],
                raw["destination"],
                frozenset((str(host), int(port)) for host, port in raw["controlAddresses"]),
                frozenset(str(pid) for pid in raw["controlProcessIds"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise RunSpecError(f"not a run spec: {exc}") from None
        if spec.run_id != run_id:
            raise RunSpecError(f"the spec handed over is the spec of run {spec.run_id}, not of {run_id}")
        return spec


def _opened(connection: Document) -> Document:
    return {**connection, "config": open_config(connection.get("config") or {})}


async def spec_for_claimed_run(db: Database, run_id: ObjectId, job: SyncJob, control: ControlCluster) -> RunSpec:
    """The spec of a run whose job the caller has read: two reads (the source and the destination), side
    by side."""
    source, destination = await asyncio.gather(
        data_sources.store.get_sealed(db, ObjectId(job.data_source_id)),
        destinations.store.get_sealed(db, ObjectId(job.destination_database_id)),
    )
    return RunSpec(run_id, job, source, destination, control.addresses, control.process_ids)


async def read_run_spec(db: Database, run_id: ObjectId, control: ControlCluster) -> RunSpec:
    """The spec of any run, read from the control database (NotFound when the run or what it names is gone)."""
    run = await job_runs.get_run(db, run_id)
    job = await sync_jobs.get_job(db, ObjectId(run.job_id))
    return await spec_for_claimed_run(db, run_id, job, control)


class RunControlAccess:
    """What one run may do in the control database, served by its executor's parent over the run channel
    (`shared.executor_protocol.answer`): its own job's cursors and its own run's progress note, nothing else."""

    def __init__(self, db: Database, run_id: ObjectId, job_id: ObjectId, now: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._run_id = run_id
        self._job_id = job_id
        self._now = now

    async def load_cursor(self, entity: str) -> Any | None:
        return await sync_state.load_cursor(self._db, self._job_id, entity)

    async def save_cursor(self, entity: str, cursor: Any) -> None:
        await sync_state.save_cursor(self._db, self._job_id, entity, cursor, self._now())

    async def record_progress(self, progress: dict[str, Any]) -> None:
        await job_runs.record_progress(self._db, self._run_id, {**progress, "updatedAt": self._now()})
