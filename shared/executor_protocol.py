"""The worker-executor contract, in one place: the command, its exit codes, its environment, the `result`
event, the fork server's messages, and the run channel.

The executor runs tenant code and opens tenant connections, so it holds nothing of the control plane (no
control URI, no secret keys, no admin token, no control client). Its parent (the worker, or `syncjobs
exec` run by hand) opens the run's spec and serves what the run needs from the control database over the
executor's own pipes, one JSON line each way per request:

- parent -> stdin: first `{"spec": ...}` (the run's spec with its connection settings opened), then one
  reply per request, `{"id": n, "ok": true, "value": ...}` or `{"id": n, "ok": false, "error": "..."}`;
- stdout -> parent: the NDJSON events, among them `{"event": "ask", "id": n, "op": ..., ...}` requests:
  `cursor.load {entity}`, `cursor.save {entity, cursor}`, `progress {progress}`. The parent answers them
  for this run and its job only; values travel as canonical extended JSON, so BSON types survive.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Protocol

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

EXECUTOR_MODULE = "syncjobs.executor"
EXECUTOR_COMMAND = (sys.executable, "-P", "-m", EXECUTOR_MODULE)
CHANNEL_FLAG = "--channel"  # the spec and the control database come over stdin/stdout from the parent
HOST_FLAG = "--host"  # `--host WORKSPACE`: a workspace's executor host (executor/host.py), its stdin a socket

EXIT_OK = 0
EXIT_FAILED = 1  # the run or one of its entities failed
EXIT_USAGE = 2  # a bad invocation: the run never started
EXIT_NOT_STARTED = 3  # the worker gave up on a forked child before it ran (never a run's outcome)

# An executor sees these, and nothing else of its parent's environment (no control URI, no keys, no token).
EXECUTOR_ENV_NAMES = frozenset(
    {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "HOME", "TZ", "TMPDIR", "PYTHONHOME", "PYTHONPATH"}
)
EXECUTOR_SETTINGS = frozenset(
    {
        "SYNCJOBS_DATABASE",  # the control database's name, to refuse it on the control server
        "SYNCJOBS_LOG_LEVEL",
        "SYNCJOBS_ALLOWED_NETWORKS",
        "SYNCJOBS_CONTROL_CLUSTER_DATABASES",
        "SYNCJOBS_TAPS",
        "SYNCJOBS_TAPS_FILE",
        "SYNCJOBS_TAP_USER",
        "SYNCJOBS_EXECUTOR_MEMORY_MB",
    }
)

# The fork server's messages (one JSON object per SOCK_SEQPACKET message) and their two size limits.
KEY_ID, KEY_ARGS, KEY_ENV = "id", "args", "env"
KEY_READY, KEY_PID, KEY_ERROR, KEY_RETURNCODE = "ready", "pid", "error", "returncode"
MAX_FORK_REQUEST_BYTES = 1 << 20  # worker -> server: one run's argv and environment
MAX_FORK_REPLY_BYTES = 1 << 16  # server -> worker: ready, a pid, an exit status; a child's status pipe

# A run handed to an executor host: `{"id": n, "args": [...]}` with four descriptors (the run channel's read
# end, the write ends of the run's stdout, stderr and status pipes); the status pipe gets `<exit code>`, or
# `<exit code> retire` when the host serves no more runs after this one.
HOST_FDS_PER_RUN = 4
RETIRE = "retire"


def host_status(code: int, *, retire: bool) -> bytes:
    return f"{code} {RETIRE}".encode() if retire else str(code).encode()


def parse_host_status(written: bytes) -> tuple[int, bool] | None:
    """(exit code, retire) from a run's status pipe; None when the host wrote none (it died in the run)."""
    parts = written.decode("ascii", "replace").split()
    if not parts or not parts[0].lstrip("-").isdigit():
        return None
    return int(parts[0]), parts[1:] == [RETIRE]


MAX_EVENT_LINE_BYTES = 1 << 20  # an executor's stdout line longer than this is dropped
MAX_CHANNEL_LINE_BYTES = 16 << 20  # a line on the executor's stdin (the spec is the longest)

ASK = "ask"
OP_CURSOR_LOAD, OP_CURSOR_SAVE, OP_PROGRESS = "cursor.load", "cursor.save", "progress"
PROGRESS_COUNTS = frozenset(
    {"entitiesDone", "entitiesTotal", "read", "inserted", "updated", "deleted", "unchanged", "failed"}
)
MAX_ENTITY_CHARS = 1024
_JSON = CANONICAL_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)


class ChannelError(Exception):
    """A channel message is not what the contract says; the message names what is wrong."""


