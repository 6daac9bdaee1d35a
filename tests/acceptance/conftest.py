"""Real worker processes for the acceptance tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_worker_processes import Workers


@pytest.fixture
def workers(mongo_uri: str, db_name: str, tmp_path: Path) -> Iterator[Workers]:
    """Replicas with a 2-second lease, killed when the test ends."""
    running = Workers(mongo_uri, db_name, tmp_path, ttl_seconds=2)
    try:
        yield running
    finally:
        running.stop_all()
