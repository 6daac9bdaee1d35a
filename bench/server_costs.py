"""The server's CPU per 1,000 of each command syncjobs sends in a run (issue 22), each kind alone on a
fresh SecantusDB, read from /proc/<server pid>/stat around a loop of them:

    python -m bench.server_costs --ops 1000 --repeat 3

Printed per kind: the server's CPU-s per 1,000 (median of the repeats, the server's idle CPU over the
same time taken off), the same as a multiple of a `ping`'s measured on the same server (a ratio is what
holds on a shared machine), and the load average. Writes go without retryable-write records
(`retryWrites=false`) unless a row says otherwise: the records' own cost is measured apart, as it grows
with how many the server holds (SecantusDB keeps them 30 minutes and walks them all on every retryable
write).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId
from pymongo import MongoClient, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from syncjobs.shared.mongo import index_plan
from syncjobs.shared.store import job_runs, sync_jobs

from bench.worker_support import server

CLK_TCK = os.sysconf("SC_CLK_TCK")
W1 = WriteConcern(w=1)
DURABLE = WriteConcern(w="majority", j=True)  # syncjobs' DURABLE_WRITE

Doc = dict[str, Any]
OPENED: list[MongoClient[Doc]] = []  # clients a kind's setup opened, closed with its server
Body = Callable[[int], None]  # runs n commands of its kind


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def client(uri: str, **options: Any) -> MongoClient[Doc]:
    return MongoClient(uri, tz_aware=True, serverMonitoringMode="poll", **options)


def run_doc(job_id: ObjectId, workspace: ObjectId, n: int) -> Doc:
    """A job_runs document shaped as the leader inserts a fire (the fields its indexes key on)."""
    now = datetime.now(UTC)
    return {
        "_id": ObjectId(),
        "workspaceId": workspace,
        "jobId": job_id,
        "scheduledFor": now,
        "trigger": "schedule",
        "attempt": n,
        "status": "pending",
        "createdAt": now,
        "dueAt": now,
        "fencingToken": n,
        "exclusive": True,
    }


# The job_runs indexes the claim and the fire path rely on (the unique fire key, the per-job execution
# lock, pending runs by status): the variant that asks what the list and retention indexes cost.
CLAIM_PATH_INDEXES = frozenset({"fire_key", "job_running", "status"})
RUN_INDEXES = len(next(p.indexes for p in index_plan() if p.collection == "job_runs"))


def with_run_indexes(db: Database[Doc], only: frozenset[str] | None = None) -> Collection[Doc]:
    """db.job_runs with the indexes syncjobs gives it (shared/mongo.py index_plan), or `only` those."""
    [plan] = [p for p in index_plan() if p.collection == "job_runs"]
    db.job_runs.create_indexes([m for m in plan.indexes if only is None or m.document["name"] in only])
    return db.job_runs


# --- the kinds: each sets up on a fresh server and returns the loop to time ---


def find_one_by_id(db: Database[Doc]) -> Body:
    runs = with_run_indexes(db)
    doc = run_doc(ObjectId(), ObjectId(), 0)
    runs.insert_one(doc)
    return lambda n: [runs.find_one({"_id": doc["_id"]}) for _ in range(n)] and None


def update_by_id(
    concern: WriteConcern,
    indexed: bool,
    collection: str = "plain",
    *,
    as_outcome: bool = False,
    only: frozenset[str] | None = None,
) -> Callable[[Database[Doc]], Body]:
    """update_one by _id: `indexed` sets the fields a claim or an outcome sets on a run (status,
    startedAt: keys of 3 of job_runs' indexes), else a field no index keys on. `as_outcome`: the filter
    an outcome write has (`_id`, `status`, `claimedBy`); `only`: job_runs with only those indexes."""

    def setup(db: Database[Doc]) -> Body:
        target = with_run_indexes(db, only) if collection == "job_runs" else db[collection]
        doc = run_doc(ObjectId(), ObjectId(), 0) | {"claimedBy": "w-1"}
        target.insert_one(doc)
        target = target.with_options(write_concern=concern)

        def body(n: int) -> None:
            for i in range(n):
                status, other = ("running", "pending") if i % 2 else ("pending", "running")
                if indexed:
                    change = {"status": status, "startedAt": datetime.now(UTC)}
                else:
                    change = {"heartbeatAt": datetime.now(UTC), "n": i}
                query = {"_id": doc["_id"], "status": other, "claimedBy": "w-1"} if as_outcome else {"_id": doc["_id"]}
                target.update_one(query, {"$set": change})

        return body

    return setup


def insert_runs(concern: WriteConcern, collection: str) -> Callable[[Database[Doc]], Body]:
    """insert_one of run-shaped documents into job_runs (its planned indexes and _id) or a collection with _id only."""

    def setup(db: Database[Doc]) -> Body:
        target = with_run_indexes(db) if collection == "job_runs" else db[collection]
        target = target.with_options(write_concern=concern)
        job, workspace = ObjectId(), ObjectId()
        return lambda n: [target.insert_one(run_doc(job, workspace, i)) for i in range(n)] and None

    return setup


def retryable_updates(held: int) -> Callable[[Database[Doc]], Body]:
    """update_one w:1 as a retryable write (pymongo's default), with `held` retryable-write records
    already on the server (from as many earlier retryable writes)."""

    def setup(db: Database[Doc]) -> Body:
        host, port = db.client.address or ("127.0.0.1", 27017)
        retrying = client(f"mongodb://{host}:{port}/?directConnection=true")  # retryWrites: the default
        OPENED.append(retrying)
        records = retrying[db.name].records
        doc_id = records.insert_one({"n": 0}).inserted_id
        for i in range(held):
            records.update_one({"_id": doc_id}, {"$set": {"n": i}})
        target = records.with_options(write_concern=W1)

        def body(n: int) -> None:
            for i in range(n):
                target.update_one({"_id": doc_id}, {"$set": {"m": i}})

        return body

    return setup


def _op_msg(request_id: int, doc: Doc) -> bytes:
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload


def _op_query(request_id: int, doc: Doc) -> bytes:
    payload = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, 2004) + payload


def _read_reply(sock: socket.socket) -> None:
    header = _read_exactly(sock, 16)
    (length,) = struct.unpack("<i", header[:4])
    _read_exactly(sock, length - 16)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


HANDSHAKE: Doc = {
    "isMaster": 1,
    "helloOk": True,
    "client": {
        "driver": {"name": "PyMongo|async", "version": "4.x"},
        "os": {"type": "Linux", "name": "Linux", "architecture": "x86_64", "version": "6"},
        "platform": "CPython 3.11",
    },
    "compression": [],
}


def raw_connection(db: Database[Doc]) -> Body:
    """A new TCP connection, the driver's handshake (OP_QUERY isMaster with client metadata), one ping
    (OP_MSG), closed: one of the two connections an executor child opens, without a driver around it."""
    host, port = db.client.address or ("127.0.0.1", 27017)

    def body(n: int) -> None:
        for _ in range(n):
            with socket.create_connection((host, port)) as sock:
                sock.sendall(_op_query(1, HANDSHAKE))
                _read_reply(sock)
                sock.sendall(_op_msg(2, {"ping": 1, "$db": "admin"}))
                _read_reply(sock)

    return body


def client_life(db: Database[Doc]) -> Body:
    """A pymongo client's life as an executor child's: monitor and pool connections (two handshakes),
    one ping, then close (which adds endSessions; the executor now skips it)."""
    host, port = db.client.address or ("127.0.0.1", 27017)
    uri = f"mongodb://{host}:{port}/?directConnection=true"

    def body(n: int) -> None:
        for _ in range(n):
            mongo = client(uri)
            mongo.admin.command("ping")
            mongo.close()

    return body


def ping(db: Database[Doc]) -> Body:
    return lambda n: [db.command("ping") for _ in range(n)] and None


@contextmanager
def idle_streams(uri: str, database: str, count: int) -> Iterator[None]:
    """`count` change streams as a worker holds them (job edits on the database, pending inserts on
    job_runs), each asking for its next change in a loop without a pause."""
    stop = threading.Event()
    opened = threading.Barrier(count + 1)

    def follow(index: int) -> None:
        with client(uri) as mongo:
            db = mongo[database]
            opener = (lambda: sync_jobs_stream(db)) if index % 2 == 0 else (lambda: pending_stream(db))
            with opener() as stream:
                opened.wait()
                while not stop.is_set():
                    stream.try_next()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    opened.wait()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def sync_jobs_stream(db: Database[Doc]) -> Any:
    return db.watch(sync_jobs.JOB_EDITS, max_await_time_ms=1000)


def pending_stream(db: Database[Doc]) -> Any:
    pipeline: list[Doc] = [
        {"$match": {"operationType": "insert", "fullDocument.status": "pending"}},
        {"$project": {"operationType": 1, **{f"fullDocument.{name}": 1 for name in job_runs.PENDING_RUN_FIELDS}}},
    ]
    return db.job_runs.watch(pipeline, max_await_time_ms=1000)


# --- measuring ---


@dataclass(frozen=True)
class Measured:
    cpu_per_1000: float  # server CPU-s per 1,000 commands, idle taken off
    ping_ratio: float  # that over a ping's per 1,000 on the same server
    load: str


def idle_cpu_rate(pid: int, seconds: float = 1.0) -> float:
    before = server_cpu_seconds(pid)
    time.sleep(seconds)
    return (server_cpu_seconds(pid) - before) / seconds


def timed(pid: int, body: Body, n: int, idle_rate: float) -> float:
    """Server CPU-s per command of one loop of `n`."""
    before, started = server_cpu_seconds(pid), time.monotonic()
    body(n)
    spent = server_cpu_seconds(pid) - before - idle_rate * (time.monotonic() - started)
    return spent / n


def measure(setup: Callable[[Database[Doc]], Body], n: int) -> tuple[float, float, str]:
    """(server CPU-s per command, a ping's on the same server, load) on a fresh server."""
    with server() as db_server, client(db_server.uri, retryWrites=False) as mongo:
        pid = db_server.process.pid
        db = mongo["costs"]
        body = setup(db)
        body(min(50, n))  # warm: first touches, the collection's tables
        idle = idle_cpu_rate(pid)
        per_command = timed(pid, body, n, idle)
        per_ping = timed(pid, ping(db), max(n, 1000), idle)
        while OPENED:
            OPENED.pop().close()
        return per_command, per_ping, load()


def measure_stream_wakeups(n: int, streams: int) -> tuple[float, float, float, str]:
    """Writes no stream watches (updates of a run's heartbeat field), first with no stream open, then with
    `streams` open: (extra server CPU-s per getMore, getMores per write, a ping's, load)."""
    with server() as db_server, client(db_server.uri, retryWrites=False) as mongo:
        pid = db_server.process.pid
        db = mongo["costs"]
        body = update_by_id(W1, indexed=False, collection="job_runs")(db)
        body(50)
        idle = idle_cpu_rate(pid)
        alone = timed(pid, body, n, idle)
        with idle_streams(db_server.uri, "costs", streams):
            time.sleep(0.5)
            before = mongo.admin.command("serverStatus")["opcounters"]["getmore"]
            woken = timed(pid, body, n, idle)
            getmores = mongo.admin.command("serverStatus")["opcounters"]["getmore"] - before
        per_ping = timed(pid, ping(db), 1000, idle)
        per_getmore = (woken - alone) * n / max(getmores, 1)
        return per_getmore, getmores / n, per_ping, load()


KINDS: list[tuple[str, Callable[[Database[Doc]], Body], float]] = [
    # (label, setup, share of --ops: the slow kinds run fewer)
    ("ping (the unit)", ping, 1.0),
    ("find_one by _id (job_runs)", find_one_by_id, 1.0),
    ("update_one by _id, w:1, unindexed field (plain collection)", update_by_id(W1, False), 1.0),
    ("update_one by _id, majority+j:true, unindexed field (plain)", update_by_id(DURABLE, False), 1.0),
    (
        f"update_one by _id, w:1, status+startedAt (job_runs, {RUN_INDEXES} indexes)",
        update_by_id(W1, True, "job_runs"),
        1.0,
    ),
    ("update_one by _id, w:1, status+startedAt (plain, _id only)", update_by_id(W1, True), 1.0),
    (
        f"update_one by _id+status+claimedBy, w:1, status+startedAt (job_runs, {RUN_INDEXES} indexes)",
        update_by_id(W1, True, "job_runs", as_outcome=True),
        1.0,
    ),
    (
        "update_one by _id+status+claimedBy, w:1, status+startedAt (job_runs, 3 claim-path indexes)",
        update_by_id(W1, True, "job_runs", as_outcome=True, only=CLAIM_PATH_INDEXES),
        1.0,
    ),
    (f"insert_one run doc, w:1 (job_runs, {RUN_INDEXES} indexes)", insert_runs(W1, "job_runs"), 1.0),
    ("insert_one run doc, w:1 (plain, _id only)", insert_runs(W1, "plain"), 1.0),
    ("insert_one run doc, majority+j:true (job_runs)", insert_runs(DURABLE, "job_runs"), 1.0),
    ("new connection + handshake + ping + close (raw)", raw_connection, 1.0),
    ("pymongo client life: 2 connections, ping, close", client_life, 0.3),
    ("update_one w:1 retryable, 0 records held", retryable_updates(0), 1.0),
    ("update_one w:1 retryable, 5,000 records held", retryable_updates(5000), 1.0),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=1000, help="commands per timed loop")
    parser.add_argument("--repeat", type=int, default=3, help="fresh servers per kind (the median is printed)")
    parser.add_argument("--streams", type=int, default=2, help="idle change streams for the wake-up row")
    parser.add_argument("--only", default=None, help="only the kinds whose label contains this")
    args = parser.parse_args()
    print(f"load average at the start: {load()}")
    print("| kind | server CPU-s per 1,000 | x a ping's | load average (1, 5, 15 min) |")
    print("|---|---:|---:|---|")
    for label, setup, share in KINDS:
        if args.only and args.only not in label:
            continue
        n = max(100, int(args.ops * share))
        found = [measure(setup, n) for _ in range(args.repeat)]
        cpu = statistics.median(per for per, _, _ in found)
        ratio = statistics.median(per / max(ping_cpu, 1e-9) for per, ping_cpu, _ in found)
        print(f"| {label} | {cpu * 1000:.3f} | {ratio:.1f} | {found[-1][2]} |", flush=True)
    if args.only is None or "getMore" in args.only:
        woken = [measure_stream_wakeups(args.ops, args.streams) for _ in range(args.repeat)]
        cpu = statistics.median(w[0] for w in woken)
        ratio = statistics.median(w[0] / max(w[2], 1e-9) for w in woken)
        per_write = statistics.median(w[1] for w in woken)
        print(
            f"| getMore of an idle change stream woken by an unrelated write ({args.streams} streams,"
            f" {per_write:.2f} getMores per write) | {cpu * 1000:.3f} | {ratio:.1f} | {woken[-1][3]} |"
        )


if __name__ == "__main__":
    main()
