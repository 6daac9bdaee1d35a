"""Alert rules, pure: a job's run statistics and the thresholds in, the alerts that hold out.

No clock and no database here: the monitoring endpoint and the worker's notifier both call these, so a
job is alerting for exactly the same reasons wherever it is looked at.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from syncjobs.shared.settings import AlertThresholds
from syncjobs.shared.store.run_stats import JobRunStats

AlertKind = Literal[
    "high_failure_rate", "consecutive_failures", "long_duration", "missed_runs", "deletes_refused", "change_stream_lag"
]
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)


@dataclass(frozen=True)
class Alert:
    job_id: str
    kind: AlertKind
    message: str
    since: datetime

    def to_json(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "kind": self.kind, "message": self.message, "since": self.since.isoformat()}


JOB_DELETED = "job was deleted"
NO_LONGER_HOLDS = "no longer holds"


@dataclass(frozen=True)
class AlertTransitions:
    """What changed since the alerts last recorded as open: the ones to announce."""

    opened: list[Alert]
    resolved: list[str]


def _minutes(ms: float) -> str:
    return f"{ms / 60000:.1f} min"


def evaluate_job(stats: JobRunStats, thresholds: AlertThresholds, now: datetime) -> list[Alert]:
    """The alerts a job's statistics raise, in a fixed kind order; `now` only dates an alert with no start."""
    alerts: list[Alert] = []
    rate = stats.failure_rate
    if rate is not None and stats.total_executions >= thresholds.min_executions and rate > thresholds.failure_rate:
        alerts.append(
            Alert(
                stats.job_id,
                "high_failure_rate",
                f"{stats.failure_count} of {stats.total_executions} executions failed ({rate:.0%}, "
                f"threshold {thresholds.failure_rate:.0%})",
                stats.first_failure_at or now,
            )
        )
    if stats.consecutive_failures >= thresholds.consecutive_failures:
        alerts.append(
            Alert(
                stats.job_id,
                "consecutive_failures",
                f"{stats.consecutive_failures} consecutive failures (threshold {thresholds.consecutive_failures})",
                stats.failure_streak_since or now,
            )
        )
    average = stats.average_duration_ms
    if average is not None and average > thresholds.long_duration_ms:
        alerts.append(
            Alert(
                stats.job_id,
                "long_duration",
                f"average duration {_minutes(average)} exceeds {_minutes(thresholds.long_duration_ms)}",
                stats.first_execution_at or now,
            )
        )
    not_run = stats.missed_count + stats.skipped_count
    if not_run:
        alerts.append(
            Alert(
                stats.job_id,
                "missed_runs",
                f"{not_run} fires not run ({stats.missed_count} missed, {stats.skipped_count} skipped)",
                stats.first_missed_at or now,
            )
        )
    refused = _deletes_refused(stats)
    if refused is not None:
        alerts.append(Alert(stats.job_id, "deletes_refused", refused[0], refused[1] or now))
    resume_at, lag_limit = stats.change_stream_resume_at, thresholds.change_stream_lag_seconds
    if resume_at is not None and (now - resume_at).total_seconds() > lag_limit:
        lag = (now - resume_at).total_seconds()
        message = f"change stream resume point is {lag:,.0f} s old (threshold {lag_limit:,} s)"
        alerts.append(Alert(stats.job_id, "change_stream_lag", message, resume_at + timedelta(seconds=lag_limit)))
    return alerts


def _deletes_refused(stats: JobRunStats) -> tuple[str, datetime | None] | None:
    """The last finished run's refusal of a mass delete (its message, when), if it refused one."""
    last = next((run for run in stats.recent_runs if run.status in ("succeeded", "failed")), None)
    if last is None:
        return None
    refused = [d for d in last.details or [] if "deletesRefused" in d]
    if not refused:
        return None
    message = "; ".join(f"{d['entity']}: {d.get('error', 'deletes refused')}" for d in refused)
    return message, last.finished_at


def evaluate(all_stats: Iterable[JobRunStats], thresholds: AlertThresholds, now: datetime) -> list[Alert]:
    return [alert for stats in all_stats for alert in evaluate_job(stats, thresholds, now)]


def outcome_is_watched(status: str, duration_ms: int | None, thresholds: AlertThresholds) -> bool:
    """Whether a run's outcome could make an alert hold while it is in the window: anything but a success,
    or a success longer than the long-duration threshold. Each such outcome (and each fire written missed
    or skipped) keeps its job watched (`alertWatchUntil`) for one window, and only a watched job's runs are
    evaluated. A short success of an unwatched job, not a change stream, can open nothing: the window
    holds no failure, no missed or skipped fire and no run longer than the threshold, so no rule holds;
    and resolve nothing by itself: an alert holds only while its cause is in the window, which keeps the
    job watched, and the leader's sweep resolves what ages out."""
    return status != "succeeded" or (duration_ms is not None and duration_ms > thresholds.long_duration_ms)


def needs_evaluation(sync_mode: str, watch_until: datetime, now: datetime) -> bool:
    """After a short success: evaluate only a change stream job (its lag ages without any run) or a job
    still watched."""
    return sync_mode == "changeStream" or watch_until > now


def alert_transitions(open_kinds: Collection[str], current: Sequence[Alert]) -> AlertTransitions:
    """Alerts that hold now but were not open are opened; open ones that no longer hold are resolved."""
    holding = {alert.kind for alert in current}
    return AlertTransitions(
        opened=[alert for alert in current if alert.kind not in open_kinds],
        resolved=[kind for kind in ALERT_KINDS if kind in open_kinds and kind not in holding],
    )


@dataclass(frozen=True)
class StaleAlerts:
    """What a periodic sweep resolves for one job, and why (the reason goes into the resolve event)."""

    kinds: list[str]
    reason: str


def stale_alerts(open_kinds: Collection[str], current: Sequence[Alert] | None) -> StaleAlerts:
    """The open alerts a sweep resolves: all of a deleted job's (`current` None), else those no longer holding.

    A sweep never opens: between runs nothing new can happen to a job's statistics except runs ageing out of
    the window, which only ever removes reasons to alert. Opening stays with the run that raises the alert.
    """
    if current is None:
        return StaleAlerts([kind for kind in ALERT_KINDS if kind in open_kinds], JOB_DELETED)
    return StaleAlerts(alert_transitions(open_kinds, current).resolved, NO_LONGER_HOLDS)
