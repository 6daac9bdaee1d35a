"""Fixtures of the acceptance tests: one `syncjobs up` per test (`stack`), real worker replicas (`workers`) and
a warm executor's fork server (`fork_server`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from syncjobs.worker.fork_server import ForkServer

from tests.fixtures.syncjobs_up import UpStack, running_up
from tests.fixtures.worker_processes import Workers


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[UpStack]:
    with running_up(tmp_path) as running:
        yield running


@pytest.fixture
def workers(mongo_uri: str, db_name: str, tmp_path: Path) -> Iterator[Workers]:
    """Replicas with a 2-second lease, killed when the test ends."""
    running = Workers(mongo_uri, db_name, tmp_path, ttl_seconds=2)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def fork_server() -> AsyncIterator[ForkServer]:
    """A fork server whose environment holds ONLY_IN_THE_FORK_SERVER, which no run's tap may see (the fork
    server's and the workspace hosts' tests both check it)."""
    server = ForkServer({**os.environ, "ONLY_IN_THE_FORK_SERVER": "1"})
    try:
        yield server
    finally:
        await server.close()
