"""A burst: N jobs due in the same second, run by real `syncjobs worker` replicas with the REAL executor
on a trivial source (a `mongodb` source of one collection holding one document), compared with the
server's own raw write rate measured in the same run.

    python -m bench.worker_burst --jobs 1000 --replicas 1,3 --executor cold,warm,true

`--executor`: `cold` spawns `python -P -m syncjobs.executor` per run (SYNCJOBS_WARM_EXECUTOR=false),
`warm` forks it per run from the worker's fork server (SYNCJOBS_EXECUTOR_HOST=run), `hosted` hands a
workspace's runs to its long-lived executor hosts (the default), `true` runs the `true` stand-in (no sync at
all: the scheduler's and the database's own cost). Every combination runs on a fresh server of its own, in the same run.
`--webhook` runs each combination twice, without and then with a local receiver subscribed to every run
event (`run.started`, `run.succeeded`, ...): the drain rate with and without, and how long after the due
time the receiver had every event.
`--bursts N` repeats each combination N times (a fresh server each) and `--lease-ttl S` sets
SYNCJOBS_LEASE_TTL_SECONDS (default: the product's default); each burst also counts the workers' lease
events from their logs (`lease_acquired`, and the losses: `lease_lapsed`, `lease_taken`, `stepped_down`):
whether a leader keeps its lease while the burst saturates the machine.
`--baseline COMMIT` adds the path as it was at COMMIT (e.g. 4ac387b, before every replica executed and
before the warm executor): its workers, cold spawns, leader only, run from that commit's tree on the same
server in the same run, so the speed-up is measured, not remembered.

Printed per combination:
- fire lag p50/p99: `scheduledFor` -> `startedAt` of each run;
- runs started per second: runs / (last `startedAt` - due time);
- drain: due time -> last `finishedAt`, and runs / drain time;
- CPU seconds per run: the workers' process trees (worker, fork server, executors, taps) from /proc:
  utime+stime of every live process in the tree plus cutime+cstime (its waited-for children), summed
  just before the due time and again once every run has ended; the difference over runs. The server's
  own CPU is printed apart;
- writes per run: serverStatus opcounters (insert+update+delete) before/after, over runs. SecantusDB
  counts one per write *command* (an insert_many or a bulk_write is 1; findAndModify is an update), so
  this is write round trips per run, executor writes (progress on the run, the destination) included;
  beside them reads (queries + getMores, change streams included), other commands (hello, ping,
  listCollections, aggregate...) and connections opened per run (the bench's own polling included);
- the server's raw write rate (a loop of insert_one of small documents, and insert_many of 1,000) and the
  drain rate as a fraction of it: the runs/s ceiling is that insert_one rate / writes per run. It is
  measured on a fresh server of its own: its thousands of insert_one leave as many retryable-write
  records, which SecantusDB scans on every later write for 30 minutes;
- spawn-to-first-event cold vs warm: one executor at a time on an idle worker-less server, from asking
  for the executor to its first NDJSON event (the worker's `syncjobs_executor_first_event_seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient
from syncjobs.shared.connection_rules import discover_control_cluster
from syncjobs.shared.executor_protocol import CHANNEL_FLAG, EXECUTOR_COMMAND, RunChannel, executor_environment
from syncjobs.shared.logging import configure_logging
from syncjobs.shared.metrics import WORKER_REGISTRY
from syncjobs.shared.models import RUN_EVENTS, DataSourceInput, DestinationInput, SyncJob, WebhookInput, from_document
from syncjobs.shared.mongo import connect, ensure_indexes
from syncjobs.shared.run_spec import RunControlAccess, read_run_spec
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import data_sources, destinations, job_runs, webhooks
from syncjobs.worker.executor_process import run_executor
from syncjobs.worker.fork_server import SERVER_MODULE as FORK_SERVER_MODULE
from syncjobs.worker.fork_server import ForkServer

from bench.worker_support import (
    DATABASE,
    WebhookReceiver,
    WorkerProcess,
    client,
    job_docs,
    next_whole_second,
    package_view,
    percentiles,
    process_env,
    server,
)

SOURCE_DB, DEST_DB = "bench_source", "bench_dest"
FINAL = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "missed"]
LEASE_EVENTS = ("lease_acquired", "lease_lapsed", "lease_taken", "stepped_down")
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def trivial_source(uri: str) -> tuple[ObjectId, ObjectId, ObjectId]:
    """A workspace's data source (one collection, one document) and destination; returns their ids.
    Their configs hold no password, so they are stored in clear: a baseline tree without encryption
    reads them too."""
    mongo = connect(uri)
    try:
        await mongo[SOURCE_DB].items.insert_one({"_id": 1, "name": "one"})
        db = mongo[DATABASE]
        await ensure_indexes(db)
        workspace = ObjectId()
        source = await data_sources.store.create(
            db, workspace, DataSourceInput(name="src", kind="mongodb", config={"uri": uri, "database": SOURCE_DB})
        )
        destination = await destinations.store.create(
            db, workspace, DestinationInput.model_validate({"name": "dst", "config": {"uri": uri, "database": DEST_DB}})
        )
        clear = {"$set": {"config": {"uri": uri, "database": SOURCE_DB}}}
        await db.data_sources.update_one({"_id": ObjectId(source.id)}, clear)
        clear = {"$set": {"config": {"uri": uri, "database": DEST_DB}}}
        await db.destinations.update_one({"_id": ObjectId(destination.id)}, clear)
        return workspace, ObjectId(source.id), ObjectId(destination.id)
    finally:
        await mongo.close()


def own_destinations(
    mongo: MongoClient[dict[str, Any]], template_id: ObjectId, count: int, *, collections_exist: bool = True
) -> list[ObjectId]:
    """A destination database per job, copies of the template: runs of different jobs never race on
    one destination document. `collections_exist`: the steady state of an hourly burst (each job has run
    before); without it the runs create their destinations (a first fire)."""
    destinations_collection = mongo[DATABASE].destinations
    template = destinations_collection.find_one({"_id": template_id})
    assert template is not None
    copies = [
        {
            **template,
            "_id": ObjectId(),
            "name": f"dst-{i}",
            "config": {**template["config"], "database": f"{DEST_DB}_{i}"},
        }
        for i in range(count)
    ]
    destinations_collection.insert_many(copies)
    if collections_exist:
        create_destination_collections(mongo, count)
    return [copy["_id"] for copy in copies]


def create_destination_collections(mongo: MongoClient[dict[str, Any]], count: int) -> None:
    for i in range(count):
        mongo[f"{DEST_DB}_{i}"].create_collection("items")


def copied(mongo: MongoClient[dict[str, Any]], count: int) -> int:
    """Destination databases holding the source's document: the job body's effect, read after a burst."""
    return sum(1 for i in range(count) if mongo[f"{DEST_DB}_{i}"].items.find_one({"_id": 1}) is not None)


def raw_write_rate(uri: str, seconds: float = 3.0) -> tuple[float, float]:
    """insert_one per second (one write round trip each) and documents per second by insert_many."""
    with client(uri) as mongo:
        collection = mongo["bench_raw"].docs
        count, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            collection.insert_one({"n": count, "pad": "x" * 64})
            count += 1
        one_rate = count / (time.monotonic() - started)
        docs = [{"n": i, "pad": "x" * 64} for i in range(1000)]
        started = time.monotonic()
        for _ in range(3):
            collection.insert_many([dict(d) for d in docs])
        many_rate = 3000 / (time.monotonic() - started)
        mongo.drop_database("bench_raw")
    return one_rate, many_rate


async def first_event_seconds(uri: str, job: dict[str, Any], samples: int) -> dict[str, list[float]]:
    """One executor at a time, cold then warm, each on a fresh run of `job`, served as the worker serves it."""
    env = executor_environment(process_env(uri)) | {"SYNCJOBS_DATABASE": DATABASE}
    mongo = connect(uri)
    fork_server = ForkServer(env)
    found: dict[str, list[float]] = {"cold": [], "warm": []}
    try:
        await fork_server.start()
        model = from_document(SyncJob, job)
        for start, server_or_none in (("cold", None), ("warm", fork_server)):
            for _ in range(samples):
                run = await job_runs.create_manual_run(mongo[DATABASE], model, datetime.now(UTC))
                before = _histogram_sum(start)
                db, run_id = mongo[DATABASE], ObjectId(run.id)
                spec = await read_run_spec(
                    db, run_id, await discover_control_cluster(mongo, Settings(database=DATABASE))
                )
                channel = RunChannel(spec.to_line(), RunControlAccess(db, run_id, ObjectId(model.id)))
                argv = [*EXECUTOR_COMMAND, "--run-id", run.id, CHANNEL_FLAG]
                outcome = await run_executor(
                    argv, env, 60, asyncio.Event(), fork_server=server_or_none, channel=channel
                )
                if outcome.status != "succeeded":
                    raise RuntimeError(f"a {start} sample run {outcome.status}: {outcome.error}")
                found[start].append(_histogram_sum(start) - before)
        await mongo[DATABASE].job_runs.delete_many({"trigger": "manual"})
    finally:
        await fork_server.close()
        await mongo.close()
    return found


def _histogram_sum(start: str) -> float:
    name = "syncjobs_executor_first_event_seconds_sum"
    return WORKER_REGISTRY.get_sample_value(name, {"start": start}) or 0.0


@dataclass(frozen=True)
class ProcessTicks:
    parent: int
    own: int  # utime + stime
    children: int  # cutime + cstime: its waited-for children


def process_table() -> dict[int, ProcessTicks]:
    """Every live process's parent and CPU ticks, from /proc."""
    table: dict[int, ProcessTicks] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        table[int(entry)] = ProcessTicks(int(fields[1]), own, children)
    return table


