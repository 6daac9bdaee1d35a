"""Per-run webhook events against real processes: an api, a worker and its executors, a local receiver.

The webhook is subscribed through the REST API; each run event arrives signed, once, and is in the
webhook's delivery log. A run cancelled through the api announces `run.cancelled`, whether it was pending
(the api ends it) or running (its replica kills the executor and ends it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from syncjobs.shared.mongo import Database

from tests.fixtures.api_process import ADMIN_TOKEN, api_process, call
from tests.fixtures.eventually import eventually
from tests.fixtures.worker_jobs import file_written, make_job
from tests.fixtures.worker_processes import Workers
from tests.integration.test_webhooks_delivery import Receiver, receiver

pytestmark = pytest.mark.slow
__all__ = ["receiver"]  # the fixture, shared with the alert delivery tests

SECRET = "run-events-secret-0123456789"
ONCE = {"maxAttempts": 1, "backoffSeconds": 0}


async def _api(base_url: str, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    return await asyncio.to_thread(call, base_url, ADMIN_TOKEN, method, path, body)


def _signed(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Syncjobs-Signature"], expected)


async def test_run_events_reach_a_subscribed_webhook_signed_and_logged(
    workers: Workers, db: Database, db_name: str, mongo_uri: str, tmp_path: Path, receiver: Receiver
) -> None:
    ok = await make_job(db, "ok", "0 0 1 1 *", datetime.now(UTC), retry=ONCE)
    fails = await make_job(db, "fail", "0 0 1 1 *", datetime.now(UTC), retry=ONCE)
    hangs = await make_job(db, f"hang:{tmp_path / 'pids'}", "0 0 1 1 *", datetime.now(UTC), retry=ONCE)
    ws = ok["workspaceId"]
    events = ["run.started", "run.succeeded", "run.failed", "run.cancelled"]
    with api_process(mongo_uri, db_name, tmp_path / "api.log") as base_url:
        status, unknown = await _api(
            base_url, "POST", f"/api/workspaces/{ws}/webhooks", {"url": receiver.url, "events": ["run.exploded"]}
        )
        assert status == 422 and unknown["error"]["details"][0]["field"].startswith("events"), unknown
        status, hook = await _api(
            base_url,
            "POST",
            f"/api/workspaces/{ws}/webhooks",
            {"url": receiver.url, "events": events, "secret": SECRET},
        )
        assert (status, hook["events"]) == (201, events), hook

        # No worker yet: the run stays pending and its cancel ends it at once, in the api.
        _, pending = await _api(base_url, "POST", f"/api/workspaces/{ws}/sync-jobs/{ok['_id']}/run")
        status, cancelled = await _api(base_url, "POST", f"/api/workspaces/{ws}/runs/{pending['runId']}/cancel")
        assert (status, cancelled["status"]) == (200, "cancelled"), cancelled

        workers.start("w1")
        _, succeeded = await _api(base_url, "POST", f"/api/workspaces/{ws}/sync-jobs/{ok['_id']}/run")
        _, failed = await _api(base_url, "POST", f"/api/workspaces/{ws}/sync-jobs/{fails['_id']}/run")
        _, killed = await _api(base_url, "POST", f"/api/workspaces/{ws}/sync-jobs/{hangs['_id']}/run")
        await eventually(lambda: file_written(tmp_path / "pids"), "the hanging executor started", within=60)
        status, answer = await _api(base_url, "POST", f"/api/workspaces/{ws}/runs/{killed['runId']}/cancel")
        assert (status, answer["cancelRequested"]) == (200, True), answer
        await asyncio.wait_for(receiver.wait_for(7), 90)
        assert all(_signed(headers, body) for headers, body in receiver.received)
        by_run: dict[str, list[str]] = {}
        for (headers, _), event in zip(receiver.received, receiver.events(), strict=True):
            assert headers["X-Syncjobs-Event"] == event["event"] and event["workspaceId"] == str(ws)
            assert event["run"]["id"] == event["runId"]
            by_run.setdefault(event["runId"], []).append(event["event"])
        assert by_run == {
            pending["runId"]: ["run.cancelled"],
            succeeded["runId"]: ["run.started", "run.succeeded"],
            failed["runId"]: ["run.started", "run.failed"],
            killed["runId"]: ["run.started", "run.cancelled"],
        }
        ended = next(e for e in receiver.events() if e["event"] == "run.failed")
        assert ended["job"] == {"id": str(fails["_id"]), "name": "fail"} and ended["run"]["status"] == "failed"
        assert ended["run"]["error"] and ended["run"]["trigger"] == "manual"

        status, log = await _api(base_url, "GET", f"/api/workspaces/{ws}/webhooks/{hook['id']}/deliveries")
        assert status == 200, log
        assert sorted((d["event"], d["outcome"], d["responseStatus"]) for d in log["items"]) == sorted(
            (name, "delivered", 200) for names in by_run.values() for name in names
        )
    assert await db.webhook_events.count_documents({}) == 0  # every queued event delivered and gone
    assert "run_event_not_queued" not in workers.log("w1")
