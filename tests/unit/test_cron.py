"""Cron + timezone arithmetic over real DST dates; every expected instant was worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from syncjobs.shared.cron import dst_note, parse_schedule
from syncjobs.shared.errors import InvalidCron, InvalidTimezone, ValidationFailed


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- America/New_York: fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z) ---


def test_daily_fixed_hour_fires_once_on_fall_back_day_at_first_occurrence() -> None:
    schedule = parse_schedule("30 1 * * *", "America/New_York")
    fires = schedule.next_n(utc(2026, 10, 31, 12), 3)
    assert fires == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first 01:30
        utc(2026, 11, 2, 6, 30),  # 01:30 EST the next day; never 2026-11-01 06:30Z
        utc(2026, 11, 3, 6, 30),
    ]


def test_croniter_alone_would_fire_the_daily_0130_twice() -> None:
    """The bug this module exists for: croniter with an aware start yields the repeated 01:30 too."""
    croniter_alone = croniter("30 1 * * *", datetime(2026, 10, 31, 12, tzinfo=ZoneInfo("America/New_York")))
    assert utc(2026, 11, 1, 6, 30) in [croniter_alone.get_next(datetime).astimezone(UTC) for _ in range(3)]
    ours = parse_schedule("30 1 * * *", "America/New_York").next_n(utc(2026, 10, 31, 16), 3)
    assert utc(2026, 11, 1, 6, 30) not in ours


def test_half_hourly_follows_elapsed_time_through_fall_back() -> None:
    schedule = parse_schedule("*/30 * * * *", "America/New_York")
    assert schedule.fires_between(utc(2026, 11, 1, 4), utc(2026, 11, 1, 7)) == [
        utc(2026, 11, 1, 4, 30),  # 00:30 EDT
        utc(2026, 11, 1, 5, 0),  # 01:00 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 6, 0),  # 01:00 EST
        utc(2026, 11, 1, 6, 30),  # 01:30 EST
        utc(2026, 11, 1, 7, 0),  # 02:00 EST
    ]


def test_next_after_inside_the_repeated_hour_finds_the_second_occurrence() -> None:
    schedule = parse_schedule("0 * * * *", "America/New_York")
    assert schedule.next_after(utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 1, 6, 0)  # 01:00 EST
    assert schedule.next_after(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 6, 0)


def test_fixed_hour_next_after_the_first_occurrence_skips_the_repeat() -> None:
    schedule = parse_schedule("0 1 * * *", "America/New_York")
    assert schedule.next_after(utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 2, 6, 0)
    assert schedule.next_after(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 2, 6, 0)


# --- America/New_York: spring forward 2027-03-14 02:00 EST -> 03:00 EDT (07:00Z) ---


def test_daily_in_the_gap_fires_at_the_first_instant_after_it() -> None:
    schedule = parse_schedule("30 2 * * *", "America/New_York")
    assert schedule.next_n(utc(2027, 3, 13), 3) == [
        utc(2027, 3, 13, 7, 30),  # 02:30 EST
        utc(2027, 3, 14, 7, 0),  # 02:30 does not exist: 03:00 EDT
        utc(2027, 3, 15, 6, 30),  # 02:30 EDT
    ]


def test_two_fixed_times_in_the_gap_fire_once() -> None:
    schedule = parse_schedule("0,30 2 * * *", "America/New_York")
    fires = schedule.fires_between(utc(2027, 3, 14), utc(2027, 3, 15))
    assert fires == [utc(2027, 3, 14, 7, 0)]


def test_fixed_time_in_gap_and_real_time_after_it_both_fire() -> None:
    schedule = parse_schedule("30 2,3 * * *", "America/New_York")
    fires = schedule.fires_between(utc(2027, 3, 14), utc(2027, 3, 15))
    assert fires == [utc(2027, 3, 14, 7, 0), utc(2027, 3, 14, 7, 30)]


def test_half_hourly_skips_wall_times_in_the_gap() -> None:
    schedule = parse_schedule("*/30 * * * *", "America/New_York")
    assert schedule.fires_between(utc(2027, 3, 14, 6), utc(2027, 3, 14, 8)) == [
        utc(2027, 3, 14, 6, 30),  # 01:30 EST
        utc(2027, 3, 14, 7, 0),  # 03:00 EDT (02:00 and 02:30 never happen)
        utc(2027, 3, 14, 7, 30),
        utc(2027, 3, 14, 8, 0),
    ]


def test_seconds_field_crosses_the_gap_every_five_seconds() -> None:
    schedule = parse_schedule("*/5 * * * * *", "America/New_York")
    assert schedule.fires_between(utc(2027, 3, 14, 6, 59, 50), utc(2027, 3, 14, 7, 0, 10)) == [
        utc(2027, 3, 14, 6, 59, 55),
        utc(2027, 3, 14, 7, 0, 0),
        utc(2027, 3, 14, 7, 0, 5),
        utc(2027, 3, 14, 7, 0, 10),
    ]


# --- Europe/London 2026: forward 03-29 01:00 GMT (01:00Z), back 10-25 02:00 BST (01:00Z) ---


def test_london_spring_forward_daily_0130() -> None:
    schedule = parse_schedule("30 1 * * *", "Europe/London")
    assert schedule.next_n(utc(2026, 3, 28), 3) == [
        utc(2026, 3, 28, 1, 30),  # 01:30 GMT
        utc(2026, 3, 29, 1, 0),  # gap: 02:00 BST
        utc(2026, 3, 30, 0, 30),  # 01:30 BST
    ]


def test_london_fall_back_daily_0130_and_quarter_past_hourly() -> None:
    daily = parse_schedule("30 1 * * *", "Europe/London")
    assert daily.next_n(utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    hourly = parse_schedule("15 * * * *", "Europe/London")
    assert hourly.fires_between(utc(2026, 10, 24, 23), utc(2026, 10, 25, 2)) == [
        utc(2026, 10, 24, 23, 15),  # 00:15 BST
        utc(2026, 10, 25, 0, 15),  # 01:15 BST
        utc(2026, 10, 25, 1, 15),  # 01:15 GMT
    ]


# --- Australia/Lord_Howe: a half-hour shift. +11:00 -> +10:30 on 2026-04-05 02:00, back on 10-04 ---


def test_lord_howe_fall_back_half_hour() -> None:
    fixed = parse_schedule("45 1 * * *", "Australia/Lord_Howe")
    assert fixed.next_n(utc(2026, 4, 4), 2) == [
        utc(2026, 4, 4, 14, 45),  # 01:45 +11:00, first occurrence only
        utc(2026, 4, 5, 15, 15),  # 01:45 +10:30 the next day
    ]
    quarterly = parse_schedule("*/15 * * * *", "Australia/Lord_Howe")
    assert quarterly.fires_between(utc(2026, 4, 4, 14), utc(2026, 4, 4, 15, 30)) == [
        utc(2026, 4, 4, 14, 15),  # 01:15 +11
        utc(2026, 4, 4, 14, 30),  # 01:30 +11
        utc(2026, 4, 4, 14, 45),  # 01:45 +11
        utc(2026, 4, 4, 15, 0),  # 01:30 +10:30
        utc(2026, 4, 4, 15, 15),  # 01:45 +10:30
        utc(2026, 4, 4, 15, 30),  # 02:00 +10:30
    ]


def test_lord_howe_spring_forward_half_hour() -> None:
    fixed = parse_schedule("15 2 * * *", "Australia/Lord_Howe")
    assert fixed.next_n(utc(2026, 10, 2), 3) == [
        utc(2026, 10, 2, 15, 45),  # 02:15 +10:30
        utc(2026, 10, 3, 15, 30),  # gap 02:00-02:30: fires at 02:30 +11
        utc(2026, 10, 4, 15, 15),  # 02:15 +11
    ]
    quarterly = parse_schedule("*/15 * * * *", "Australia/Lord_Howe")
    assert quarterly.fires_between(utc(2026, 10, 3, 15), utc(2026, 10, 3, 16)) == [
        utc(2026, 10, 3, 15, 15),  # 01:45 +10:30
        utc(2026, 10, 3, 15, 30),  # 02:30 +11 (02:00, 02:15 skipped)
        utc(2026, 10, 3, 15, 45),
        utc(2026, 10, 3, 16, 0),
    ]


# --- properties over whole years ---

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@settings(max_examples=15, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    year=st.sampled_from([2026, 2027]),
)
def test_daily_fixed_time_fires_exactly_once_per_local_day(zone: str, hour: int, minute: int, year: int) -> None:
    schedule = parse_schedule(f"{minute} {hour} * * *", zone)
    tz = ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC)
    fires = schedule.fires_between(start - timedelta(seconds=1), end - timedelta(seconds=1))
    local_days = [fire.astimezone(tz).date() for fire in fires]
    assert len(local_days) == len(set(local_days)) == (366 if year % 4 == 0 else 365)


@pytest.mark.parametrize(
    ("zone", "transitions"),
    [
        ("America/New_York", [utc(2026, 11, 1, 6), utc(2027, 3, 14, 7)]),
        ("Europe/London", [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)]),
        ("Australia/Lord_Howe", [utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)]),
    ],
)
def test_half_hourly_is_evenly_spaced_around_each_transition(zone: str, transitions: list[datetime]) -> None:
    schedule = parse_schedule("*/30 * * * *", zone)
    for transition in transitions:
        fires = schedule.fires_between(transition - timedelta(days=2), transition + timedelta(days=2))
        gaps = {later - earlier for earlier, later in pairwise(fires)}
        assert gaps == {timedelta(minutes=30)}
        assert len(fires) == 4 * 24 * 2


@settings(max_examples=50, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    cron=st.sampled_from(["30 1 * * *", "0 2 * * 0", "*/20 * * * *", "0 */3 * * *", "15 1,2 * * *"]),
    offset_minutes=st.integers(0, 2 * 365 * 24 * 60),
)
def test_next_after_is_strictly_later_and_agrees_with_fires_between(zone: str, cron: str, offset_minutes: int) -> None:
    schedule = parse_schedule(cron, zone)
    after = utc(2026, 1, 1) + timedelta(minutes=offset_minutes)
    fires = schedule.next_n(after, 4)
    assert after < fires[0] < fires[1] < fires[2] < fires[3]
    assert schedule.fires_between(after, fires[3]) == fires
    assert all(fire.tzinfo == UTC for fire in fires)


# --- forms and validation ---


def test_six_fields_put_seconds_first() -> None:
    schedule = parse_schedule("10 0 12 * * *", "UTC")
    assert schedule.next_after(utc(2026, 5, 1)) == utc(2026, 5, 1, 12, 0, 10)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", utc(2026, 5, 1, 11)),
        ("@daily", utc(2026, 5, 2)),
        ("@midnight", utc(2026, 5, 2)),
        ("@weekly", utc(2026, 5, 3)),  # a Sunday
        ("@monthly", utc(2026, 6, 1)),
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
    ],
)
def test_macros(macro: str, expected: datetime) -> None:
    assert parse_schedule(macro, "UTC").next_after(utc(2026, 5, 1, 10, 30)) == expected


def test_fires_between_is_half_open() -> None:
    schedule = parse_schedule("0 * * * *", "UTC")
    assert schedule.fires_between(utc(2026, 5, 1, 1), utc(2026, 5, 1, 3)) == [utc(2026, 5, 1, 2), utc(2026, 5, 1, 3)]


def test_next_after_accepts_any_aware_zone_and_rejects_naive() -> None:
    schedule = parse_schedule("0 * * * *", "UTC")
    paris = datetime(2026, 5, 1, 12, 10, tzinfo=ZoneInfo("Europe/Paris"))
    assert schedule.next_after(paris) == utc(2026, 5, 1, 11)
    with pytest.raises(ValueError):
        schedule.next_after(datetime(2026, 5, 1))


@pytest.mark.parametrize("cron", ["* * * *", "* * * * * * *", "61 * * * *", "a b c d e", "@reboot", "", "0 0 30 2 *"])
def test_invalid_cron_names_the_field(cron: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        parse_schedule(cron, "UTC")
    assert isinstance(caught.value, ValidationFailed)
    assert caught.value.field == "schedule.cron"


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "", " UTC", "../etc/passwd", "EST5EDT/x"])
def test_invalid_timezone_names_the_field(timezone: str) -> None:
    with pytest.raises(InvalidTimezone) as caught:
        parse_schedule("0 * * * *", timezone)
    assert caught.value.field == "schedule.timezone"


def test_dst_note_names_what_daylight_saving_time_did_to_a_fire() -> None:
    london = "Europe/London"  # 29 March 2026: 01:00 -> 02:00; 25 October 2026: 02:00 -> 01:00
    shifted = parse_schedule("30 1 * * *", london)
    [fire] = shifted.next_n(datetime(2026, 3, 28, 12, tzinfo=UTC), 1)
    assert fire == datetime(2026, 3, 29, 1, tzinfo=UTC) and dst_note(shifted, fire) == "gap_shifted"
    on_the_hour = parse_schedule("0 2 * * *", london)  # 02:00 exists that day: nothing moved
    assert dst_note(on_the_hour, on_the_hour.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC))) is None
    hourly = parse_schedule("30 * * * *", london)  # skips the gap, so none of its fires is shifted
    fires = hourly.fires_between(datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 3, tzinfo=UTC))
    assert [dst_note(hourly, f) for f in fires] == [None] * len(fires)
    twice = hourly.fires_between(datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 2, tzinfo=UTC))
    assert [(f.hour, dst_note(hourly, f)) for f in twice] == [
        (23, None),
        (0, "repeated_hour"),  # 01:30 BST
        (1, "repeated_hour"),  # 01:30 GMT
    ]
    utc = parse_schedule("*/10 * * * * *", "UTC")
    assert dst_note(utc, utc.next_after(datetime(2026, 3, 29, 1, tzinfo=UTC))) is None
