"""The `stack` fixture: one `syncjobs up` per test, started and stopped the one way (tests/fixtures/syncjobs_up.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.syncjobs_up import UpStack, running_up


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[UpStack]:
    with running_up(tmp_path) as running:
        yield running
