"""bench/executor_sync.py runs end to end at a tiny scale, so it cannot rot: its own assertions check
every case's counts (full, no-change re-sync, 1% edited by full, cursor incremental and changeStream)."""

from __future__ import annotations

import pytest

from bench.executor_sync import bench

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_every_case_of_the_executor_bench_syncs_what_it_should(
    mongo_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await bench(mongo_uri, 200, 50)

    printed = capsys.readouterr().out
    assert "changeStream, 2 edited" in printed and "incremental (cursor), 2 edited" in printed
    assert "changeStream run / its edits applied one by one" in printed
