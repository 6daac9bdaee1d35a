"""Cron + IANA timezone arithmetic with the DST rules of docs/DESIGN.md, pure and clock-free.

croniter walks naive wall-clock time; this module maps each wall-clock candidate to real instants:
- a wall time that does not exist (spring forward gap): a schedule with a fixed hour fires once at the
  first instant after the gap; an hourly-or-finer schedule (hour field = all 24 hours) skips it, so it
  keeps following elapsed time;
- a wall time that occurs twice (fall back): a fixed-hour schedule fires at the first occurrence only;
  an hourly-or-finer schedule fires at both.
Instants derived from a fall-back are not monotone in wall-clock order, so each search reads a little
past the first hit, by the size of any offset change near it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from syncjobs.shared.errors import InvalidCron, InvalidTimezone

__all__ = ["CronSchedule", "DstNote", "dst_note", "parse_schedule"]

DstNote = Literal["gap_shifted", "repeated_hour"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# No tz database zone changes its offset twice within this span, or by more than it.
_TRANSITION_SPAN = timedelta(hours=3)
_ZERO = timedelta(0)


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression in one timezone; the answer to "when does it fire next?"."""

    cron: str
    timezone: str
    zone: ZoneInfo = field(repr=False, compare=False)
    follows_elapsed_time: bool = field(repr=False, compare=False)
    _iterator: croniter = field(repr=False, compare=False)

    def next_after(self, instant: datetime) -> datetime:
        """The first fire strictly after `instant` (aware), as an aware UTC datetime."""
        after = _as_utc(instant)
        wall_after = self._wall(after)
        start = wall_after - max(_ZERO, self._offset(after) - self._offset(after + _TRANSITION_SPAN))
        # croniter's get_next is strictly after its start; back off 1 s so a candidate AT `start` counts.
        self._iterator.set_current(start - timedelta(seconds=1), force=True)
        best: datetime | None = None
        stop_at: datetime | None = None
        while True:
            wall = self._iterator.get_next(datetime)
            if stop_at is not None and wall > stop_at:
                return best  # type: ignore[return-value]
            for fire in self._instants_of(wall):
                if fire > after and (best is None or fire < best):
                    best = fire
                    swing = self._offset(best - _TRANSITION_SPAN) - self._offset(best)
                    stop_at = self._wall(best) + max(_ZERO, swing)

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        """The next `n` fires strictly after `after`, in order."""
        fires: list[datetime] = []
        cursor = after
        for _ in range(n):
            cursor = self.next_after(cursor)
            fires.append(cursor)
        return fires

    def fires_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire in the half-open span (start, end], in order."""
        fires: list[datetime] = []
        end_utc = _as_utc(end)
        cursor = self.next_after(start)
        while cursor <= end_utc:
            fires.append(cursor)
            cursor = self.next_after(cursor)
        return fires

    def fires_in(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The fires in the half-open [start, end), in order, at most `limit` of them."""
        fires: list[datetime] = []
        end_utc = _as_utc(end)
        cursor = self.next_after(_as_utc(start) - timedelta(milliseconds=1))
        while cursor < end_utc and len(fires) < limit:
            fires.append(cursor)
            cursor = self.next_after(cursor)
        return fires

    def dst_note(self, fire: datetime) -> str | None:
        """`repeated_hour` when the fire's wall time occurs twice that day (fall back), `gap_shifted` when
        the cron's wall time did not exist and the fire moved to the end of the gap (spring forward)."""
        wall = self._wall(_as_utc(fire))
        if wall.replace(tzinfo=self.zone, fold=0).utcoffset() != wall.replace(tzinfo=self.zone, fold=1).utcoffset():
            return "repeated_hour"
        self._iterator.set_current(wall - timedelta(seconds=1), force=True)
        return None if self._iterator.get_next(datetime) == wall else "gap_shifted"

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _offset(self, instant: datetime) -> timedelta:
        return instant.astimezone(self.zone).utcoffset() or _ZERO

    def _instants_of(self, wall: datetime) -> list[datetime]:
        """The instants at which wall-clock time `wall` fires, by the DST rules above."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if self._wall(first) != wall:  # in a gap: the wall time never shows on a clock
            if self.follows_elapsed_time:
                return []
            return [self._transition_between(second, first)]
        if self.follows_elapsed_time:
            return [first, second]
        return [first]

    def _transition_between(self, before: datetime, after: datetime) -> datetime:
        """The first instant in (before, after] carrying `after`'s offset: the end of a gap."""
        target = self._offset(after)
        low, high = before, after
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            if self._offset(middle) == target:
                high = middle
            else:
                low = middle
        return high


def parse_schedule(cron: str, timezone: str) -> CronSchedule:
    """Validate a 5-field, 6-field (seconds first) or @macro cron and an IANA timezone name."""
    zone = _parse_zone(timezone)
    expression = " ".join(cron.split())
    expression = MACROS.get(expression.lower(), expression)
    fields = expression.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidCron("expected 5 fields, 6 fields (seconds first) or an @macro")
    try:
        iterator = croniter(expression, datetime(2000, 1, 1), second_at_beginning=len(fields) == 6)
        iterator.get_next(datetime)
    except CroniterError as error:
        raise InvalidCron(f"invalid cron expression: {error}") from None
    hours = iterator.expanded[1]
    follows_elapsed_time = hours == ["*"] or sorted(hours) == list(range(24))
    return CronSchedule(
        cron=cron,
        timezone=timezone,
        zone=zone,
        follows_elapsed_time=follows_elapsed_time,
        _iterator=iterator,
    )


def _parse_zone(timezone: str) -> ZoneInfo:
    if not timezone or timezone != timezone.strip():
        raise InvalidTimezone("expected an IANA timezone name such as Europe/Paris")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(f"unknown IANA timezone: {timezone}") from None


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("cron arithmetic needs an aware datetime")
    return instant.astimezone(UTC)


def dst_note(schedule: CronSchedule, fire: datetime) -> DstNote | None:
    """What daylight-saving time did to this fire, in the fires listing's words: `gap_shifted` when the
    wall time it stands for did not exist and it fired at the end of the gap, `repeated_hour` when its
    wall time occurs twice that day; None otherwise."""
    instant = _as_utc(fire)
    wall = schedule._wall(instant)
    if wall.replace(tzinfo=schedule.zone, fold=0).utcoffset() != wall.replace(tzinfo=schedule.zone, fold=1).utcoffset():
        return "repeated_hour"
    just_before = instant - timedelta(seconds=1)  # UTC arithmetic: an aware local time would add wall time
    if schedule._offset(just_before) >= schedule._offset(instant):
        return None
    # The fire sits at the end of a gap: it was shifted if the cron named a wall time inside the gap.
    gap_start = schedule._wall(just_before) + timedelta(seconds=1)
    schedule._iterator.set_current(gap_start - timedelta(seconds=1), force=True)
    return "gap_shifted" if schedule._iterator.get_next(datetime) < wall else None
