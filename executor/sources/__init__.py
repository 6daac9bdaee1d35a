"""One interface over every kind of data source, so the sync algorithm never knows which it reads."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Record = dict[str, Any]


class SourceError(Exception):
    """The source cannot be listed or read; the message is safe to show (no secrets)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Records read together, and the cursor that is safe to save once they (and all before) are written.

    `cursor` is None when this batch does not complete a resumable position (a Singer tap that has
    not yet sent STATE, an HTTP API before its last page): nothing is saved after it.
    `skipped_no_cursor` counts documents an incremental read left out for lacking the cursor field.
    """

    records: list[Record]
    cursor: Any | None = None
    skipped_no_cursor: int = 0


class Source(Protocol):
    """A data source: named entities, each read in batches, from the start or past a saved cursor."""

    async def list_entities(self) -> list[str]:
        """Names of the entities (collections, endpoints, streams) this source offers."""
        ...

    def read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        """Yield the entity's records, each with an `_id`: all of them for a full read, or those past
        `cursor` (all when None) for an incremental one, whose batches then carry the cursor reached."""
        ...

    async def close(self) -> None:
        """Release connections and processes."""
        ...


@dataclass(frozen=True, slots=True)
class IncrementalOptions:
    """How a job reads incrementally: `lookback_seconds` re-read behind the cursor (late arrivals);
    `include_missing_cursor` re-reads the documents without the cursor field each run."""

    lookback_seconds: float = 0
    include_missing_cursor: bool = False


def build_source(
    kind: str,
    config: Mapping[str, Any],
    *,
    batch_size: int,
    egress: Any = None,
    mongo_client: Any = None,
    control: frozenset[tuple[str, int]] = frozenset(),
    incremental: IncrementalOptions | None = None,
) -> Source:
    """The source for a `data_sources` document's kind and (unredacted) config; `mongo_client`, if given,
    is the caller's client for a `mongodb` source's uri."""
    if kind == "mongodb":
        from syncjobs.executor.sources.mongodb import MongoSource

        return MongoSource(config, batch_size=batch_size, client=mongo_client, options=incremental)
    if kind == "http":
        from syncjobs.executor.sources.http import HttpSource

        return HttpSource(config, egress=egress)
    if kind == "command":
        from syncjobs.executor.sources.command import CommandSource

        return CommandSource(config, batch_size=batch_size, egress=egress, control=control)
    raise SourceError(f"unknown data source kind {kind!r}")
