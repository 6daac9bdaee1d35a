"""A pause with `until`, over REST against real processes (an api and two worker replicas): the leader
holds the fires, is SIGKILLed before `until`, and the replica that takes over ends the pause by itself,
once, at its first fire from `until` on; the fires from then on run."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from syncjobs.shared.mongo import Database, Document

from tests.fixtures.api_process import ADMIN_TOKEN, api_process, call
from tests.fixtures.eventually import eventually
from tests.fixtures.worker_processes import Workers

pytestmark = pytest.mark.slow
EVERY_TWO_SECONDS = "*/2 * * * * *"
PAUSE_SECONDS = 14  # room for: the pause seen, a held fire, the kill, a 2 s lease running out, a takeover
NOTE = "vendor maintenance"


async def _api(base_url: str, method: str, path: str, body: object | None = None) -> Any:
    """The answer's body; any status but 2xx fails the test."""
    status, answer = await asyncio.to_thread(call, base_url, ADMIN_TOKEN, method, path, body)
    assert 200 <= status < 300, (method, path, status, answer)
    return answer


async def _make_job(base_url: str, mongo_uri: str) -> tuple[str, str]:
    """A workspace and a job of it that fires every two seconds (named `ok` for the fake executor)."""
    workspace = await _api(base_url, "POST", "/api/workspaces", {"name": "pause-failover"})
    ws = f"/api/workspaces/{workspace['id']}"
    config = {"uri": mongo_uri, "database": "pause_failover_unused"}
    source = await _api(base_url, "POST", f"{ws}/data-sources", {"name": "crm", "kind": "mongodb", "config": config})
    destination = await _api(
        base_url, "POST", f"{ws}/destinations", {"name": "dw", "kind": "mongodb", "config": config}
    )
    job = await _api(
        base_url,
        "POST",
        f"{ws}/sync-jobs",
        {
            "name": "ok",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": EVERY_TWO_SECONDS, "timezone": "UTC"},
            # On a loaded machine: a slow run skips no fire for overlap, and a late decision (several
            # fires due at once) misses none of the last ten.
            "overlap": "allow",
            "catchUpFires": 10,
        },
    )
    return ws, f"{ws}/sync-jobs/{job['id']}"


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _fires(base_url: str, job_path: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    query = f"from={start.isoformat().replace('+00:00', 'Z')}&to={end.isoformat().replace('+00:00', 'Z')}"
    page = await _api(base_url, "GET", f"{job_path}/fires?{query}")
    assert page["next"] is None
    return list(page["items"])


async def _leader(db: Database) -> Document | None:
    return await db.worker_locks.find_one({"_id": "scheduler"})


async def _led_by(db: Database, worker_id: str) -> Document | None:
    lease = await _leader(db)
    return lease if lease is not None and lease["owner"] == worker_id else None


async def test_a_pause_with_until_resumes_once_after_the_leader_is_sigkilled(
    workers: Workers, db: Database, db_name: str, mongo_uri: str, tmp_path: Path
) -> None:
    workers.start("w1")
    await eventually(lambda: _led_by(db, "w1"), "w1 leads", within=60)
    workers.start("w2")
    await eventually(lambda: _logged(workers, "w2", "standing_by"), "w2 stands by", within=60)
    with api_process(mongo_uri, db_name, tmp_path / "api.log") as base_url:
        ws, job_path = await _make_job(base_url, mongo_uri)
        created = datetime.now(UTC).replace(microsecond=0)
        await eventually(lambda: _succeeded_since(base_url, job_path, created), "a fire ran", within=60, every=0.25)

        until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=PAUSE_SECONDS)
        paused = await _api(base_url, "POST", f"{job_path}/pause", {"until": until.isoformat(), "note": NOTE})
        assert (paused["paused"], _instant(paused["pausedUntil"]), paused["pauseNote"]) == (True, until, NOTE)
        status = await _api(base_url, "GET", f"{job_path}/status")
        assert (status["paused"], _instant(status["pausedUntil"]), status["pauseNote"]) == (True, until, NOTE)

        held = await eventually(
            lambda: _first_held(base_url, job_path, created),
            "a fire held by the pause",
            within=PAUSE_SECONDS,
            every=0.25,
        )
        held_run = await _api(base_url, "GET", f"{ws}/runs/{held['runId']}")
        assert held_run["workerId"] == "w1", held_run  # the first leader held it
        leader = await _leader(db)
        assert leader is not None and leader["owner"] == "w1"
        workers.processes["w1"].send_signal(signal.SIGKILL)
        workers.processes["w1"].wait()
        killed_at = datetime.now(UTC)
        assert killed_at < until, f"the kill came {(killed_at - until).total_seconds():.1f}s after `until`"
        second_term = await eventually(lambda: _led_by(db, "w2"), "w2 leads", within=60, every=0.1)
        assert second_term["fencingToken"] == leader["fencingToken"] + 1

        resumed = await eventually(lambda: _resumed(base_url, job_path), "the pause ended", within=60, every=0.25)
        assert (resumed["pausedUntil"], resumed["pauseNote"]) == (None, None)
        await eventually(
            lambda: _succeeded_since(base_url, job_path, until, count=2),
            "fires from `until` on ran",
            within=60,
            every=0.25,
        )
        fires = await _fires(base_url, job_path, created, datetime.now(UTC))
        history = await _api(base_url, "GET", f"{job_path}/history")

    during = [fire for fire in fires if _instant(held["scheduledFor"]) <= _instant(fire["scheduledFor"]) < until]
    assert {(fire["outcome"], fire["reason"]) for fire in during} == {("skipped", "paused")}, during
    after = [fire for fire in fires if _instant(fire["scheduledFor"]) >= until]
    assert after[0]["outcome"] == "succeeded", after  # the first fire from `until` on ran and ended the pause
    assert {fire["outcome"] for fire in after} <= {"succeeded", "pending", "running", "upcoming"}, after

    resumes = [entry for entry in history["items"] if entry["action"] == "resume"]
    assert [(entry["actor"]["name"], _instant(entry["at"])) for entry in resumes] == [("scheduler", until)], history
    assert resumes[0]["changes"] == [{"field": "paused", "old": True, "new": False}]
    [pause] = [entry for entry in history["items"] if entry["action"] == "pause"]
    assert pause["note"] == NOTE
    assert "job_resumed" not in workers.log("w1")
    assert workers.log("w2").count("job_resumed") == 1


async def _logged(workers: Workers, worker_id: str, event: str) -> bool:
    return event in workers.log(worker_id)


async def _succeeded_since(base_url: str, job_path: str, since: datetime, count: int = 1) -> bool:
    fires = await _fires(base_url, job_path, since, datetime.now(UTC) + timedelta(seconds=1))
    return sum(1 for fire in fires if fire["outcome"] == "succeeded") >= count


async def _first_held(base_url: str, job_path: str, since: datetime) -> dict[str, Any] | None:
    fires = await _fires(base_url, job_path, since, datetime.now(UTC) + timedelta(seconds=1))
    return next((fire for fire in fires if (fire["outcome"], fire["reason"]) == ("skipped", "paused")), None)


async def _resumed(base_url: str, job_path: str) -> dict[str, Any] | None:
    status: dict[str, Any] = await _api(base_url, "GET", f"{job_path}/status")
    return status if not status["paused"] else None
