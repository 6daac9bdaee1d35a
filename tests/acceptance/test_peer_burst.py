"""bench/peer_burst.py runs end to end at a tiny scale, so it cannot rot: each variant once, five jobs, on
fresh servers of its own (most of the wall time is waiting for the due second, not work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.peer_burst import measure, table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
JOBS = 5


@pytest.mark.parametrize(("variant", "phase"), [("syncjobs-1", "first"), ("syncjobs-2", "steady")])
def test_syncjobs_runs_every_job_once(variant: str, phase: str, tmp_path: Path) -> None:
    row = measure(variant, phase, JOBS, tmp_path, raw_seconds=0)

    assert (row.executed, row.double, row.lost, row.copied) == (JOBS, 0, 0, JOBS)
    assert row.drain > 0 and row.cpu["executors"] > 0  # the real executor ran, in the fork server's children
    assert row.counters["writes"] >= 3 * JOBS  # claim, outcome on the run, outcome on the job, per run


def test_apscheduler_runs_the_same_body_and_the_table_compares(tmp_path: Path) -> None:
    one = measure("apscheduler-1", "first", JOBS, tmp_path, raw_seconds=0)
    two = measure("apscheduler-2", "steady", JOBS, tmp_path, raw_seconds=0)

    assert (one.executed, one.double, one.lost, one.copied) == (JOBS, 0, 0, JOBS)
    assert (two.executed, two.lost, two.copied) == (JOBS, 0, JOBS)
    assert two.double <= JOBS  # each process runs a job's fire at most once; how many overlap is a race
    lines = table([one, two]).splitlines()
    assert "/ APScheduler 1 process" in lines[0]
    cells = lines[2].split(" | ")
    assert cells[7] == "1.00"  # the ratio's base against itself
    assert cells[10:12] == ["-", "-"]  # no fork server, no executor children: its jobs run in its threads
