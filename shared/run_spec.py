"""What one run needs to know, handed by the worker to the executor it starts: the run, its job, the job's
data source and destination as stored (secrets sealed: the executor opens them), and who the control
server is (its addresses and process ids), which the executor must refuse to connect to.

The worker has read the job to claim the run; with the spec in `SYNCJOBS_RUN_SPEC` a full sync reads
nothing from the control database and opens no connection to it (an executor per run in a burst of
1,000 runs: 1,000 connections, handshakes and reads fewer). `syncjobs exec --run-id` by hand, or an
executor started without a spec, reads the same facts itself (`read_run_spec`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bson import ObjectId, json_util
from bson.json_util import JSONMode, JSONOptions
from syncjobs.shared.connection_rules import ControlCluster
from syncjobs.shared.models import SyncJob
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.secrets import open_config
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import data_sources, destinations, job_runs, sync_jobs

RUN_SPEC_ENV = "SYNCJOBS_RUN_SPEC"
_JSON = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True)


class RunSpecError(ValueError):
    """`SYNCJOBS_RUN_SPEC` is not a spec of this run."""


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

    def to_json(self) -> str:
        return json_util.dumps(
            {
                "runId": self.run_id,
                "job": self.job.model_dump(mode="json"),
                "source": self.source,
                "destination": self.destination,
                "controlAddresses": sorted([host, port] for host, port in self.control_addresses),
                "controlProcessIds": sorted(self.control_process_ids),
            },
            json_options=_JSON,
        )

    @classmethod
    def from_json(cls, text: str, run_id: ObjectId) -> RunSpec:
        """The spec in `text`, which must be `run_id`'s."""
        try:
            raw: dict[str, Any] = json_util.loads(text, json_options=_JSON)
            spec = cls(
                raw["runId"],
                SyncJob.model_validate(raw["job"]),
                raw["source"],
                raw["destination"],
                frozenset((str(host), int(port)) for host, port in raw["controlAddresses"]),
                frozenset(str(pid) for pid in raw["controlProcessIds"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise RunSpecError(f"{RUN_SPEC_ENV} is not a run spec: {exc}") from None
        if spec.run_id != run_id:
            raise RunSpecError(f"{RUN_SPEC_ENV} is the spec of run {spec.run_id}, not of {run_id}")
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
