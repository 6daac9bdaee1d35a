"""`syncjobs up` as a user runs it: embedded database, api and worker, then inspection with mongosh."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pymongo import MongoClient
from syncjobs.shared.embedded import free_port

from syncjobs.up import stop_children
from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack, running_up, up_command, up_environment

pytestmark = pytest.mark.slow


def test_up_serves_the_api_and_stops_cleanly_on_sigterm(stack: UpStack, tmp_path: Path) -> None:
    ws = f"/api/workspaces/{stack.workspace_id}"
    status, workspace = stack.request("GET", ws)
    assert status == 200 and workspace["name"] == "default"
    source, destination = stack.crm_to_warehouse()
    status, job = stack.request(
        "POST",
        f"{ws}/sync-jobs",
        {
            "name": "hourly-crm",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "0 * * * *", "timezone": "Asia/Kolkata"},
            "syncMode": "incremental",
        },
    )
    assert status == 201
    next_run = datetime.fromisoformat(str(job["nextRunAt"])).astimezone(ZoneInfo("Asia/Kolkata"))
    assert (next_run.minute, next_run.second) == (0, 0)  # on the hour in a +05:30 zone: :30 in UTC
    assert datetime.fromisoformat(str(job["nextRunAt"])).minute == 30

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0
    assert (tmp_path / "data" / "admin-token").read_text().strip() == stack.token


def test_up_with_a_database_uri_embeds_nothing_and_uses_that_database(
    tmp_path: Path, mongo_uri: str, db_name: str
) -> None:
    with running_up(
        tmp_path,
        SYNCJOBS_MONGODB_URI=mongo_uri,
        SYNCJOBS_DATABASE=db_name,
        SYNCJOBS_ADMIN_TOKEN="sjt_given-admin-token",
    ) as stack:
        assert (stack.database_uri, stack.token) == (mongo_uri, "sjt_given-admin-token")
        status, _ = stack.request("POST", "/api/workspaces", {"name": "second"})
        assert status == 201
    assert not (tmp_path / "data" / "db").exists()  # no embedded storage was made
    client = MongoClient(mongo_uri)
    try:
        names = sorted(w["name"] for w in client[db_name].workspaces.find())
    finally:
        client.close()
    assert names == ["default", "second"]


@pytest.mark.skipif(shutil.which("mongosh") is None, reason="mongosh is not installed (./scripts/test installs it)")
def test_mongosh_shows_the_lease_holder_and_the_jobs(stack: UpStack) -> None:
    ws = f"/api/workspaces/{stack.workspace_id}"
    stack.call(
        "POST",
        f"{ws}/data-sources",
        {"name": "crm", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "crm"}},
    )

    def mongosh(expression: str) -> object:
        result = subprocess.run(
            ["mongosh", stack.database_uri, "--quiet", "--eval", f"EJSON.stringify({expression})"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(result.stdout)

    locks = eventually_blocking(  # the worker takes the lease shortly after start
        lambda: mongosh('db.getSiblingDB("syncjobs").worker_locks.find().toArray()'), "a lease holder", within=60
    )
    assert isinstance(locks, list) and len(locks) == 1
    lease = locks[0]
    assert lease["_id"] == "scheduler"
    assert {"owner", "host", "pid", "fencingToken", "lockedUntil", "heartbeatAt"} <= set(lease)
    sources = mongosh('db.getSiblingDB("syncjobs").data_sources.find({}, {name: 1}).toArray()')
    assert [s["name"] for s in sources] == ["crm"]  # type: ignore[index,union-attr]


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (children of children too), from /proc."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(child) for child in (task / "children").read_text().split()}
            except OSError:
                continue
            pending += children - found
            found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc (Linux)")
def test_sigkill_of_up_leaves_no_process_of_the_stack_and_frees_the_ports(stack: UpStack) -> None:
    stack_pids = _descendants(stack.process.pid)
    assert len(stack_pids) >= 3  # the embedded database, the api and the worker
    api_port = stack.port
    database_port = int(re.search(r":(\d+)/", stack.database_uri).group(1))  # type: ignore[union-attr]
    assert not _port_free(api_port) and not _port_free(database_port)

    stack.process.send_signal(signal.SIGKILL)
    stack.process.wait(timeout=10)

    def stack_gone() -> bool:
        return not any(_alive(pid) for pid in stack_pids) and _port_free(api_port) and _port_free(database_port)

    with contextlib.suppress(AssertionError):
        eventually_blocking(stack_gone, "the stack gone", within=15, every=0.1)
    assert [pid for pid in stack_pids if _alive(pid)] == []
    assert _port_free(api_port) and _port_free(database_port)


def _stubborn_children(count: int) -> list[subprocess.Popen[bytes]]:
    """Children that ignore SIGTERM (a hung api or worker), each told to signal once it ignores it."""
    script = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)"
    )
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(count)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == b"\n"
        child.stdout.close()
    return children


def test_up_stops_children_that_ignore_sigterm_once_its_budget_is_spent() -> None:
    children = _stubborn_children(2)
    stop_children(children, budget_seconds=0.5, signals={signal.SIGUSR1})
    assert [child.returncode for child in children] == [-signal.SIGKILL, -signal.SIGKILL]


def test_a_second_stop_signal_kills_the_children_at_once() -> None:

    children = _stubborn_children(2)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # pending: read by stop_children
        started = time.monotonic()
        stop_children(children, budget_seconds=600, signals={signal.SIGUSR1})
        elapsed = time.monotonic() - started
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    assert [child.returncode for child in children] == [-signal.SIGKILL, -signal.SIGKILL]
    assert elapsed < 60  # far below the 600 s budget: the signal cut the wait short


def _database_port(stack: UpStack) -> int:
    return int(re.search(r":(\d+)/", stack.database_uri).group(1))  # type: ignore[union-attr]


def test_a_second_up_on_a_taken_port_exits_2_naming_the_port_and_prints_no_banner(
    stack: UpStack, tmp_path: Path
) -> None:
    clashes = {
        "--port": up_command(tmp_path / "other", stack.port),
        "--db-port": up_command(tmp_path / "other", free_port(), "--db-port", str(_database_port(stack))),
    }
    for flag, command in clashes.items():
        result = subprocess.run(command, env=up_environment(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        taken = stack.port if flag == "--port" else _database_port(stack)
        assert f"port {taken} is taken" in result.stderr and flag in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "syncjobs is up" not in result.stdout + result.stderr
    assert not (tmp_path / "other" / "db").exists()  # nothing was started
    assert stack.process.poll() is None and stack.call("GET", stack.ws())["name"] == "default"


def test_up_keeps_its_database_address_and_saved_sources_work_after_a_restart(tmp_path: Path) -> None:
    with running_up(tmp_path) as first:
        source, destination = first.crm_to_warehouse()
        with MongoClient(first.database_uri) as client:
            client.crm.customers.insert_many([{"_id": n, "name": f"c{n}"} for n in range(3)])
        job = first.call(
            "POST",
            first.ws("/sync-jobs"),
            {
                "name": "crm-full",
                "dataSourceId": source["id"],
                "destinationDatabaseId": destination["id"],
                "schedule": {"cron": "0 * * * *"},
            },
        )
        assert str(_database_port(first)) == (tmp_path / "data" / "db-port").read_text().strip()
        assert first.export_line == (
            f"export SYNCJOBS_API=http://localhost:{first.port} SYNCJOBS_TOKEN={first.token} "
            f"SYNCJOBS_WORKSPACE={first.workspace_id} SYNCJOBS_MONGODB_URI='{first.database_uri}'"
        )
    # restarted in the shell where the banner's export line was pasted: its own URI still embeds
    with running_up(tmp_path, SYNCJOBS_MONGODB_URI=first.database_uri) as second:
        assert second.database_uri == first.database_uri
        run = second.call("POST", second.ws(f"/sync-jobs/{job['id']}/run"))
        ended = eventually_blocking(
            lambda: _ended(second, job["id"], run["runId"]), "the run after the restart ends", within=60
        )
        assert ended["status"] == "succeeded", ended
        with MongoClient(second.database_uri) as client:
            assert client.warehouse.customers.count_documents({}) == 3


def _ended(stack: UpStack, job_id: str, run_id: str) -> dict[str, object] | None:
    runs = stack.call("GET", stack.ws(f"/sync-jobs/{job_id}/runs?limit=5"))["runs"]
    run = next(run for run in runs if run["id"] == run_id)
    return run if run["status"] not in ("pending", "running") else None


def test_up_logs_requests_at_debug_and_a_failed_run_at_warning_with_its_error(stack: UpStack) -> None:
    source, destination = stack.crm_to_warehouse()
    job = stack.call(
        "POST",
        stack.ws("/sync-jobs"),
        {
            "name": "fails",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "0 0 * * *"},
            "entities": {"include": ["no_such_collection"], "exclude": []},
        },
    )
    run = stack.call("POST", stack.ws(f"/sync-jobs/{job['id']}/run"))
    ended = eventually_blocking(lambda: _ended(stack, job["id"], run["runId"]), "the failing run ends", within=60)
    assert ended["status"] == "failed"

    def finished() -> list[dict[str, object]]:
        events = [json.loads(line) for line in stack.logs().splitlines() if line.startswith("{")]
        return [e for e in events if e.get("event") == "run_finished" and e.get("run_id") == run["runId"]]

    [logged] = eventually_blocking(finished, "the failed run in up's log", within=30)
    assert logged["level"] == "warning" and "no_such_collection" in str(logged["error"])
    assert '"http_request"' not in stack.logs()  # requests are at debug; up logs at info
