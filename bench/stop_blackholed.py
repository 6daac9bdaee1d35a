"""Stop in 2 s: how long `syncjobs api` and `syncjobs worker` (the leader, with an executor running, and a
standby) take to exit after SIGTERM once their database is gone, 20 times in a row each way.

Two ways of losing the database: `killed` (SIGKILL: connections are refused at once) and `cut` (a TCP
proxy in front of it stops forwarding without closing anything, as a partition does: every call hangs).

    python -m bench.stop_blackholed [--rounds 20] [--modes killed,cut] [--roles api,leader,standby]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from syncjobs.shared.embedded import EmbeddedServer, free_port, start_embedded

from bench.worker_support import DATABASE, ROOT, WorkerProcess, client, job_docs, process_env
from tests.fixtures.tcp_proxy import TcpProxy
from tests.fixtures.worker_jobs import FAKE_EXECUTOR

BUDGET_SECONDS = 2.0


@contextmanager
def database() -> Iterator[tuple[EmbeddedServer, TcpProxy]]:
    """A fresh server and a proxy in front of it; the processes under test go through the proxy."""
    with tempfile.TemporaryDirectory() as storage:
        server = start_embedded(Path(storage) / "data", port=free_port())
        proxy = TcpProxy(server.port).start()
        try:
            yield server, proxy
        finally:
            proxy.stop()
            server.stop()


def lose(server: EmbeddedServer, proxy: TcpProxy, mode: str) -> None:
    if mode == "killed":
        server.process.kill()
        server.process.wait()
    else:
        proxy.cut()


def seconds_to_exit(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.terminate()
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return time.monotonic() - started


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        error.close()
        return False
    except OSError:
        return False


def stop_api(mode: str, logs: Path) -> float:
    with database() as (server, proxy):
        port = free_port()
        env = process_env(proxy.uri(), SYNCJOBS_API_PORT=str(port), SYNCJOBS_API_HOST="127.0.0.1")
        with open(logs / "api.log", "ab") as log:
            api = subprocess.Popen(
                [sys.executable, "-P", "-m", "syncjobs", "api"], env=env, cwd=ROOT, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while not healthy(port):
            if time.monotonic() > deadline or api.poll() is not None:
                api.kill()
                raise RuntimeError("the api never became healthy")
            time.sleep(0.1)
        lose(server, proxy, mode)
        time.sleep(0.5)  # a probe or a request would now be waiting on the database
        return seconds_to_exit(api)


def stop_worker(mode: str, role: str, logs: Path, round_number: int) -> float:
    """One round; each round's workers log to files of their own (the bench reads its events back)."""
    with database() as (server, proxy), client(server.uri) as mongo:
        mongo[DATABASE].syncjobs.insert_many(job_docs(1, "* * * * * *", datetime.now(UTC), name="sleep:60"))
        # debug: the leader's `run_started` (per run, at debug) says when its executor runs
        env = {"SYNCJOBS_EXECUTOR_COMMAND": " ".join(FAKE_EXECUTOR), "SYNCJOBS_LOG_LEVEL": "debug"}
        leader = WorkerProcess(proxy.uri(), f"{mode}-{role}-{round_number}-leader", logs, **env)
        leader.wait_for("leader_ready")
        standby = WorkerProcess(proxy.uri(), f"{mode}-{role}-{round_number}-standby", logs, **env)
        standby.wait_for("standing_by")
        leader.wait_for("run_started")
        lose(server, proxy, mode)
        time.sleep(1.5)  # the worker is now inside calls waiting on the database
        under_test, other = (leader, standby) if role == "leader" else (standby, leader)
        try:
            return seconds_to_exit(under_test.process)
        finally:
            other.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--modes", default="killed,cut")
    parser.add_argument("--roles", default="api,leader,standby")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        logs = Path(directory)
        for mode in args.modes.split(","):
            for role in args.roles.split(","):
                times = [
                    stop_api(mode, logs) if role == "api" else stop_worker(mode, role, logs, round_number)
                    for round_number in range(args.rounds)
                ]
                over = sum(seconds > BUDGET_SECONDS for seconds in times)
                print(
                    f"{role:8s} database {mode:6s} n={len(times)}  median {statistics.median(times):5.2f}s  "
                    f"max {max(times):5.2f}s  over {BUDGET_SECONDS:.0f}s: {over}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
