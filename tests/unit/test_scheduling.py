"""The pure scheduling core: due fires, catch-up, overlap, retry backoff, and the plan heap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from syncjobs.shared.cron import parse_schedule
from syncjobs.worker.fire_plan import (
    MAX_MISSED_RECORDS,
    MAX_RETRY_DELAY,
    ON_TIME_GRACE,
    FirePlan,
    decide_due_fires,
    decide_overlap,
    retry_delay,
    should_retry,
)

from tests.fixtures.worker_harness import planned_due


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


EVERY_MINUTE = parse_schedule("* * * * *", "UTC")


def test_an_on_time_fire_runs_and_the_next_is_planned() -> None:
    decision = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 0, 0), catch_up_fires=1)
    assert decision.run == [utc(2026, 5, 1, 10)]
    assert decision.missed == []
    assert decision.next_fire == utc(2026, 5, 1, 10, 1)


def test_nothing_is_due_before_the_fire_time() -> None:
    decision = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), utc(2026, 5, 1, 9, 59, 59), catch_up_fires=1)
    assert decision.run == decision.missed == []
    assert decision.next_fire == utc(2026, 5, 1, 10, 1)


def test_after_an_outage_only_the_last_missed_fire_runs_by_default() -> None:
    decision = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 9, 30), catch_up_fires=1)
    assert decision.run == [utc(2026, 5, 1, 10, 9)]
    assert decision.missed == [utc(2026, 5, 1, 10, minute) for minute in range(9)]
    assert decision.next_fire == utc(2026, 5, 1, 10, 10)


def test_a_larger_catch_up_window_runs_the_latest_fires() -> None:
    decision = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 4, 30), catch_up_fires=3)
    assert decision.run == [utc(2026, 5, 1, 10, 2), utc(2026, 5, 1, 10, 3), utc(2026, 5, 1, 10, 4)]
    assert decision.missed == [utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 1)]


def test_no_catch_up_still_runs_an_on_time_fire_but_never_a_late_one() -> None:
    on_time = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 0, 2), catch_up_fires=0)
    assert on_time.run == [utc(2026, 5, 1, 10)]
    hourly = parse_schedule("0 * * * *", "UTC")
    late = decide_due_fires(hourly, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10) + ON_TIME_GRACE * 2, catch_up_fires=0)
    assert late.run == []
    assert late.missed == [utc(2026, 5, 1, 10)]


def test_missed_records_are_capped_to_the_latest() -> None:
    now = utc(2026, 5, 1, 10) + timedelta(minutes=MAX_MISSED_RECORDS + 50)
    decision = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), now, catch_up_fires=1)
    assert decision.run == [now]
    assert decision.missed == [now - timedelta(minutes=m) for m in range(MAX_MISSED_RECORDS, 0, -1)]
    assert decision.older_missed_left_out


def test_a_week_of_missed_seconds_is_decided_from_the_latest_fires() -> None:
    every_second = parse_schedule("* * * * * *", "UTC")
    now = utc(2026, 5, 8, 10)
    decision = decide_due_fires(every_second, utc(2026, 5, 1, 10), now, catch_up_fires=2)
    assert decision.run == [now - timedelta(seconds=1), now]
    assert decision.missed == [now - timedelta(seconds=s) for s in range(MAX_MISSED_RECORDS + 1, 1, -1)]
    assert decision.older_missed_left_out
    assert decision.next_fire == now + timedelta(seconds=1)


def test_a_short_outage_records_every_missed_fire() -> None:
    decision = decide_due_fires(EVERY_MINUTE, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 3, 30), catch_up_fires=1)
    assert not decision.older_missed_left_out
    assert len(decision.missed) == 3


def test_fall_back_night_fires_a_daily_0130_once() -> None:
    """Drive the plan the way the worker loop does, waking at each planned time over the DST weekend."""
    schedule = parse_schedule("30 1 * * *", "America/New_York")
    plan = FirePlan()
    plan.plan("job", schedule.next_after(utc(2026, 10, 31, 12)))
    runs: list[datetime] = []
    end = utc(2026, 11, 2, 12)
    while (due := plan.next_due()) is not None and due < end:
        now = due + timedelta(milliseconds=40)  # the worker wakes a little after the due time
        assert plan.pop_due(now) == ["job"]
        decision = decide_due_fires(schedule, due, now, catch_up_fires=1)
        runs += decision.run
        assert decision.missed == []
        plan.plan("job", decision.next_fire)
    assert runs == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


@pytest.mark.parametrize(
    ("policy", "running", "queued", "expected"),
    [
        ("skip", 0, 0, "start"),
        ("skip", 1, 0, "skip"),
        ("queue", 0, 0, "start"),
        ("queue", 1, 0, "queue"),
        ("queue", 1, 1, "skip"),
        ("allow", 1, 5, "start"),
    ],
)
def test_overlap_policy(policy: str, running: int, queued: int, expected: str) -> None:
    assert decide_overlap(policy, running, queued) == expected


@pytest.mark.parametrize(
    ("status", "attempt", "max_attempts", "expected"),
    [
        ("failed", 1, 3, True),
        ("timed_out", 2, 3, True),
        ("failed", 3, 3, False),
        ("cancelled", 1, 3, False),
        ("succeeded", 1, 3, False),
        ("failed", 1, 1, False),
    ],
)
def test_should_retry(status: str, attempt: int, max_attempts: int, expected: bool) -> None:
    assert should_retry(status, attempt, max_attempts) is expected


def test_retry_delay_doubles_per_attempt_with_half_of_it_jittered() -> None:
    assert retry_delay(1, 10, lambda: 0.0) == timedelta(seconds=5)
    assert retry_delay(1, 10, lambda: 1.0) == timedelta(seconds=10)
    assert retry_delay(3, 10, lambda: 0.5) == timedelta(seconds=30)  # base 40 s: 20 + 10
    assert retry_delay(30, 10, lambda: 1.0) == MAX_RETRY_DELAY


def test_plan_pops_in_due_order_and_replanning_moves_a_key() -> None:
    plan = FirePlan()
    plan.plan("a", utc(2026, 5, 1, 10, 5))
    plan.plan("b", utc(2026, 5, 1, 10, 1))
    plan.plan("c", utc(2026, 5, 1, 10, 3))
    plan.plan("b", utc(2026, 5, 1, 10, 9))  # an edit moves b after everything else
    assert plan.next_due() == utc(2026, 5, 1, 10, 3)
    assert plan.pop_due(utc(2026, 5, 1, 10, 6)) == ["c", "a"]
    assert planned_due(plan, "b") == utc(2026, 5, 1, 10, 9)
    assert len(plan) == 1


def test_plan_remove_drops_the_key_and_its_stale_entries() -> None:
    plan = FirePlan()
    plan.plan("a", utc(2026, 5, 1, 10))
    plan.plan("a", utc(2026, 5, 1, 11))
    plan.remove("a")
    assert plan.next_due() is None
    assert plan.pop_due(utc(2026, 5, 2)) == []
    assert "a" not in plan