def process_tree(table: dict[int, ProcessTicks], root: int) -> set[int]:
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ticks in table.items() if ticks.parent == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


def tree_cpu_seconds(root: int, table: dict[int, ProcessTicks] | None = None) -> float:
    """CPU of `root` and its live descendants, each with its waited-for children (see the docstring)."""
    table = process_table() if table is None else table
    tree = process_tree(table, root)
    return sum(table[pid].own + table[pid].children for pid in tree if pid in table) / CLK_TCK


def worker_cpu_by_kind(workers: list[int]) -> Counter[str]:
    """CPU seconds so far of the workers' trees by kind: the worker processes' own, their fork servers'
    own (each fork), and the rest, which is the executor children (and their taps), live or waited for."""
    table = process_table()
    found: Counter[str] = Counter()
    for worker in workers:
        total = tree_cpu_seconds(worker, table)
        own = table[worker].own / CLK_TCK if worker in table else 0.0
        servers = [pid for pid, ticks in table.items() if ticks.parent == worker and _is_fork_server(pid)]
        server_own = sum(table[pid].own for pid in servers) / CLK_TCK
        found.update({"worker": own, "fork server": server_own, "executors": total - own - server_own})
    return found


def _is_fork_server(pid: int) -> bool:
    try:
        return FORK_SERVER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def server_counters(uri: str) -> Counter[str]:
    """Write commands, reads (queries + getMores), other commands and connections opened, so far."""
    with client(uri) as mongo:
        status = mongo.admin.command("serverStatus")
    ops = status["opcounters"]
    return Counter(
        writes=int(ops["insert"] + ops["update"] + ops["delete"]),
        reads=int(ops["query"] + ops["getmore"]),
        commands=int(ops["command"]),
        connections=int(status["connections"]["totalCreated"]),
    )


