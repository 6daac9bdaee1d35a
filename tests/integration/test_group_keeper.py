"""The keeper of cold executor groups: a worker that dies leaves no group it registered; one that stops on
its own (`stop`) or unregistered a group leaves it alone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from syncjobs.worker.group_keeper import GroupKeeper

from tests.fixtures.eventually import eventually


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes in sessions of their own (as cold executors are), each with a child in its group."""
    started: list[subprocess.Popen[bytes]] = []
    child = "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    script = f"import subprocess, sys, time; {child}; time.sleep(60)"
    for _ in range(3):
        started.append(subprocess.Popen([sys.executable, "-c", script], start_new_session=True))
    yield started
    for process in started:
        with_group_killed(process.pid)
        process.wait()


def with_group_killed(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except ProcessLookupError:
        pass


async def test_a_dead_workers_registered_groups_are_killed_and_the_rest_left(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    keeper = GroupKeeper()
    registered, unregistered, never = sleepers
    keeper.add(registered.pid)
    keeper.add(unregistered.pid)
    keeper.remove(unregistered.pid)
    assert keeper._process is not None and keeper._write is not None
    os.close(keeper._write)  # what the worker's death does to the pipe: end of file, no `stop`
    assert keeper._process.wait(10) == 0
    await eventually(lambda: _group_gone(registered))
    assert not await _group_gone(unregistered) and not await _group_gone(never)


async def test_a_worker_that_stops_on_its_own_leaves_its_groups_alone(sleepers: list[subprocess.Popen[bytes]]) -> None:
    keeper = GroupKeeper()
    for process in sleepers:
        keeper.add(process.pid)
    keeper.close()
    assert not any([await _group_gone(process) for process in sleepers])


async def _group_gone(leader: subprocess.Popen[bytes]) -> bool:
    """Nothing left of the leader's group (the leader, our child, reaped first: a zombie is in its group)."""
    leader.poll()
    try:
        os.killpg(leader.pid, 0)
    except ProcessLookupError:
        return True
    return False
