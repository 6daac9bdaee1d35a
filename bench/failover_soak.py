"""Fail-over soak: N `syncjobs worker` processes, jobs firing every second, the leader SIGKILLed again and
again, the database stopped once in the middle for a while. Then every fire that was due is accounted for.

    python -m bench.failover_soak [--workers 3] [--jobs 5] [--kills 200] [--ttl 2] [--outage 20] [--partition]

`--partition`: each worker reaches the database through a TCP proxy of its own, and instead of a SIGKILL
the leader is cut off (its proxy stops forwarding without closing a socket) for TTL + 2 s, then healed: it
rejoins as a standby, so the workers stay the same processes.

Prints fires due, double fires (a fire with two runs, or a run executed twice), lost fires (no run and no
`missed` record), stuck runs (pending/running long after their fire) and the fire lag (scheduledFor to the
executor's start) p50/p99; exits 1 on any double, lost or stuck fire. The executor is a shell script that
appends its run id to a file: cheap enough for many fires a second, and it shows double executions.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError
from syncjobs.shared.embedded import EmbeddedServer, free_port, start_embedded

from bench.worker_support import DATABASE, WorkerProcess, client, job_docs, next_whole_second, percentiles
from tests.fixtures.tcp_proxy import TcpProxy

STUCK_AFTER = timedelta(seconds=30)  # the executor takes milliseconds: a run this old not finished is stuck
SETTLE_SECONDS = 10.0  # after the last kill, before fires are counted


@dataclass
class Soak:
    uri: str
    logs: Path
    workers: int
    ttl: int
    executor: Path
    database_port: int | None = None  # set: each worker goes through a proxy of its own to this port
    processes: list[WorkerProcess] = field(default_factory=list)
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    started = 0

    def start_worker(self) -> WorkerProcess:
        self.started += 1
        env = {
            "SYNCJOBS_LEASE_TTL_SECONDS": str(self.ttl),
            "SYNCJOBS_RUN_LEASE_SECONDS": str(self.ttl),
            "SYNCJOBS_EXECUTOR_COMMAND": str(self.executor),
        }
        worker_id, uri = f"w{self.started}", self.uri
        if self.database_port is not None:
            self.proxies[worker_id] = TcpProxy(self.database_port).start()
            uri = self.proxies[worker_id].uri()
        worker = WorkerProcess(uri, worker_id, self.logs, **env)
        self.processes.append(worker)
        return worker

    def cut_off(self, worker: WorkerProcess) -> None:
        """Cut the worker off for TTL + 2 s: its lease lapses and another replica leads; then heal."""
        proxy = self.proxies[worker.worker_id]
        proxy.cut()
        time.sleep(self.ttl + 2)
        proxy.heal()

    def alive(self) -> dict[str, WorkerProcess]:
        return {w.worker_id: w for w in self.processes if w.process.poll() is None}

    def stop_all(self) -> None:
        for worker in self.processes:
            worker.stop()
        for proxy in self.proxies.values():
            proxy.stop()


def _executor_script(folder: Path) -> Path:
    script = folder / "executor.sh"
    script.write_text(f'#!/bin/sh\necho "$2" >> {folder / "executions"}\n')  # argv: --run-id ID
    script.chmod(0o755)
    return script


def _leader_that_fired(mongo: Any, alive: dict[str, WorkerProcess], timeout: float = 120.0) -> WorkerProcess:
    """The live lease holder, once its term has started a run (a kill then lands mid-term, not mid-start)."""
    db = mongo[DATABASE]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lease = db.worker_locks.find_one({"_id": "scheduler"})
            if lease is not None and lease["owner"] in alive and lease["lockedUntil"] > datetime.now(UTC):
                started = {"fencingToken": lease["fencingToken"], "startedAt": {"$ne": None}}
                if db.job_runs.find_one(started, {"_id": 1}) is not None:
                    return alive[lease["owner"]]
        except PyMongoError:
            pass
        time.sleep(0.05)
    raise TimeoutError("no leader fired within the timeout")


def _outage(server: EmbeddedServer, seconds: float) -> EmbeddedServer:
    print(f"database stopped for {seconds:g}s", flush=True)
    server.stop()
    time.sleep(seconds)
    restarted = start_embedded(server.storage_path, port=server.port)
    print("database back", flush=True)
    return restarted


@dataclass
class Tally:
    due: int
    doubles: int
    double_executions: int
    lost: list[tuple[Any, datetime]]
    stuck: int
    statuses: Counter[str]
    reasons: Counter[str]  # the error of runs that did not succeed
    lags: list[float]


def _tally(mongo: Any, jobs: list[dict[str, Any]], first: datetime, last: datetime, executions: Path) -> Tally:
    db = mongo[DATABASE]
    seconds = int((last - first).total_seconds()) + 1
    due = {(job["_id"], first + timedelta(seconds=i)) for job in jobs for i in range(seconds)}
    runs = list(db.job_runs.find({"trigger": "schedule"}))
    per_fire = Counter((run["jobId"], run["scheduledFor"], run["attempt"]) for run in runs)
    recorded = {(run["jobId"], run["scheduledFor"]) for run in runs}
    executed = Counter(line for line in executions.read_text().split() if line) if executions.exists() else Counter()
    now = datetime.now(UTC)
    stuck = [
        run
        for run in db.job_runs.find({"status": {"$in": ["pending", "running"]}})
        if now - run["createdAt"] > STUCK_AFTER
    ]
    return Tally(
        due=len(due),
        doubles=sum(1 for count in per_fire.values() if count > 1),
        double_executions=sum(1 for count in executed.values() if count > 1),
        lost=sorted(due - recorded, key=lambda fire: fire[1]),
        stuck=len(stuck),
        statuses=Counter(run["status"] for run in runs if (run["jobId"], run["scheduledFor"]) in due),
        reasons=Counter(
            _reason(run["status"], run.get("error"))
            for run in runs
            if run["status"] != "succeeded" and (run["jobId"], run["scheduledFor"]) in due
        ),
        lags=[
            (run["startedAt"] - run["scheduledFor"]).total_seconds()
            for run in runs
            if run.get("startedAt") is not None and (run["jobId"], run["scheduledFor"]) in due
        ],
    )


def _reason(status: str, error: str | None) -> str:
    return error if error and error.startswith(status) else f"{status}: {error}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="worker replicas kept running")
    parser.add_argument("--jobs", type=int, default=5, help="jobs, each firing every second")
    parser.add_argument("--kills", type=int, default=200, help="leader SIGKILLs")
    parser.add_argument("--ttl", type=int, default=2, help="SYNCJOBS_LEASE_TTL_SECONDS")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the database is stopped (0: none)")
    parser.add_argument("--max-wait", type=float, default=1.5, help="a leader lives 0..this long after firing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partition", action="store_true", help="cut the leader off instead of killing it")
    args = parser.parse_args()
    chance = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        server = start_embedded(work / "db", port=free_port())
        port = server.port if args.partition else None
        soak = Soak(server.uri, work, args.workers, args.ttl, _executor_script(work), database_port=port)
        mongo = client(server.uri)
        try:
            first = next_whole_second(datetime.now(UTC), timedelta(seconds=3))
            jobs = job_docs(args.jobs, "* * * * * *", first)
            mongo[DATABASE].syncjobs.insert_many(jobs)
            for _ in range(args.workers):
                soak.start_worker()
            for kill in range(1, args.kills + 1):
                if args.outage and kill == args.kills // 2 + 1:
                    server = _outage(server, args.outage)
                leader = _leader_that_fired(mongo, soak.alive())
                time.sleep(chance.uniform(0, args.max_wait))
                if args.partition:
                    soak.cut_off(leader)
                else:
                    leader.process.send_signal(signal.SIGKILL)
                    leader.process.wait()
                    soak.start_worker()
                if kill % 10 == 0 or kill == args.kills:
                    print(f"{kill} kills, {time.monotonic() - started:.0f}s", flush=True)
            _leader_that_fired(mongo, soak.alive())
            time.sleep(SETTLE_SECONDS)
            last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=args.ttl + 3)
            tally = _tally(mongo, jobs, first, last, work / "executions")
        finally:
            soak.stop_all()
            mongo.close()
            server.stop()
    outage = f", the database stopped once for {args.outage:g}s" if args.outage else ""
    how = "leader cuts (partitions)" if args.partition else "leader SIGKILLs"
    print(
        f"\n{args.workers} workers, {args.jobs} jobs every second, {args.kills} {how}{outage}; "
        f"{time.monotonic() - started:.0f}s"
    )
    print(f"fires due:        {tally.due}  ({dict(tally.statuses)})")
    for reason, count in tally.reasons.most_common(5):
        print(f"  {count:6d}  {reason[:120]}")
    print(f"double fires:     {tally.doubles} fires with two runs, {tally.double_executions} runs executed twice")
    print(f"lost fires:       {len(tally.lost)}" + (f"  first: {tally.lost[:3]}" if tally.lost else ""))
    print(f"stuck runs:       {tally.stuck}")
    print(f"fire lag:         {percentiles(tally.lags)}")
    return 1 if tally.doubles or tally.double_executions or tally.lost or tally.stuck else 0


if __name__ == "__main__":
    sys.exit(main())
