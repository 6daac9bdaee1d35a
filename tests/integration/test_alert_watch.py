"""A short success of a job nothing keeps watched is not evaluated for alerts (issue 22): it could not
have changed one. Each scenario writes its outcomes through the real writers (the job's outcome with
`alertWatchUntil`, a skipped or missed fire's watch) and, at every run the worker would not evaluate,
runs the full evaluation anyway: it must announce nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from syncjobs.shared.alerts import needs_evaluation, outcome_is_watched
from syncjobs.shared.clock import to_ms
from syncjobs.shared.models import RunStatus
from syncjobs.shared.mongo import Database, Document
from syncjobs.shared.settings import AlertThresholds, Settings
from syncjobs.shared.store import sync_jobs
from syncjobs.shared.store.run_stats import ALERT_WINDOW
from syncjobs.worker.notifier import DeliveryPolicy, on_run_finished

from tests.fixtures.fake_clock import FakeClock
from tests.integration.monitoring_helpers import insert_job, insert_runs

T0 = datetime(2026, 6, 1, tzinfo=UTC)
THRESHOLDS = AlertThresholds(failure_rate=0.5, min_executions=3, consecutive_failures=3, long_duration_ms=60_000)
SHORT, LONG = 1_000, 200_000
NO_WAIT = DeliveryPolicy(attempts=1, first_backoff_seconds=0, timeout_seconds=1)

# (hours after T0, what happened): "ok" a short success, "long" a long success, or a run status.
SCENARIOS = {
    # Two failures, then a success makes the third execution: the failure rate (2/3) opens an alert.
    "a success reaching min_executions": [(0, "failed"), (1, "failed"), (2, "ok"), (30, "ok"), (31, "ok")],
    # The mean over the window: a long run, then short ones; a day later the long run ages out.
    "a long run ageing out of the window": [(0, "long"), (1, "ok"), (2, "ok"), (25, "ok"), (50, "ok")],
    # A fire the leader wrote missed (no evaluation then), then successes.
    "a missed fire": [(0, "ok"), (1, "missed"), (2, "ok"), (3, "ok"), (26, "ok"), (27, "ok")],
    "a skipped fire": [(0, "ok"), (1, "skipped"), (2, "ok"), (26, "ok")],
    # Three failures open the streak alert; successes resolve it, later ones are not evaluated.
    "a failure streak": [(0, "failed"), (1, "timed_out"), (2, "failed"), (3, "ok"), (4, "ok"), (40, "ok")],
    "only short successes": [(0, "ok"), (1, "ok"), (2, "ok")],
}


async def _happen(db: Database, job: Document, what: str, at: datetime) -> tuple[ObjectId, bool]:
    """Write one event as the worker does; the run's id and whether the worker would evaluate after it."""
    status = "succeeded" if what in ("ok", "long") else what
    duration = LONG if what == "long" else SHORT
    [run_id] = await insert_runs(db, job, [status], at, duration_ms=duration)
    if what in ("missed", "skipped"):  # the leader's (or the overlap's) write beside the fire
        await sync_jobs.watch_alerts(db, job["_id"], at + ALERT_WINDOW)
        return run_id, False  # no run ended: nothing evaluates now
    claimed = await sync_jobs.find_job_doc(db, job["_id"])  # the claimer's read, before the run
    assert claimed is not None
    watched = outcome_is_watched(status, duration, THRESHOLDS)
    watch_until = at + ALERT_WINDOW if watched else None
    outcome = sync_jobs.JobOutcome(job["_id"], RunStatus(status), at, None, duration, watch_alerts_until=watch_until)
    assert await sync_jobs.record_run_outcomes(db, [outcome]) == {job["_id"]}
    return run_id, watched or needs_evaluation("full", claimed["alertWatchUntil"], at)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_a_run_not_evaluated_could_not_have_changed_an_alert(db: Database, settings: Settings, name: str) -> None:
    settings = settings.with_overrides(alerts=THRESHOLDS)
    job = await insert_job(db, ObjectId(), f"watch {name}")
    await db.syncjobs.update_one({"_id": job["_id"]}, {"$set": {"alertWatchUntil": to_ms(T0)}})  # as created
    seen: list[tuple[int, str, bool, list[str]]] = []
    for hours, what in SCENARIOS[name]:
        at = T0 + timedelta(hours=hours)
        run_id, evaluated = await _happen(db, job, what, at)
        if what in ("missed", "skipped"):
            continue  # no run ended: nothing is evaluated, skipped or not
        clock = FakeClock(at + timedelta(seconds=5))
        events = await on_run_finished(db, settings, job["_id"], run_id, clock=clock, policy=NO_WAIT)
        seen.append((hours, what, evaluated, [f"{e.name}:{e.kind}" for e in events]))
    assert [step for step in seen if not step[2] and step[3]] == [], seen  # skipped, yet it changed an alert
    changed = [(hours, events) for hours, _, evaluated, events in seen if events]
    expected = {
        "a success reaching min_executions": [
            (2, ["alert.opened:high_failure_rate"]),
            (30, ["alert.resolved:high_failure_rate"]),  # watched since it opened: a run resolves it
        ],
        "a long run ageing out of the window": [
            (0, ["alert.opened:long_duration"]),
            (25, ["alert.resolved:long_duration"]),
        ],
        "a missed fire": [(2, ["alert.opened:missed_runs"]), (26, ["alert.resolved:missed_runs"])],
        "a skipped fire": [(2, ["alert.opened:missed_runs"]), (26, ["alert.resolved:missed_runs"])],
        "a failure streak": [
            (2, ["alert.opened:high_failure_rate", "alert.opened:consecutive_failures"]),
            (3, ["alert.resolved:consecutive_failures"]),
            (40, ["alert.resolved:high_failure_rate"]),
        ],
        "only short successes": [],
    }
    assert changed == expected[name], seen
    skipped = [hours for hours, _, evaluated, _ in seen if not evaluated]
    assert skipped or name != "only short successes", seen  # the case the worker saves really happens
