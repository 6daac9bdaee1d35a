"""Shared set-up for the worker benchmarks: a throwaway SecantusDB, jobs inserted in bulk, worker
processes whose JSON logs are read back. Benchmarks print figures; they assert nothing."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient
from syncjobs.shared.embedded import EmbeddedServer, start_embedded
from syncjobs.shared.secrets import install_keys, new_key
from syncjobs.shared.store import sync_jobs

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "bench"
BENCH_SECRET_KEY = new_key()
install_keys([BENCH_SECRET_KEY])  # the bench writes sources itself, sealed as the api would


@contextmanager
def server() -> Iterator[EmbeddedServer]:
    with tempfile.TemporaryDirectory() as storage:
        running = start_embedded(Path(storage) / "data")
        try:
            yield running
        finally:
            running.stop()


def job_docs(
    count: int, cron: str, next_run_at: datetime, *, workspaces: int = 1, **fields: Any
) -> list[dict[str, Any]]:
    """Job documents shaped as the API stores them (references are not needed by the worker), spread
    round-robin over `workspaces` workspaces."""
    now = datetime.now(UTC)
    workspace_ids = [ObjectId() for _ in range(workspaces)]
    return [
        {
            "_id": ObjectId(),
            "workspaceId": workspace_ids[i % workspaces],
            "name": f"bench-{i}",
            "dataSourceId": ObjectId(),
            "destinationDatabaseId": ObjectId(),
            "schedule": {"cron": cron, "timezone": "UTC"},
            "syncMode": "full",
            "entities": {"include": None, "exclude": []},
            "enabled": True,
            "overlap": "skip",
            "timeoutSeconds": 600,
            "retry": {"maxAttempts": 1, "backoffSeconds": 30},
            "catchUpFires": 1,
            "nextRunAt": next_run_at,
            **sync_jobs.new_job_state(now),
            **fields,
        }
        for i in range(count)
    ]


def client(uri: str) -> MongoClient[dict[str, Any]]:
    return MongoClient(uri, tz_aware=True)


def package_view(commit: str, directory: Path) -> Path:
    """Commit `commit` of this repository laid out as the installed package (`<view>/syncjobs/api`, ...),
    for PYTHONPATH: workers of an older tree run beside this one's on the same machine and server."""
    source, view = directory / "src", directory / "view"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    (view / "syncjobs").mkdir(parents=True)
    for entry in (source / "syncjobs").glob("*.py"):
        (view / "syncjobs" / entry.name).symlink_to(entry)
    for folder in ("api", "worker", "executor", "shared"):
        (view / "syncjobs" / folder).symlink_to(source / folder)
    return view


def process_env(uri: str, **env: str) -> dict[str, str]:
    """The environment of a bench's worker or executor process: ours without SYNCJOBS_*, then the bench's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")} | {
        "SYNCJOBS_SECRET_KEYS": BENCH_SECRET_KEY,
        # The bench's sources and destinations live on its own server, on loopback, as with `syncjobs up`.
        "SYNCJOBS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "SYNCJOBS_CONTROL_CLUSTER_DATABASES": "*",
        "SYNCJOBS_MONGODB_URI": uri,
        "SYNCJOBS_DATABASE": DATABASE,
        **env,
    }


class WorkerProcess:
    """`syncjobs worker` with JSON logs in a file, which the benchmark reads back."""

    def __init__(self, uri: str, worker_id: str, log_dir: Path, **env: str) -> None:
        self.worker_id = worker_id
        self.log_path = log_dir / f"{worker_id}.log"
        full_env = process_env(uri, SYNCJOBS_WORKER_ID=worker_id, **env)
        self.started_at = time.time()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "syncjobs", "worker"], env=full_env, cwd=ROOT, stdout=log, stderr=log
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                found.append(event)
        return found

    def wait_for(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.events(name):
                return found[0]
            time.sleep(0.02)
        raise TimeoutError(f"{self.worker_id} never logged {name}")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def log_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.3f}s  p99 {p99:.3f}s  max {ordered[-1]:.3f}s  (n={len(ordered)})"


def next_whole_second(after: datetime, lead: timedelta) -> datetime:
    instant = after + lead
    return instant.replace(microsecond=0) + timedelta(seconds=1)


class WebhookReceiver:
    """A local HTTP receiver for run events (a thread): counts each event name, notes the last arrival."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last_at: datetime | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.counts[self.headers.get("X-Syncjobs-Event", "?")] += 1
                receiver.last_at = datetime.now(UTC)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the bench prints its own report

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook receiver", daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
