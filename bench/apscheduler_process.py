"""One APScheduler 3 process of `bench/peer_burst.py`: a BackgroundScheduler on a MongoDBJobStore shared
with every other such process, a thread pool running the job body, until SIGTERM.

    python -m bench.apscheduler_process --uri URI --records FILE --threads 10

The job body (`copy_one`) is the same as a syncjobs run's in the bench: it reads the source collection's
one document and writes it into that job's own destination database. Each execution appends
`index started finished pid` to FILE (one line, no database write), so the bench counts executions and
doubles without adding work on the server. Prints `ready` once the scheduler runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.mongodb import MongoDBJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from pymongo import MongoClient

SOURCE_DB, DEST_DB = "bench_source", "bench_dest"  # as bench/worker_burst.py names them
JOBSTORE_DB, JOBSTORE_COLLECTION = "apscheduler", "jobs"
COPY_ONE = "bench.apscheduler_process:copy_one"  # a textual reference: the job store pickles it

_client: MongoClient[dict[str, Any]] | None = None
_records: IO[str] | None = None
_records_lock = threading.Lock()


def copy_one(index: int) -> None:
    """The job body: the source's one document into destination database `index`."""
    assert _client is not None and _records is not None
    started = time.time()
    document = _client[SOURCE_DB].items.find_one({"_id": 1})
    assert document is not None
    _client[f"{DEST_DB}_{index}"].items.replace_one({"_id": document["_id"]}, document, upsert=True)
    finished = time.time()
    with _records_lock:
        _records.write(f"{index} {started} {finished} {os.getpid()}\n")
        _records.flush()


def scheduler(mongo: MongoClient[dict[str, Any]], threads: int) -> BackgroundScheduler:
    """Every fire runs however late it starts (APScheduler's default grace is 1 s: a burst queued behind
    10 threads would be mostly `missed`), once per due time."""
    return BackgroundScheduler(
        jobstores={"default": MongoDBJobStore(database=JOBSTORE_DB, collection=JOBSTORE_COLLECTION, client=mongo)},
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"misfire_grace_time": None, "coalesce": True},
        timezone=UTC,
    )


def shut_down(running: BackgroundScheduler, *, wait: bool) -> None:
    """Its loop wakes once more after the store's client is closed, and logs that as an error: not news."""
    logging.getLogger("apscheduler.scheduler").disabled = True
    running.shutdown(wait=wait)


def add_jobs(uri: str, count: int, due: datetime) -> None:
    """`count` jobs on the shared store, each on a cron of the due second, through a paused scheduler."""
    with MongoClient(uri) as mongo:
        adding = scheduler(mongo, 1)
        adding.start(paused=True)
        # Yearly, as the syncjobs jobs' `s m h d M *`: after its fire a job is rescheduled (an update on the
        # store, as an hourly job's would be), not removed.
        trigger = CronTrigger(month=due.month, day=due.day, hour=due.hour, minute=due.minute, second=due.second)
        for index in range(count):
            adding.add_job(COPY_ONE, trigger, args=[index], id=f"job-{index}")
        shut_down(adding, wait=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--threads", type=int, default=10)
    args = parser.parse_args()
    global _client, _records
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # the scheduler's threads inherit the mask
    with MongoClient(args.uri) as mongo, open(args.records, "a") as records:
        _client, _records = mongo, records
        running = scheduler(mongo, args.threads)
        running.start()
        print("ready", flush=True)
        signal.sigwait({signal.SIGTERM})
        shut_down(running, wait=True)
    sys.exit(0)


if __name__ == "__main__":
    # The job store names the body `bench.apscheduler_process:copy_one`: run main in that module, not in
    # `__main__`, so the body sees the client and records file main opens.
    from bench.apscheduler_process import main as main_of_the_module

    main_of_the_module()
