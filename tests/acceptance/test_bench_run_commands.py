"""bench/run_commands.py runs end to end at a tiny scale, so it cannot rot: every run of its burst ends,
and the worker's inventory names the reads each run makes for its spec."""

from __future__ import annotations

import os

import pytest

from bench.run_commands import probe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_the_probe_counts_a_bursts_commands_per_run(capsys: pytest.CaptureFixture[str]) -> None:
    environment = dict(os.environ)

    await probe(jobs=5, concurrency=2)

    printed = capsys.readouterr().out
    assert "5 jobs, 2 slots, hosted executors: {'succeeded': 5}" in printed
    for collection in ("syncjobs", "data_sources", "destinations"):
        assert f"| find | {collection} | 1.00 | 1.00 |" in printed
    assert dict(os.environ) == environment  # the probe gives the process its environment back