@dataclass
class Burst:
    """What one burst of syncjobs workers left: its runs, and what it cost from just before the due time
    until every run had ended."""

    done: list[dict[str, Any]]
    due: datetime
    late: bool  # the workers were ready only after the due time
    cpu: Counter[str]  # seconds by kind (`worker_cpu_by_kind`)
    server_cpu: float
    counters: Counter[str]  # `server_counters` over the burst
    copied: int  # destinations holding the source's document afterwards
    webhook: WebhookReceiver | None = None  # what a subscribed receiver got, with `--webhook`
    events_left: int = 0  # run events still queued when the bench stopped waiting for them
    lease_events: Counter[str] = field(default_factory=Counter)  # LEASE_EVENTS logged by the workers


def run_burst(
    uri: str,
    server_pid: int,
    logs: Path,
    *,
    jobs: int,
    replicas: int,
    executor: str,
    concurrency: int,
    baseline_view: Path | None = None,
    collections_exist: bool = True,
    webhook: WebhookReceiver | None = None,
    lease_ttl: int | None = None,
    named_entity: bool = False,
) -> Burst:
    """`jobs` jobs due in the same second on a fresh database, run by `replicas` real workers; with
    `webhook`, a receiver subscribed to every run event of their workspace; `lease_ttl` None: the
    product's default lease; with `named_entity`, each job names its one collection
    (`entities.include`) instead of syncing all the source offers."""
    with client(uri) as mongo:
        for name in mongo.list_database_names():
            if name.startswith((DATABASE, SOURCE_DB, DEST_DB)):
                mongo.drop_database(name)
        workspace, source_id, destination_id = asyncio.run(trivial_source(uri))
        due = next_whole_second(datetime.now(UTC), timedelta(seconds=8 + 3 * replicas + jobs / 200))
        cron = f"{due.second} {due.minute} {due.hour} {due.day} {due.month} *"
        named = {"entities": {"include": ["items"], "exclude": []}} if named_entity else {}
        docs = job_docs(jobs, cron, due, workspaceId=workspace, dataSourceId=source_id, **named)
        own = own_destinations(mongo, destination_id, jobs, collections_exist=collections_exist)
        for job, destination in zip(docs, own, strict=True):
            job["destinationDatabaseId"] = destination
        mongo[DATABASE].syncjobs.insert_many(docs)
        if webhook is not None:
            asyncio.run(subscribe(uri, workspace, webhook.url))
        env = {"SYNCJOBS_MAX_CONCURRENT_RUNS": str(concurrency)}
        if lease_ttl is not None:
            env["SYNCJOBS_LEASE_TTL_SECONDS"] = str(lease_ttl)
        if executor == "before":
            env["PYTHONPATH"] = str(baseline_view)  # the baseline's workers, and so its executors
        elif executor == "true":
            env["SYNCJOBS_EXECUTOR_COMMAND"] = "true"
        else:
            env["SYNCJOBS_WARM_EXECUTOR"] = "true" if executor in ("warm", "hosted") else "false"
            env["SYNCJOBS_EXECUTOR_HOST"] = "workspace" if executor == "hosted" else "run"
        label = f"{executor}-{replicas}r-{jobs}j-{time.monotonic_ns()}"
        workers = [WorkerProcess(uri, f"{label}-{i}", logs, **env) for i in range(replicas)]
        pids = [worker.process.pid for worker in workers]
        try:
            for worker in workers:
                worker.wait_for("worker_started")
                if executor in ("warm", "hosted"):
                    worker.wait_for("fork_server_started")
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 1.0))
            late = datetime.now(UTC) > due
            cpu_before = worker_cpu_by_kind(pids)
            server_before = tree_cpu_seconds(server_pid)
            counters_before = server_counters(uri)
            runs = mongo[DATABASE].job_runs
            deadline = time.monotonic() + 300 + 2 * jobs
            while runs.count_documents({"status": {"$in": FINAL}}) < jobs and time.monotonic() < deadline:
                time.sleep(1.0)  # when to stop measuring only: the drain is read from the runs
            counters = server_counters(uri)
            counters.subtract(counters_before)
            cpu = worker_cpu_by_kind(pids)
            cpu.subtract(cpu_before)
            server_cpu = tree_cpu_seconds(server_pid) - server_before
            fields = ["jobId", "startedAt", "finishedAt", "scheduledFor", "status", "workerId", "error"]
            done = list(runs.find({}, dict.fromkeys(fields, 1)))
            events_left = 0
            if webhook is not None:  # the deliveries' drain, after the runs' (not in the figures above)
                queued = mongo[DATABASE].webhook_events
                while (events_left := queued.count_documents({})) and time.monotonic() < deadline:
                    time.sleep(0.5)
            # Before the workers stop one by one (a stopping leader hands its lease to the next).
            lease_events = Counter({name: sum(len(w.events(name)) for w in workers) for name in LEASE_EVENTS})
        finally:
            for worker in workers:
                worker.stop()
        return Burst(
            done, due, late, cpu, server_cpu, counters, copied(mongo, jobs), webhook, events_left, lease_events
        )


