"""The worker-executor contract: the environment an executor gets, the result event, and the run channel's
answers (a malformed or failing request gets an error reply and writes nothing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId, Timestamp
from syncjobs.shared.executor_protocol import (
    OP_CURSOR_LOAD,
    OP_CURSOR_SAVE,
    OP_PROGRESS,
    answer,
    ask_line,
    executor_environment,
    is_result,
    loads,
    result_event,
)
from syncjobs.shared.store.sync_state import CHANGE_STREAM_KEY


class MemoryControl:
    def __init__(self, fail: bool = False) -> None:
        self.cursors: dict[str, Any] = {}
        self.progress: list[dict[str, Any]] = []
        self.fail = fail

    async def load_cursor(self, entity: str) -> Any | None:
        return self.cursors.get(entity)

    async def save_cursor(self, entity: str, cursor: Any) -> None:
        if self.fail:
            raise RuntimeError("the control database is down")
        self.cursors[entity] = cursor

    async def record_progress(self, progress: dict[str, Any]) -> None:
        self.progress.append(progress)


async def ask(control: MemoryControl, request_id: int, op: str, **fields: Any) -> dict[str, Any]:
    """A request as the executor writes it, answered as the worker answers it, read as the executor reads it."""
    reply = loads(await answer(loads(ask_line(request_id, op, **fields)), control))
    assert isinstance(reply, dict) and reply["id"] == request_id
    return reply


def test_an_executor_gets_no_control_setting() -> None:
    worker = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "SYNCJOBS_MONGODB_URI": "mongodb://control",
        "SYNCJOBS_SECRET_KEYS": "key",
        "SYNCJOBS_ADMIN_TOKEN": "admin",
        "SYNCJOBS_ALLOWED_NETWORKS": "10.0.0.0/8",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token",
    }
    assert executor_environment(worker) == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "SYNCJOBS_ALLOWED_NETWORKS": "10.0.0.0/8",
    }


def test_the_result_event_is_built_and_checked_in_one_place() -> None:
    event = {"event": "result", **result_event("failed", stats={}, details=[], error="boom", dry_run=True)}
    assert event == {"event": "result", "status": "failed", "stats": {}, "details": [], "error": "boom", "dryRun": True}
    assert is_result(event)
    assert not is_result({**event, "stats": "all of them"}) and not is_result({**event, "error": 1})


async def test_cursors_keep_their_bson_types_through_the_channel() -> None:
    control = MemoryControl()
    cursor = {"at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC), "id": ObjectId()}
    assert (await ask(control, 1, OP_CURSOR_SAVE, entity="users", cursor=cursor))["ok"] is True
    assert (await ask(control, 2, OP_CURSOR_LOAD, entity="users"))["value"] == cursor
    assert (await ask(control, 3, OP_CURSOR_LOAD, entity="other"))["value"] is None
    resume_point = {"token": {"_data": "8263A1"}, "clusterTime": Timestamp(1_770_000_000, 3)}  # a changeStream's
    assert (await ask(control, 4, OP_CURSOR_SAVE, entity=CHANGE_STREAM_KEY, cursor=resume_point))["ok"] is True
    assert (await ask(control, 5, OP_CURSOR_LOAD, entity=CHANGE_STREAM_KEY))["value"] == resume_point


async def test_a_malformed_or_failing_request_gets_an_error_and_writes_nothing() -> None:
    control = MemoryControl()
    for op, fields in (
        ("drop", {"entity": "users"}),
        (OP_CURSOR_SAVE, {"entity": "", "cursor": 1}),
        (OP_CURSOR_SAVE, {"entity": "users"}),
        (OP_CURSOR_LOAD, {"entity": ["users"]}),
        (OP_PROGRESS, {"progress": {"entity": "users", "read": -1}}),
        (OP_PROGRESS, {"progress": {"entity": "users", "status": "succeeded"}}),
        (OP_PROGRESS, {"progress": "half"}),
    ):
        reply = await ask(control, 7, op, **fields)
        assert reply["ok"] is False and reply["error"], (op, fields)
    assert control.cursors == {} and control.progress == []
    assert (await ask(MemoryControl(fail=True), 8, OP_CURSOR_SAVE, entity="u", cursor=1))["error"].startswith(
        "the control database did not answer"
    )
    progress = {"entity": "users", "entitiesDone": 0, "entitiesTotal": 2, "read": 5}
    assert (await ask(control, 9, OP_PROGRESS, progress=progress))["ok"] is True
    assert control.progress == [progress]
