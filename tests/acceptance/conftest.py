"""Fixtures of the acceptance tests: one `syncjobs up` per test (`stack`) and real worker replicas (`workers`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