async def subscribe(uri: str, workspace: ObjectId, url: str) -> None:
    mongo = connect(uri)
    try:
        hook = WebhookInput.model_validate({"url": url, "events": list(RUN_EVENTS)})
        await webhooks.create_webhook(mongo[DATABASE], workspace, hook, datetime.now(UTC))
    finally:
        await mongo.close()


def burst(
    uri: str,
    server_pid: int,
    args: argparse.Namespace,
    replicas: int,
    executor: str,
    logs: Path,
    webhook: WebhookReceiver | None = None,
) -> tuple[str, float, float]:
    """One burst on a fresh database; returns its report, its drain rate (runs/s) and writes per run."""
    found = run_burst(
        uri,
        server_pid,
        logs,
        jobs=args.jobs,
        replicas=replicas,
        executor=executor,
        concurrency=args.concurrency,
        baseline_view=getattr(args, "baseline_view", None),
        webhook=webhook,
        lease_ttl=args.lease_ttl,
        named_entity=args.named_entity,
    )
    kinds = "\n  CPU/run by kind: " + ", ".join(f"{k} {v / args.jobs:.4f}s" for k, v in sorted(found.cpu.items()))
    cpu = sum(found.cpu.values())
    text, rate, writes = report(
        found.done, found.due, found.late, cpu, found.server_cpu, found.counters, replicas, executor, args.jobs
    )
    return text + kinds + lease_report(found) + webhook_report(found), rate, writes


