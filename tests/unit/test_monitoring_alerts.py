"""The pure alert rules: thresholds at their edges, and which transitions get announced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from syncjobs.shared.alerts import JOB_DELETED, NO_LONGER_HOLDS, Alert, alert_transitions, evaluate_job, stale_alerts
from syncjobs.shared.models import JobRun
from syncjobs.shared.settings import AlertThresholds, Settings
from syncjobs.shared.store.run_stats import JobRunStats

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=3)
DEFAULTS = AlertThresholds()


def stats(**fields: object) -> JobRunStats:
    return JobRunStats(job_id="j1", job_name="orders", **fields)  # type: ignore[arg-type]


def kinds(job_stats: JobRunStats, thresholds: AlertThresholds = DEFAULTS) -> list[str]:
    return [alert.kind for alert in evaluate_job(job_stats, thresholds, NOW)]


@pytest.mark.parametrize(
    ("total", "failures", "expected"),
    [
        (5, 3, ["high_failure_rate"]),  # 60 % of 5
        (4, 4, []),  # below the minimum number of executions
        (10, 5, []),  # exactly 50 %: not above
        (10, 6, ["high_failure_rate"]),
    ],
)
def test_failure_rate_needs_enough_executions_and_more_than_the_threshold(
    total: int, failures: int, expected: list[str]
) -> None:
    assert (
        kinds(
            stats(
                total_executions=total, success_count=total - failures, failure_count=failures, first_failure_at=EARLIER
            )
        )
        == expected
    )


def test_consecutive_failures_open_at_the_threshold_and_date_from_the_streak() -> None:
    assert kinds(stats(total_executions=2, failure_count=2, consecutive_failures=2)) == []
    [alert] = evaluate_job(
        stats(total_executions=3, failure_count=3, consecutive_failures=3, failure_streak_since=EARLIER), DEFAULTS, NOW
    )
    assert (alert.kind, alert.since, alert.job_id) == ("consecutive_failures", EARLIER, "j1")
    assert alert.message == "3 consecutive failures (threshold 3)"


def test_long_duration_is_on_the_average_and_strictly_above() -> None:
    five_minutes = 5 * 60 * 1000
    assert kinds(stats(total_executions=1, success_count=1, average_duration_ms=five_minutes)) == []
    assert kinds(stats(total_executions=1, success_count=1, average_duration_ms=five_minutes + 1)) == ["long_duration"]


def test_any_missed_or_skipped_fire_is_an_alert() -> None:
    assert kinds(stats(skipped_count=1, first_missed_at=EARLIER)) == ["missed_runs"]
    assert kinds(stats(missed_count=2)) == ["missed_runs"]
    assert kinds(stats()) == []


def test_thresholds_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"SYNCJOBS_ALERT_CONSECUTIVE_FAILURES": "5", "SYNCJOBS_ALERT_LONG_DURATION_SECONDS": "60"}
    )
    job = stats(total_executions=4, failure_count=4, consecutive_failures=4, average_duration_ms=61_000)
    assert kinds(job, settings.alerts) == ["long_duration"]


def test_transitions_open_new_alerts_and_resolve_the_ones_that_stopped_holding() -> None:
    streak = Alert("j1", "consecutive_failures", "3 consecutive failures", EARLIER)
    missed = Alert("j1", "missed_runs", "1 fire not run", EARLIER)
    first = alert_transitions(set(), [streak])
    assert (first.opened, first.resolved) == ([streak], [])
    steady = alert_transitions({"consecutive_failures"}, [streak])
    assert (steady.opened, steady.resolved) == ([], [])
    changed = alert_transitions({"consecutive_failures", "long_duration"}, [missed])
    assert (changed.opened, changed.resolved) == ([missed], ["consecutive_failures", "long_duration"])


def test_a_sweep_resolves_what_stopped_holding_and_never_opens() -> None:
    streak = Alert("j1", "consecutive_failures", "3 consecutive failures", EARLIER)
    missed = Alert("j1", "missed_runs", "1 fire not run", EARLIER)
    aged_out = stale_alerts({"consecutive_failures", "high_failure_rate"}, [streak, missed])
    assert (aged_out.kinds, aged_out.reason) == (["high_failure_rate"], NO_LONGER_HOLDS)
    assert stale_alerts({"consecutive_failures"}, [streak]).kinds == []
    assert stale_alerts(set(), [missed]).kinds == []


def test_a_sweep_resolves_every_open_alert_of_a_deleted_job_saying_so() -> None:
    gone = stale_alerts({"missed_runs", "consecutive_failures"}, None)
    assert (gone.kinds, gone.reason) == (["consecutive_failures", "missed_runs"], JOB_DELETED)
    assert stale_alerts(set(), None).kinds == []


def _run(status: str, details: list[dict[str, object]], minutes_ago: int) -> JobRun:
    at = NOW - timedelta(minutes=minutes_ago)
    return JobRun.model_validate(
        {
            "id": f"r{minutes_ago}",
            "jobId": "j1",
            "workspaceId": "w1",
            "trigger": "schedule",
            "scheduledFor": at,
            "status": status,
            "finishedAt": at,
            "details": details,
        }
    )


def test_a_refused_mass_delete_alerts_until_a_run_proceeds() -> None:
    refused = {"entity": "items", "status": "failed", "error": "source returned 3 of 120", "deletesRefused": {}}
    latest_refused = stats(recent_runs=[_run("running", [], 0), _run("failed", [refused], 5)])
    [alert] = evaluate_job(latest_refused, DEFAULTS, NOW)
    assert (alert.kind, alert.message, alert.since) == (
        "deletes_refused",
        "items: source returned 3 of 120",
        NOW - timedelta(minutes=5),
    )
    proceeded = stats(recent_runs=[_run("succeeded", [{"entity": "items", "status": "updated"}], 1)])
    assert kinds(proceeded) == []
    assert kinds(stats(recent_runs=[proceeded.recent_runs[0], latest_refused.recent_runs[1]])) == []


def test_a_change_stream_resume_point_older_than_the_threshold_alerts() -> None:
    thresholds = AlertThresholds(change_stream_lag_seconds=3600)
    assert kinds(stats(change_stream_resume_at=NOW - timedelta(minutes=59)), thresholds) == []
    [alert] = evaluate_job(stats(change_stream_resume_at=NOW - timedelta(hours=3)), thresholds, NOW)
    assert (alert.kind, alert.since) == ("change_stream_lag", NOW - timedelta(hours=2))
    assert alert.message == "change stream resume point is 10,800 s old (threshold 3,600 s)"
    assert Settings.from_env({"SYNCJOBS_ALERT_CHANGE_STREAM_LAG_SECONDS": "60"}).alerts.change_stream_lag_seconds == 60
