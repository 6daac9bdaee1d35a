"""The top-of-the-hour burst against a peer: N jobs due in the same second, each copying one document from
a source collection into its own destination database, run by syncjobs (1 and 2 workers, the real warm
executor) and by APScheduler 3 (one process with a thread pool; two processes sharing a MongoDBJobStore),
each variant on a fresh SecantusDB of its own, in one run.

    python -m bench.peer_burst --jobs 1000 --phases first,steady

`--phases`: `first` (the runs create the destination databases), `steady` (each destination collection
exists, empty: an hourly burst's steady state). Variants (`--variants`): `syncjobs-1`, `syncjobs-2` (the
warm executor, a process per run: SYNCJOBS_EXECUTOR_HOST=run), `syncjobs-hosted-1`, `syncjobs-hosted-2`
(the default: the workspace's runs in its long-lived executor hosts),
`apscheduler-1`, `apscheduler-2`. The syncjobs rows are `bench/worker_burst.py`'s burst (its docstring
says how CPU, lag and server counters are read); the APScheduler processes are `bench/apscheduler_process.py`.

Per row: executed (jobs whose fire ran: a succeeded run / an execution of the body), double (executions
beyond one per job's fire), lost (jobs not executed), copied (destinations holding the document after),
drain (due time -> last finish), per second (executed / drain) and its ratio to APScheduler's single
process in the same phase, fire lag p99 (due time -> start of the run or body), CPU seconds per job by
process kind from just before the due time to the end: the scheduler or worker processes' own, the fork
servers' own, the executor children (with their taps), the server; the server's writes, reads, other
commands and connections per job; its raw insert_one rate, on another fresh server (`--raw-seconds 0`
skips it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from syncjobs.shared.logging import configure_logging

from bench import apscheduler_process
from bench.worker_burst import (
    DEST_DB,
    SOURCE_DB,
    copied,
    create_destination_collections,
    process_table,
    raw_write_rate,
    run_burst,
    server_counters,
    tree_cpu_seconds,
)
from bench.worker_support import ROOT, client, next_whole_second, server

VARIANTS = (  # the ratio's base first
    "apscheduler-1",
    "syncjobs-1",
    "syncjobs-2",
    "syncjobs-hosted-1",
    "syncjobs-hosted-2",
    "apscheduler-2",
)
PHASES = {"first": "first fire: the runs create the destinations", "steady": "steady state: destinations exist"}
THREADS = 10
LABELS = {
    "syncjobs-1": "syncjobs, 1 worker, a process per run",
    "syncjobs-2": "syncjobs, 2 workers, a process per run",
    "syncjobs-hosted-1": "syncjobs, 1 worker, workspace executor hosts (default)",
    "syncjobs-hosted-2": "syncjobs, 2 workers, workspace executor hosts (default)",
    "apscheduler-1": f"APScheduler 3, 1 process, {THREADS} threads",
    "apscheduler-2": "APScheduler 3, 2 processes, one MongoDBJobStore",
}
CPU_KINDS = ("scheduler", "fork server", "executors", "server")


@dataclass
class Row:
    variant: str
    jobs: int
    executed: int
    double: int
    copied: int
    drain: float  # seconds
    lag_p99: float  # seconds
    cpu: dict[str, float]  # seconds by kind (CPU_KINDS; a kind the variant has not is left out)
    counters: Counter[str]
    late: bool
    raw_insert_rate: float | None = None

    @property
    def lost(self) -> int:
        return self.jobs - self.executed

    @property
    def per_second(self) -> float:
        return self.executed / max(self.drain, 1e-3)


def count_executions(
    jobs: int, executions: list[tuple[Any, datetime, datetime]], due: datetime
) -> tuple[int, int, float, float]:
    """Executed jobs, double executions, drain and fire lag p99 from (job, started, finished) triples."""
    per_job = Counter(job for job, _, _ in executions)
    lags = sorted((started - due).total_seconds() for _, started, _ in executions)
    drain = max(((finished - due).total_seconds() for _, _, finished in executions), default=0.0)
    p99 = lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))] if lags else float("nan")
    return min(jobs, len(per_job)), sum(per_job.values()) - len(per_job), drain, p99


def syncjobs_row(
    uri: str, server_pid: int, logs: Path, jobs: int, workers: int, steady: bool, executor: str = "warm"
) -> Row:
    # Each job names its one collection, as APScheduler's body names the collection it reads.
    found = run_burst(
        uri,
        server_pid,
        logs,
        jobs=jobs,
        replicas=workers,
        executor=executor,
        concurrency=4,
        collections_exist=steady,
        named_entity=True,
    )
    succeeded = [run for run in found.done if run["status"] == "succeeded"]
    started = [run for run in found.done if run.get("startedAt")]
    # A run executed twice would be a second run of the same fire (a retry after a lost lease): counted
    # as a double; a fire's first run that failed leaves the job counted as lost.
    executions = [
        ((run["jobId"], run["scheduledFor"]), run["startedAt"], run.get("finishedAt") or run["startedAt"])
        for run in started  # one still going when the bench gave up waiting: its job is counted lost
    ]
    _, double, drain, lag = count_executions(jobs, executions, found.due)
    executed = len({run["jobId"] for run in succeeded})
    cpu = {
        "scheduler": found.cpu["worker"],
        "fork server": found.cpu["fork server"],
        "executors": found.cpu["executors"],
        "server": found.server_cpu,
    }
    variant = f"syncjobs-{workers}" if executor == "warm" else f"syncjobs-{executor}-{workers}"
    return Row(variant, jobs, executed, double, found.copied, drain, lag, cpu, found.counters, found.late)


def apscheduler_row(uri: str, server_pid: int, logs: Path, jobs: int, processes: int, steady: bool) -> Row:
    with client(uri) as mongo:
        mongo[SOURCE_DB].items.insert_one({"_id": 1, "name": "one"})
        if steady:
            create_destination_collections(mongo, jobs)
        due = next_whole_second(datetime.now(UTC), timedelta(seconds=3 + 2 * processes + jobs / 100))
        apscheduler_process.add_jobs(uri, jobs, due)
        records = [logs / f"apscheduler-{time.monotonic_ns()}-{i}.records" for i in range(processes)]
        running = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.apscheduler_process", "--uri", uri, "--records", str(path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for path in records
        ]
        try:
            for process in running:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError("an APScheduler process did not start")
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 1.0))
            late = datetime.now(UTC) > due
            table = process_table()
            cpu_before = sum(tree_cpu_seconds(p.pid, table) for p in running)
            server_before = tree_cpu_seconds(server_pid)
            counters_before = server_counters(uri)
            _wait_until_quiet(jobs, lambda: _read_records(records), deadline=time.monotonic() + 300 + 2 * jobs)
            counters = server_counters(uri)
            counters.subtract(counters_before)
            table = process_table()
            cpu = sum(tree_cpu_seconds(p.pid, table) for p in running) - cpu_before
            server_cpu = tree_cpu_seconds(server_pid) - server_before
        finally:
            for process in running:
                process.terminate()
            for process in running:
                process.wait(60)
                if process.stdout is not None:
                    process.stdout.close()
        executions = _read_records(records)
        executed, double, drain, lag = count_executions(jobs, executions, due)
        cpu_by_kind = {"scheduler": cpu, "server": server_cpu}  # its jobs run in its threads
        return Row(
            f"apscheduler-{processes}",
            jobs,
            executed,
            double,
            copied(mongo, jobs),
            drain,
            lag,
            cpu_by_kind,
            counters,
            late,
        )


def _read_records(paths: list[Path]) -> list[tuple[Any, datetime, datetime]]:
    executions = []
    for path in paths:
        for line in path.read_text().splitlines() if path.exists() else []:
            index, started, finished, _ = line.split()
            executions.append(
                (int(index), datetime.fromtimestamp(float(started), UTC), datetime.fromtimestamp(float(finished), UTC))
            )
    return executions


def _wait_until_quiet(jobs: int, read: Callable[[], list[Any]], deadline: float) -> None:
    """Until every job has run and no execution was added for a second (a second process's doubles)."""
    last = -1
    while time.monotonic() < deadline:
        executions = read()
        if len({execution[0] for execution in executions}) >= jobs and len(executions) == last:
            return
        last = len(executions)
        time.sleep(1.0)


def measure(variant: str, phase: str, jobs: int, logs: Path, raw_seconds: float = 3.0) -> Row:
    """One variant on a fresh server of its own (and its raw insert rate on another)."""
    kind, count = variant.rsplit("-", 1)
    steady = phase == "steady"
    raw = None
    if raw_seconds > 0:
        with server() as db_server:
            raw, _ = raw_write_rate(db_server.uri, raw_seconds)
    with server() as db_server:
        if kind.startswith("syncjobs"):
            executor = "hosted" if kind == "syncjobs-hosted" else "warm"
            row = syncjobs_row(db_server.uri, db_server.process.pid, logs, jobs, int(count), steady, executor)
        else:
            row = apscheduler_row(db_server.uri, db_server.process.pid, logs, jobs, int(count), steady)
    row.raw_insert_rate = raw
    return row


def table(rows: list[Row]) -> str:
    """The issue's table, CPU seconds per job by process kind, and the ratio to APScheduler's one process."""
    base = next((row.per_second for row in rows if row.variant == "apscheduler-1"), None)
    lines = [
        "| variant | executed | double | lost | copied | drain | per second | / APScheduler 1 process"
        " | fire lag p99 | CPU/run scheduler or worker | fork server | executor children | server | total"
        " | writes / reads / other commands / connections per run | server insert_one/s |",
        "|---|" + "---:|" * 15,
    ]
    for row in rows:
        ratio = f"{row.per_second / base:.2f}" if base else "-"
        per_job = {kind: row.cpu[kind] / max(row.jobs, 1) for kind in CPU_KINDS if kind in row.cpu}
        counts = " / ".join(
            f"{row.counters[name] / max(row.jobs, 1):.2f}" for name in ("writes", "reads", "commands", "connections")
        )
        cells = [
            LABELS[row.variant] + (" (late: ready after due)" if row.late else ""),
            f"{row.executed:,}",
            f"{row.double:,}",
            f"{row.lost:,}",
            f"{row.copied:,}",
            f"{row.drain:.1f} s",
            f"{row.per_second:.1f}",
            ratio,
            f"{row.lag_p99:.1f} s",
            *(f"{per_job[kind]:.4f} s" if kind in per_job else "-" for kind in CPU_KINDS),
            f"{sum(per_job.values()):.4f} s",
            counts,
            f"{row.raw_insert_rate:.0f}" if row.raw_insert_rate else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--phases", default="first,steady", help="comma list of first, steady")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="insert_one loop per row; 0 skips it")
    args = parser.parse_args()
    phases, variants = args.phases.split(","), args.variants.split(",")
    if not set(phases) <= set(PHASES) or not set(variants) <= set(VARIANTS):
        parser.error(f"--phases takes {', '.join(PHASES)}; --variants takes {', '.join(VARIANTS)}")
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as logs:
        for phase in phases:
            rows = [measure(variant, phase, args.jobs, Path(logs), args.raw_seconds) for variant in variants]
            print(f"\n{args.jobs:,} jobs due in the same second, {PHASES[phase]} ({DEST_DB}_N.items)\n")
            print(table(rows))


if __name__ == "__main__":
    main()