def lease_report(found: Burst) -> str:
    """The lease events the workers logged during the burst: any loss means a leader alive under the
    burst's load could not renew in time."""
    events = found.lease_events
    losses = sum(events[name] for name in LEASE_EVENTS if name != "lease_acquired")
    detail = ", ".join(f"{name} {events[name]}" for name in LEASE_EVENTS)
    return f"\n  lease: {detail} ({losses} losses)"


def webhook_report(found: Burst) -> str:
    """With a receiver: the events it got and when it had the last one (the delivery drain)."""
    if found.webhook is None:
        return ""
    received = sum(found.webhook.counts.values())
    last = found.webhook.last_at or found.due
    took = max((last - found.due).total_seconds(), 1e-3)
    return (
        f"\n  webhook subscribed: {dict(found.webhook.counts)} received, the last {took:.2f}s after due"
        f" = {received / took:.1f} events/s; {found.events_left} still queued"
    )


def report(
    done: list[dict[str, Any]],
    due: datetime,
    late: bool,
    cpu: float,
    server_cpu: float,
    counters: Counter[str],
    replicas: int,
    executor: str,
    jobs: int,
) -> tuple[str, float, float]:
    started = [run for run in done if run.get("startedAt")]
    finished = [run for run in done if run.get("finishedAt")]
    count = max(1, len(done))
    lags = [(run["startedAt"] - run["scheduledFor"]).total_seconds() for run in started]
    last_start = max((run["startedAt"] for run in started), default=due)
    drain = max((run["finishedAt"] for run in finished), default=due) - due
    drain_s = max(drain.total_seconds(), 1e-3)
    start_s = max((last_start - due).total_seconds(), 1e-3)
    statuses = dict(Counter(run["status"] for run in done))
    errors = Counter(str(run.get("error"))[:120] for run in done if run.get("error"))
    by_worker = sorted(Counter(str(run.get("workerId")).rsplit("-", 1)[-1] for run in started).values())
    name = {"true": "true (stand-in, no sync)", "before": "cold, leader only, as at the baseline commit"}.get(
        executor, executor
    )
    text = "\n".join(
        [
            f"executor={name} replicas={replicas} jobs={jobs}"
            + ("  (warning: workers ready after due)" if late else ""),
            f"  statuses {statuses}  runs per replica {by_worker}",
            *(f"  error x{n}: {error}" for error, n in errors.most_common(3)),
            f"  fire lag {percentiles(lags)}",
            f"  runs started/s {len(started) / start_s:.1f}"
            f"  drain {drain_s:.2f}s = {len(finished) / drain_s:.1f} runs/s",
            f"  CPU/run: workers' trees {cpu / count:.3f}s, server {server_cpu / count:.3f}s"
            f"  writes/run {counters['writes'] / count:.2f}",
            f"  per run: reads {counters['reads'] / count:.2f}, other commands {counters['commands'] / count:.2f},"
            f" connections opened {counters['connections'] / count:.2f}",
        ]
    )
    return text, len(finished) / drain_s, counters["writes"] / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--replicas", default="1,3", help="comma list of replica counts")
    parser.add_argument("--executor", default="cold,warm,true", help="comma list of cold, warm, hosted, true")
    parser.add_argument("--concurrency", type=int, default=4, help="SYNCJOBS_MAX_CONCURRENT_RUNS per replica")
    parser.add_argument("--first-event-samples", type=int, default=10)
    parser.add_argument("--baseline", default=None, help="also run the path as it was at this commit")
    parser.add_argument("--bursts", type=int, default=1, help="how many times each combination runs")
    parser.add_argument("--lease-ttl", type=int, default=None, help="SYNCJOBS_LEASE_TTL_SECONDS (default: product's)")
    parser.add_argument(
        "--webhook", action="store_true", help="run each combination again with a receiver of every run event"
    )
    parser.add_argument(
        "--named-entity", action="store_true", help="each job names its collection (no listCollections per run)"
    )
    args = parser.parse_args()
    configure_logging("warning")
    executors = args.executor.split(",")
    if not set(executors) <= {"cold", "warm", "hosted", "true"}:
        parser.error("--executor takes cold, warm, hosted and true")
    with tempfile.TemporaryDirectory() as logs:
        if args.baseline:
            args.baseline_view = package_view(args.baseline, Path(logs) / "baseline")
        if args.first_event_samples:
            with server() as db_server:
                print_first_event_seconds(db_server.uri, args.first_event_samples)
        combinations = [(1, "before")] if args.baseline else []
        baseline_rate = None
        combinations += [(int(r), executor) for r in args.replicas.split(",") for executor in executors]
        runs = [(r, e, s) for r, e in combinations for s in _webhook_modes(args) if not (s and e == "before")]
        runs = [run for run in runs for _ in range(args.bursts)]
        for replicas, executor, subscribed in runs:
            # A fresh server each: one that already holds a burst's dropped databases and oplog is slower.
            # The raw rate on a server of its own: its thousands of insert_one leave as many retryable-write
            # records, which SecantusDB scans on every later write for 30 minutes (sorting them past 10,000).
            with server() as db_server:
                one_rate, many_rate = raw_write_rate(db_server.uri)
            with server() as db_server, WebhookReceiver() as receiver:
                text, rate, writes_per_run = burst(
                    db_server.uri,
                    db_server.process.pid,
                    args,
                    replicas,
                    executor,
                    Path(logs),
                    receiver if subscribed else None,
                )
            ceiling = one_rate / max(writes_per_run, 1e-9)
            print(text)
            print(
                f"  its server's raw writes: insert_one {one_rate:.0f}/s, insert_many {many_rate:.0f} docs/s;"
                f" drain rate / insert_one rate: {rate / one_rate:.3f}"
                f"  (at {writes_per_run:.2f} writes/run the server allows {ceiling:.0f} runs/s;"
                f" the drain is {rate / ceiling:.2f} of that)"
            )
            if executor == "before":
                baseline_rate = rate
            elif baseline_rate and not subscribed:
                print(f"  drain rate / the baseline's: {rate / baseline_rate:.1f}x")


def _webhook_modes(args: argparse.Namespace) -> list[bool]:
    """Without a subscribed webhook, and with `--webhook` with one too, for the comparison."""
    return [False, True] if args.webhook else [False]


def print_first_event_seconds(uri: str, samples: int) -> None:
    """Spawn-to-first-event, cold and warm, one executor at a time on an idle, worker-less server."""
    workspace, source_id, destination_id = asyncio.run(trivial_source(uri))
    [job] = job_docs(
        1,
        "0 0 1 1 *",
        datetime.now(UTC),
        workspaceId=workspace,
        dataSourceId=source_id,
        destinationDatabaseId=destination_id,
        enabled=False,
    )
    with client(uri) as mongo:
        mongo[DATABASE].syncjobs.insert_one(job)
    for start, values in asyncio.run(first_event_seconds(uri, job, samples)).items():
        print(f"spawn-to-first-event {start}: {percentiles(values)}")


if __name__ == "__main__":
    main()
