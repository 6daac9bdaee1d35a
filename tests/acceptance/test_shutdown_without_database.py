"""`syncjobs api` and `syncjobs worker` stop within 2 s of SIGTERM even when their database is gone:
shutdown never waits on server selection (issue 10)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from syncjobs.shared.embedded import EmbeddedServer, free_port, start_embedded
from syncjobs.shared.models import SyncJob, from_document
from syncjobs.shared.mongo import connect, ensure_indexes
from syncjobs.shared.store import job_runs

from tests.fixtures.eventually import eventually, eventually_blocking
from tests.fixtures.security import security_env
from tests.fixtures.worker_jobs import FAKE_EXECUTOR, file_written, make_job, process_gone

pytestmark = pytest.mark.slow
STOP_WITHIN_SECONDS = 2.0


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A database this test kills."""
    server = start_embedded(tmp_path / "data", port=free_port())
    try:
        yield server
    finally:
        server.stop()
        # A driver socket to the server this test killed can outlive its client; finalised here, not in
        # whichever later test the garbage collector happens to run in (where filterwarnings=error fails it).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _start(command: str, server: EmbeddedServer, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    env |= security_env() | {"SYNCJOBS_MONGODB_URI": server.uri, "SYNCJOBS_DATABASE": "shutdown", **extra}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-P", "-m", "syncjobs", command], env=env, stdout=out, stderr=out)


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, within: float = 60.0) -> None:
    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        return condition()

    eventually_blocking(ready, "ready", within=within, every=0.1)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:  # a 503 before the database answers: close its connection
        error.close()
        return False
    except OSError:
        return False


def _kill_database(server: EmbeddedServer) -> None:
    server.process.kill()
    server.process.wait()


def _seconds_to_exit_on_sigterm(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return time.monotonic() - started


def test_the_api_stops_within_2s_without_its_database(own_server: EmbeddedServer, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    api = _start("api", own_server, log, SYNCJOBS_API_PORT=str(port), SYNCJOBS_API_HOST="127.0.0.1")
    _wait_for(lambda: _healthy(port), api, log)
    _kill_database(own_server)
    assert not _healthy(port)  # a health check now waits on server selection and answers 503
    elapsed = _seconds_to_exit_on_sigterm(api)
    assert api.returncode == 0, log.read_text()[-2000:]
    assert elapsed < STOP_WITHIN_SECONDS, f"the api took {elapsed:.1f}s to stop"


def test_the_api_stops_within_2s_with_a_request_waiting_on_the_dead_database(
    own_server: EmbeddedServer, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    api = _start("api", own_server, log, SYNCJOBS_API_PORT=str(port), SYNCJOBS_API_HOST="127.0.0.1")
    _wait_for(lambda: _healthy(port), api, log)
    _kill_database(own_server)
    waiting = subprocess.Popen(  # a client whose request now waits on server selection
        [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz')"],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # let the request reach the handler; nothing observable marks that moment
        elapsed = _seconds_to_exit_on_sigterm(api)
    finally:
        waiting.kill()
        waiting.wait()
    assert elapsed < STOP_WITHIN_SECONDS, f"the api took {elapsed:.1f}s to stop"


@pytest.mark.parametrize("role", ["leader", "standby"])
def test_a_worker_stops_within_2s_without_its_database(own_server: EmbeddedServer, tmp_path: Path, role: str) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2")}
    workers = {
        name: _start(
            "worker",
            own_server,
            log,
            SYNCJOBS_WORKER_ID=name,
            SYNCJOBS_LEASE_TTL_SECONDS="30",
            SYNCJOBS_RUN_LEASE_SECONDS="30",
        )
        for name, log in logs.items()
    }
    try:
        for name, log in logs.items():
            _wait_for(
                lambda log=log: "lease_acquired" in log.read_text() or "standing_by" in log.read_text(),
                workers[name],
                log,
            )
        leader = next(name for name, log in logs.items() if "lease_acquired" in log.read_text())
        name = leader if role == "leader" else next(n for n in workers if n != leader)
        _kill_database(own_server)
        time.sleep(1.5)  # the worker is now inside a call waiting on server selection
        elapsed = _seconds_to_exit_on_sigterm(workers[name])
        assert workers[name].returncode == 0, logs[name].read_text()[-2000:]
        assert elapsed < STOP_WITHIN_SECONDS, (
            f"the {role} took {elapsed:.1f}s to stop: {logs[name].read_text()[-1500:]}"
        )
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_a_leader_running_an_executor_stops_within_2s_without_its_database(
    own_server: EmbeddedServer, tmp_path: Path
) -> None:
    """Its run cannot be recorded any more: the executor is killed at once and the next leader marks the
    run lost, rather than the worker waiting out its grace and retrying writes until its lease lapses."""
    client = connect(own_server.uri)
    db = client["shutdown"]
    pids_file = tmp_path / "pids"
    log = tmp_path / "w1.log"
    environment = {
        "SYNCJOBS_LEASE_TTL_SECONDS": "30",
        "SYNCJOBS_RUN_LEASE_SECONDS": "30",
        "SYNCJOBS_EXECUTOR_COMMAND": " ".join(FAKE_EXECUTOR),
    }
    try:
        await ensure_indexes(db)
        job = await make_job(db, f"hang:{pids_file}", "0 0 1 1 *", datetime.now(UTC))
        worker = _start("worker", own_server, log, SYNCJOBS_WORKER_ID="w1", **environment)
        try:
            await eventually(lambda: _logged(log, "leader_ready"))
            await job_runs.create_manual_run(db, from_document(SyncJob, job), datetime.now(UTC))
            await eventually(lambda: file_written(pids_file))  # the executor runs (it read its job first)
            executor_pid = int(pids_file.read_text().split()[0])
            _kill_database(own_server)
            elapsed = await asyncio.to_thread(_seconds_to_exit_on_sigterm, worker)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    finally:
        await client.close()
    assert worker.returncode == 0, log.read_text()[-2000:]
    assert elapsed < STOP_WITHIN_SECONDS, f"the leader took {elapsed:.1f}s to stop: {log.read_text()[-1500:]}"
    assert await process_gone(executor_pid)


async def _logged(log: Path, event: str) -> bool:
    return event in log.read_text()  # noqa: ASYNC240 - a small log file in a test probe