def executor_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The allowlisted part of `env` an executor (and the fork server) may see."""
    allowed = EXECUTOR_ENV_NAMES | EXECUTOR_SETTINGS
    return {name: value for name, value in env.items() if name in allowed}


def executor_argv(run_id: str, *, dry_run: bool = False, batch_size: int | None = None) -> list[str]:
    """The default executor's command line for one run, served over the channel."""
    argv = [*EXECUTOR_COMMAND, "--run-id", run_id, CHANNEL_FLAG]
    if dry_run:
        argv.append("--dry-run")
    if batch_size is not None:
        argv += ["--batch-size", str(batch_size)]
    return argv


def result_event(
    status: str,
    *,
    stats: dict[str, Any],
    details: list[Any],
    error: str | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    """The fields of a run's last event: its status, stats and per-entity details (and error, dry run)."""
    fields: dict[str, Any] = {"status": status, "stats": stats, "details": details}
    if error is not None:
        fields["error"] = error
    if dry_run is not None:
        fields["dryRun"] = dry_run
    return fields


def is_result(event: Mapping[str, Any]) -> bool:
    """A result event whose fields have the types a job_runs document stores."""
    return (
        isinstance(event.get("stats"), dict | None)
        and isinstance(event.get("details"), list | None)
        and isinstance(event.get("error"), str | None)
    )


def dumps(value: Any) -> bytes:
    """One channel line (canonical extended JSON, so a cursor's datetime or ObjectId comes back as one)."""
    return json_util.dumps(value, json_options=_JSON).encode() + b"\n"


def loads(line: bytes | str) -> Any:
    try:
        return json_util.loads(line, json_options=_JSON)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ChannelError(f"not a JSON line: {exc}") from None


def ask_line(request_id: int, op: str, **fields: Any) -> bytes:
    return dumps({"event": ASK, "id": request_id, "op": op, **fields})


class RunControl(Protocol):
    """What a run needs of the control database: its job's cursors and a progress note on the run."""

    async def load_cursor(self, entity: str) -> Any | None: ...

    async def save_cursor(self, entity: str, cursor: Any) -> None: ...

    async def record_progress(self, progress: dict[str, Any]) -> None: ...


async def answer(request: Mapping[str, Any], control: RunControl) -> bytes:
    """The reply line to one `ask` event: the request checked field by field, then served by `control`
    (scoped by its maker to one run and its job). A malformed request gets an error reply, never a write."""
    request_id = request.get("id")
    try:
        if not isinstance(request_id, int):
            raise ChannelError("a request needs an integer `id`")
        value = await _serve(request, control)
    except ChannelError as exc:
        return dumps({"id": request_id, "ok": False, "error": str(exc)})
    except Exception as exc:  # the control database's error: the run hears of it, the parent goes on
        return dumps({"id": request_id, "ok": False, "error": f"the control database did not answer: {exc}"})
    return dumps({"id": request_id, "ok": True, "value": value})


async def _serve(request: Mapping[str, Any], control: RunControl) -> Any:
    op = request.get("op")
    if op == OP_PROGRESS:
        await control.record_progress(_progress(request.get("progress")))
        return None
    entity = request.get("entity")
    if not isinstance(entity, str) or not entity or len(entity) > MAX_ENTITY_CHARS or "\x00" in entity:
        raise ChannelError(f"`entity` must be a name of 1 to {MAX_ENTITY_CHARS} characters")
    if op == OP_CURSOR_LOAD:
        return await control.load_cursor(entity)
    if op == OP_CURSOR_SAVE:
        if "cursor" not in request or request["cursor"] is None:
            raise ChannelError("`cursor.save` needs a `cursor`")
        await control.save_cursor(entity, request["cursor"])
        return None
    raise ChannelError(f"unknown op {op!r}")


def _progress(progress: Any) -> dict[str, Any]:
    if not isinstance(progress, dict) or not isinstance(progress.get("entity"), str):
        raise ChannelError("`progress` must be an object naming its `entity`")
    counts = {key: value for key, value in progress.items() if key != "entity"}
    if set(counts) - PROGRESS_COUNTS or not all(type(v) is int and v >= 0 for v in counts.values()):
        raise ChannelError(f"`progress` holds `entity` and counts among {sorted(PROGRESS_COUNTS)}")
    return {"entity": progress["entity"][:MAX_ENTITY_CHARS], **counts}


@dataclass(frozen=True)
class RunChannel:
    """One run's channel as its parent holds it: the spec line to send first, and who answers requests."""

    spec_line: bytes
    control: RunControl
