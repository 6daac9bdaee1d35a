"""A cron expression in words, for people reading a schedule ("every 5 minutes", "at 02:00 Europe/London").

The dashboard's job list says the same in its own few lines of JavaScript (api/dashboard/words.js) so a
list of many jobs needs no round trip; the schedule preview answers with these words.
"""

from __future__ import annotations

import re

from syncjobs.shared.cron import MACROS

__all__ = ["describe_cron"]

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_STEP = re.compile(r"^\*/(\d+)$")
_WEEKDAY_LIST = re.compile(r"^[0-7](,[0-7])*$")


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def describe_cron(cron: str, timezone: str) -> str:
    """Words for the common shapes; any other expression is named as it is, with its zone."""
    fallback = f"cron {cron} ({timezone})"
    fields = MACROS.get(cron.strip().lower(), cron).split()
    if len(fields) == 6:
        seconds, fields = fields[0], fields[1:]
        step = _STEP.match(seconds)
        if all(f == "*" for f in fields) and (step or seconds == "*"):
            return f"every {_plural(int(step.group(1)), 'second')}" if step else "every second"
        if seconds != "0":
            return fallback
    if len(fields) != 5:
        return fallback
    minute, hour, day, month, weekday = fields
    every_day = day == month == weekday == "*"
    minute_step, hour_step = _STEP.match(minute), _STEP.match(hour)
    if every_day and hour == "*":
        if minute == "*" or (minute_step and int(minute_step.group(1)) == 1):
            return "every minute"
        if minute_step:
            return f"every {_plural(int(minute_step.group(1)), 'minute')}"
        if minute == "0":
            return "every hour"
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}"
    if every_day and hour_step and minute.isdigit():
        return f"every {_plural(int(hour_step.group(1)), 'hour')} at :{int(minute):02d}"
    if minute.isdigit() and hour.isdigit() and month == "*":
        at = f"at {int(hour):02d}:{int(minute):02d} {timezone}"
        if day == "*" and weekday == "*":
            return at
        if day == "*" and weekday == "1-5":
            return f"{at} on weekdays"
        if day == "*" and _WEEKDAY_LIST.match(weekday):
            return f"{at} on {', '.join(DAYS[int(d) % 7] for d in weekday.split(','))}"
        if day.isdigit() and weekday == "*":
            return f"{at} on day {int(day)} of the month"
    return fallback
