"""What one run of a burst sends the server, command by command (issue 22: what lies between the product and
`bench/run_floor.py`'s floor). A worker runs in this process, with the product's settings (workspace
executor hosts, warm), on a fresh SecantusDB, `worker_burst`'s jobs (each copies one named collection into
its own destination, which exists); a command listener on the worker's client counts what it sends, by
command and collection, from a second before the due time until every run has ended. The executors (in
their hosts: other processes) are counted by the server's opcounters, less the worker's share.

    python -m bench.run_commands --jobs 200

A probe of counts, not of speed: the figures per run do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from syncjobs.shared.logging import configure_logging
from syncjobs.shared.mongo import Collection, Document, close_client, connect
from syncjobs.shared.settings import Settings
from syncjobs.worker import main as worker_main

from bench.worker_burst import own_destinations, trivial_source
from bench.worker_support import DATABASE, client, job_docs, next_whole_second, process_env, server
from tests.fixtures.command_log import CommandLog, SentCommand
from tests.fixtures.eventually import eventually


def _opcounters(uri: str) -> Counter[str]:
    with client(uri) as mongo:
        ops = mongo.admin.command("serverStatus")["opcounters"]
    return Counter({name: int(ops[name]) for name in ("insert", "query", "update", "delete", "getmore", "command")})


def _as_opcounters(commands: list[SentCommand]) -> Counter[str]:
    """Commands as SecantusDB's opcounters count them: an insert per document, an update or a delete per
    command (mongod counts those per statement)."""
    counted: Counter[str] = Counter()
    for sent in commands:
        if sent.name == "insert":
            counted["insert"] += sent.statements
        elif sent.name in ("update", "delete"):
            counted[sent.name] += 1
        elif sent.name in ("find", "aggregate", "count", "distinct"):
            counted["query"] += 1
        elif sent.name == "getMore":
            counted["getmore"] += 1
        else:
            counted["command"] += 1
    return counted


async def _all_ended(runs: Collection, ended: Document, jobs: int) -> bool:
    return bool(await runs.count_documents(ended) >= jobs)


async def probe(jobs: int, concurrency: int) -> None:
    with server() as db_server:
        uri = db_server.uri
        workspace, source_id, destination_id = await trivial_source(uri)
        due = next_whole_second(datetime.now(UTC), timedelta(seconds=6 + jobs / 200))
        cron = f"{due.second} {due.minute} {due.hour} {due.day} {due.month} *"
        named = {"include": ["items"], "exclude": []}
        docs = job_docs(jobs, cron, due, workspaceId=workspace, dataSourceId=source_id, entities=named)
        with client(uri) as mongo:
            for job, destination in zip(docs, own_destinations(mongo, destination_id, jobs), strict=True):
                job["destinationDatabaseId"] = destination
            mongo[DATABASE].syncjobs.insert_many(docs)
        env = process_env(
            uri,
            SYNCJOBS_WORKER_ID="probe",
            SYNCJOBS_MAX_CONCURRENT_RUNS=str(concurrency),
            SYNCJOBS_WARM_EXECUTOR="true",
            SYNCJOBS_EXECUTOR_HOST="workspace",
        )
        own_environment = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)  # the worker's executors inherit the environment it was started with
        log = CommandLog()
        product_connect = worker_main.connect
        worker_main.connect = lambda uri, **options: product_connect(uri, event_listeners=[log], **options)
        stop = asyncio.Event()
        working = asyncio.create_task(worker_main.run_worker(Settings.from_env(env), stop=stop))
        watcher = connect(uri)
        try:
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 1.0))
            assert datetime.now(UTC) < due, "the worker was not ready before the due time"
            log.clear()
            server_before = _opcounters(uri)
            started = time.monotonic()
            runs = watcher[DATABASE].job_runs
            ended = {"status": {"$in": ["succeeded", "failed"]}}
            await eventually(lambda: _all_ended(runs, ended, jobs), "every run ended", within=900, every=0.2)
            drained = time.monotonic() - started
            sent = list(log.sent)
            server_after = _opcounters(uri)
            statuses = Counter([doc["status"] async for doc in runs.find({}, {"status": 1})])
        finally:
            stop.set()
            await working
            await close_client(watcher)
            worker_main.connect = product_connect
            os.environ.clear()
            os.environ.update(own_environment)
    by_target: Counter[tuple[str, str]] = Counter()
    statements: Counter[tuple[str, str]] = Counter()
    for command in sent:
        target = command.target if isinstance(command.target, str) else "-"
        by_target[(command.name, target)] += 1
        statements[(command.name, target)] += command.statements
    print(f"{jobs} jobs, {concurrency} slots, hosted executors: {dict(statuses)} in {drained:.1f} s")
    print("\nthe worker's commands per run (from 1 s before the due time to the last run's end):\n")
    print("| command | collection | commands per run | statements / documents per run |")
    print("|---|---|---:|---:|")
    for (name, target), count in by_target.most_common():
        print(f"| {name} | {target} | {count / jobs:.2f} | {statements[(name, target)] / jobs:.2f} |")
    print(f"| all | | {len(sent) / jobs:.2f} | {sum(statements.values()) / jobs:.2f} |")
    server_total = server_after - server_before
    worker = _as_opcounters(sent)
    print("\nthe server's opcounters per run: everyone's, the worker's (counted as the server counts), the rest")
    print("(the executors, this probe's own polling: one count per 0.2 s)\n")
    print("| opcounter | all | worker | executors and probe |")
    print("|---|---:|---:|---:|")
    for name in ("insert", "update", "delete", "query", "getmore", "command"):
        total, own = server_total[name], worker[name]
        print(f"| {name} | {total / jobs:.2f} | {own / jobs:.2f} | {(total - own) / jobs:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="SYNCJOBS_MAX_CONCURRENT_RUNS")
    args = parser.parse_args()
    configure_logging("WARNING")
    asyncio.run(probe(args.jobs, args.concurrency))


if __name__ == "__main__":
    main()
