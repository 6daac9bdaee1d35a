"""The warm executor: one process with the executor's modules imported, forking a child per run.

A cold `python -P -m syncjobs.executor` pays for the interpreter and its imports on every run; a child
forked from here starts with them done. The worker starts this server (`worker/fork_server.py`) and
talks to it over a Unix socket (SOCK_SEQPACKET, one JSON object per message):

- worker -> server: `{"id": n, "args": [...], "env": {...}}` with four descriptors (`socket.send_fds`):
  the read end of a "go" pipe (after the go byte, the child's stdin: the run channel) and the write ends
  of the child's stdout, stderr and exit-status pipes;
- server -> worker: `{"ready": true}` once imported; `{"id": n, "pid": p}` right after each fork (or
  `{"id": n, "error": "..."}`); `{"pid": p, "returncode": rc}` when that child ends (negative: signal).

The child is what a cold executor would be: a session of its own (killed as a group on timeout), the
NDJSON protocol on stdout and logs on stderr, the same exit codes, exactly the environment sent, signal
handlers and `random` as in a fresh interpreter, none of the server's descriptors. It runs only once the
worker has its pid and sends the go byte, so a server that dies between fork and reply never leaves a
second copy of a run going. It does not die with the server (a restarted server does not lose the runs
in flight): it dies with the worker, through the worker's lifeline pipe, whose end of file it watches.
The server opens no event loop and no database client (it checks it has no second thread before each
fork), so a child inherits neither. It is a fresh interpreter started with the executor's allowlisted
environment (`shared.executor_protocol.executor_environment`): it never held a control secret to leak
into a child's memory, and it is non-dumpable, as its children are. The keys and message sizes are
`shared.executor_protocol`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures.thread  # noqa: F401  (the loop's resolver threads import it lazily, per child)
import contextlib
import gc
import json
import linecache
import os
import random
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Any

import pymongo.asynchronous.mongo_client
import pymongo.asynchronous.settings

# Imported once here, so that a run pays only for a fork.
import syncjobs.executor.host
import syncjobs.executor.run
import syncjobs.executor.sources.command
import syncjobs.executor.sources.http
import syncjobs.executor.sources.mongodb
import syncjobs.shared.mongo
from bson import ObjectId
from syncjobs.executor import cli
from syncjobs.shared import executor_protocol as protocol
from syncjobs.shared.models import SyncJob
from syncjobs.shared.process import make_non_dumpable
from syncjobs.shared.run_spec import RunSpec
from syncjobs.shared.settings import Settings, SettingsError
from syncjobs.shared.tap_isolation import isolation

FDS_PER_REQUEST = 4


def warm_up() -> None:
    """Do once, here, what every child would otherwise do for the first time in its own copy of memory:
    glibc reads nsswitch.conf, /etc/hosts and resolv.conf and loads its NSS modules on the first name
    lookup (~4 ms of CPU a run); pydantic's first validation of the settings and of a run spec, and the
    first event loop, fill caches (~1-2 ms a run, in fewer copy-on-write pages). Nothing here may leave a
    thread, a socket or a loop open: the server checks for a second thread before each fork."""
    with contextlib.suppress(OSError):
        socket.getaddrinfo("localhost", None)
    with contextlib.suppress(SettingsError):
        Settings.from_env()
    sample_id = ObjectId()
    cli.build_parser().parse_args(["--run-id", str(sample_id), protocol.CHANNEL_FLAG])
    job = SyncJob.model_validate({**_WARM_UP_JOB, "id": str(sample_id)})
    spec = RunSpec(sample_id, job, {"config": {}}, {"config": {}}, frozenset(), frozenset())
    RunSpec.from_line(spec.to_line(), sample_id)
    asyncio.new_event_loop().close()
    isolation()  # probed once here (a subprocess), not in every child that runs a tap
    for module in _ON_A_CLIENTS_STACK:
        linecache.getlines(module.__file__ or "")


# pymongo formats the stack where each client is created (to name an unclosed one): in a fresh child that
# reads the source of every module on it (~5 ms of a run's CPU). Read once here, the children share it.
_ON_A_CLIENTS_STACK = (
    sys.modules["__main__"],
    cli,
    asyncio.runners,
    asyncio.base_events,
    asyncio.events,
    syncjobs.executor.run,
    syncjobs.executor.sources.mongodb,
    syncjobs.shared.mongo,
    pymongo.asynchronous.mongo_client,
    pymongo.asynchronous.settings,
)


# A job as a run spec carries it, for the warm-up's validation only.
_WARM_UP_JOB = {
    "workspace_id": "000000000000000000000000",
    "name": "warm-up",
    "data_source_id": "000000000000000000000000",
    "destination_database_id": "000000000000000000000000",
    "schedule": {"cron": "0 * * * *", "timezone": "UTC"},
    "sync_mode": "full",
    "entities": {"include": None, "exclude": []},
    "enabled": True,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


def serve(control: socket.socket, lifeline: int) -> int:
    """Fork a child per request until the worker closes its end of `control`."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD interrupts select and wakes us
    own_fds = [control.fileno(), wake_read, wake_write]
    gc.freeze()  # what is imported stays out of the children's collections: fewer copy-on-write pages
    _send(control, {protocol.KEY_READY: True})
    while True:
        readable, _, _ = select.select([control.fileno(), wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(control)
        if control.fileno() in readable:
            data, fds, _, _ = socket.recv_fds(control, protocol.MAX_FORK_REQUEST_BYTES, FDS_PER_REQUEST)
            if not data:
                return 0  # the worker is gone or done with us; children go on until its lifeline closes
            _start(control, json.loads(data), fds, lifeline, own_fds)


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    control.send(json.dumps(message).encode())


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, {protocol.KEY_PID: pid, protocol.KEY_RETURNCODE: os.waitstatus_to_exitcode(status)})


def _start(control: socket.socket, request: dict[str, Any], fds: list[int], lifeline: int, own_fds: list[int]) -> None:
    try:
        if len(fds) != FDS_PER_REQUEST:
            raise ValueError(f"a request carries {FDS_PER_REQUEST} descriptors, got {len(fds)}")
        if threading.active_count() != 1:
            raise RuntimeError("the fork server has a second thread (a database client?): it will not fork")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except (OSError, ValueError, RuntimeError) as exc:
        for fd in fds:
            os.close(fd)
        _send(control, {protocol.KEY_ID: request.get(protocol.KEY_ID), protocol.KEY_ERROR: str(exc)})
        return
    if pid == 0:
        code = 1
        try:
            code = _child(request, fds, lifeline, own_fds)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _send(control, {protocol.KEY_ID: request[protocol.KEY_ID], protocol.KEY_PID: pid})


def _child(request: dict[str, Any], fds: list[int], lifeline: int, own_fds: list[int]) -> int:
    go, stdout, stderr, status = fds
    os.setsid()
    _reset_signals()
    for fd in own_fds:
        os.close(fd)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.close(stdout)
    os.close(stderr)
    if os.read(go, 1) != b"1":  # the worker never learnt our pid (its server died): do not run
        return protocol.EXIT_NOT_STARTED
    os.dup2(go, 0)  # what the worker writes next on the go pipe is the run channel
    os.close(go)
    threading.Thread(target=_die_with_the_worker, args=(lifeline,), daemon=True).start()
    os.environ.clear()
    os.environ.update(request[protocol.KEY_ENV])
    random.seed()
    sys.argv = ["syncjobs.executor", *request[protocol.KEY_ARGS]]
    code = _run_cli(request[protocol.KEY_ARGS])
    os.write(status, str(code).encode())
    return code


def _run_cli(args: list[str]) -> int:
    """`raise SystemExit(main())` as `python -m syncjobs.executor` does, with the same exit codes."""
    try:
        code: Any = cli.main(args)
    except SystemExit as done:
        code = done.code
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _reset_signals() -> None:
    """Dispositions as a fresh interpreter has them."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _die_with_the_worker(lifeline: int) -> None:
    """Only the worker holds the lifeline's write end: end of file means it is gone, so we go, group and all."""
    while os.read(lifeline, 1):
        pass
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncjobs.executor.fork_server")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--lifeline-fd", type=int, required=True)
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    make_non_dumpable()  # and so is every child forked from here
    warm_up()
    try:
        return serve(control, args.lifeline_fd)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the worker went away while we answered
    finally:
        control.close()


if __name__ == "__main__":
    raise SystemExit(main())
