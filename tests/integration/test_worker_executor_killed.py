"""An executor killed by a signal: its run says so (not its last log line) and keeps the stderr tail."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from syncjobs.worker.executor_process import killed_error, oom_kill_count, run_executor

SELF_KILL = (
    "import os, signal, sys\n"
    'print(\'{"event": "run_started"}\', file=sys.stderr, flush=True)\n'
    "os.kill(os.getpid(), signal.SIGNAME)\n"
)


async def test_a_sigkilled_executor_run_says_it_was_killed_and_keeps_stderr() -> None:
    argv = [sys.executable, "-c", SELF_KILL.replace("SIGNAME", "SIGKILL")]
    outcome = await run_executor(argv, dict(os.environ), 60, asyncio.Event())
    assert (outcome.status, outcome.exit_code) == ("failed", -9)
    assert outcome.error in ("executor killed by signal 9 (SIGKILL)", killed_error(-9, 0, 1))
    assert outcome.stderr_tail is not None and "run_started" in outcome.stderr_tail


async def test_a_sigterm_names_its_signal() -> None:
    outcome = await run_executor(
        [sys.executable, "-c", SELF_KILL.replace("SIGNAME", "SIGTERM")], dict(os.environ), 60, asyncio.Event()
    )
    assert outcome.error == "executor killed by signal 15 (SIGTERM)"


def test_out_of_memory_only_when_the_oom_killer_ran_meanwhile() -> None:
    assert killed_error(-9, 3, 4) == "out of memory: executor killed by signal 9 (SIGKILL) (the kernel's OOM killer)"
    assert killed_error(-9, 3, 3) == "executor killed by signal 9 (SIGKILL)"
    assert killed_error(-9, None, None) == "executor killed by signal 9 (SIGKILL)"
    assert killed_error(1, 0, 1) is None


def test_oom_kill_count_reads_cgroup_v2_and_v1(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job.slice/worker\n")
    (tmp_path / "job.slice" / "worker").mkdir(parents=True)
    (tmp_path / "job.slice" / "worker" / "memory.events").write_text("low 0\nhigh 0\noom 2\noom_kill 2\n")
    assert oom_kill_count(proc, tmp_path) == 2
    proc.write_text("4:memory:/not/visible/here\n0::/\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")
    assert oom_kill_count(proc, tmp_path) == 7
    assert oom_kill_count(tmp_path / "missing", tmp_path) is None
