"""The pure scheduling core: what is due when, and what to do with each fire. No I/O, no clock.

Everything here is a function of (job, now) or a data structure fed by the worker loop, so tests can
drive it over any dates without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Literal, TypeVar

from syncjobs.shared.cron import CronSchedule
from syncjobs.shared.models import FAILED_STATUSES
from syncjobs.shared.retry import Backoff

# A fire processed this late is still on time: it runs even when the job asks for no catch-up.
ON_TIME_GRACE = timedelta(seconds=60)
# At most this many `missed` runs are written per job and decision; older missed fires are not looked at.
MAX_MISSED_RECORDS = 100
MAX_RETRY_DELAY = timedelta(hours=1)

T = TypeVar("T")
K = TypeVar("K")
OverlapDecision = Literal["start", "skip", "queue"]


@dataclass(frozen=True)
class FireDecision:
    """What to do with the fires that are due: run some, record others as missed."""

    run: list[datetime]
    missed: list[datetime]
    older_missed_left_out: bool
    next_fire: datetime


def decide_due_fires(schedule: CronSchedule, next_run_at: datetime, now: datetime, catch_up_fires: int) -> FireDecision:
    """Fires in [next_run_at, now]: the latest `catch_up_fires` run, an on-time fire always runs,
    the rest are missed (the latest MAX_MISSED_RECORDS of them recorded). `next_fire` is the first
    fire after `now`."""
    wanted = max(catch_up_fires, 1) + MAX_MISSED_RECORDS
    due, left_out = _latest_fires(schedule, next_run_at, now, wanted)
    run = due[-catch_up_fires:] if catch_up_fires > 0 else []
    if due and not run and now - due[-1] <= ON_TIME_GRACE:
        run = [due[-1]]
    missed = due[: len(due) - len(run)]
    recorded = missed[-MAX_MISSED_RECORDS:]
    return FireDecision(
        run=run,
        missed=recorded,
        older_missed_left_out=left_out or len(recorded) < len(missed),
        next_fire=schedule.next_after(max(now, next_run_at)),
    )


def _latest_fires(schedule: CronSchedule, since: datetime, now: datetime, count: int) -> tuple[list[datetime], bool]:
    """Up to `count` latest fires in [since, now] (`since` is a fire), and whether older ones exist.

    Walks back from `now` in growing spans instead of forward from `since`, so a per-second job that
    missed a week costs a few hundred steps, not 600,000 (which would stall the loop and the lease).
    """
    if since > now:
        return [], False
    span = timedelta(minutes=1)
    while True:
        start = now - span
        if start <= since:
            fires = [since, *schedule.fires_between(since, now)]
            return fires[-count:], len(fires) > count
        fires = schedule.fires_between(start, now)
        if len(fires) >= count:
            return fires[-count:], True
        span *= 4


@dataclass(frozen=True)
class HeldFires:
    """Fires a pause or a skip holds back: `run` go on, `skipped` are recorded `skipped` with a reason
    (`paused`, `skip`), `missed` are recorded missed; `skips_used` of the job's skip count; `resumed` when
    a fire at or after the pause's `until` ended the pause."""

    run: list[datetime]
    skipped: list[tuple[datetime, str]]
    missed: list[datetime]
    skips_used: int
    resumed: bool


def hold_fires(
    paused: bool, paused_until: datetime | None, skip_count: int, fires: list[datetime], missed: list[datetime]
) -> HeldFires:
    """A paused job skips its fires before `paused_until` (all of them without one); the first fire at or
    after it resumes the job. The next `skip_count` fires that would run are skipped. A missed fire (due
    while no replica led) that the pause held anyway is `skipped: paused` too, not a missed fire to alert
    on; skips are not used up by missed fires."""

    def held(at: datetime) -> bool:
        return paused and (paused_until is None or at < paused_until)

    run: list[datetime] = []
    skipped: list[tuple[datetime, str]] = [(at, "paused") for at in missed if held(at)]
    skips_left, resumed = skip_count, False
    for at in fires:
        if held(at):
            skipped.append((at, "paused"))
            continue
        resumed = resumed or paused
        if skips_left > 0:
            skipped.append((at, "skip"))
            skips_left -= 1
            continue
        run.append(at)
    return HeldFires(run, skipped, [at for at in missed if not held(at)], skip_count - skips_left, resumed)


def decide_overlap(policy: str, running: int, queued: int) -> OverlapDecision:
    """`skip`: a fire that finds a run going is skipped; `queue`: one waits, more are skipped;
    `allow`: runs side by side."""
    if running == 0 or policy == "allow":
        return "start"
    if policy == "queue" and queued == 0:
        return "queue"
    return "skip"


def runs_to_skip(policy: str, waiting: list[tuple[T, str]]) -> list[T]:
    """The job's run is going and these (id, trigger) wait for it, oldest first: the fires its policy skips.

    `skip` skips every scheduled fire; `queue` keeps the oldest waiting run and skips later fires; manual
    and retry runs are never skipped (they wait); `allow` never waits at all."""
    if policy == "allow":
        return []
    skipped: list[T] = []
    for position, (run_id, trigger) in enumerate(waiting):
        if trigger == "schedule" and decide_overlap(policy, running=1, queued=position) == "skip":
            skipped.append(run_id)
    return skipped


def should_retry(status: str, attempt: int, max_attempts: int) -> bool:
    """A failed or timed-out attempt is retried while attempts remain; a cancelled one never."""
    return status in FAILED_STATUSES and attempt < max_attempts


def retry_delay(attempt: int, backoff_seconds: float, random: Callable[[], float]) -> timedelta:
    """Delay before attempt `attempt + 1`: backoff * 2^(attempt-1), capped, jittered (`shared/retry.py`)."""
    backoff = Backoff(backoff_seconds, cap_seconds=MAX_RETRY_DELAY.total_seconds(), jitter=True)
    return timedelta(seconds=backoff.seconds(attempt, random))


@dataclass(frozen=True, order=True)
class _Entry(Generic[K]):
    due: datetime
    sequence: int
    key: K = field(compare=False)


class FirePlan(Generic[K]):
    """The next due time of every planned key (a job's id), earliest first.

    Re-planning or removing a key invalidates its older heap entries lazily (an entry counts while it is
    the key's latest), so an edit costs O(log n) and never a heap rebuild.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry[K]] = []
        self._planned: dict[K, _Entry[K]] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._planned)

    def __contains__(self, key: K) -> bool:
        return key in self._planned

    def plan(self, key: K, due: datetime) -> None:
        """Plan `key` at `due`, replacing whatever was planned for it."""
        planned = self._planned.get(key)
        if planned is not None and planned.due == due:
            return
        entry = _Entry(due, next(self._sequence), key)
        self._planned[key] = entry
        heapq.heappush(self._heap, entry)

    def remove(self, key: K) -> None:
        self._planned.pop(key, None)

    def next_due(self) -> datetime | None:
        self._drop_stale()
        return self._heap[0].due if self._heap else None

    def pop_due(self, now: datetime) -> list[K]:
        """Every key due at or before `now`, earliest first; they leave the plan."""
        keys: list[K] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0].due > now:
                return keys
            entry = heapq.heappop(self._heap)
            del self._planned[entry.key]
            keys.append(entry.key)

    def _drop_stale(self) -> None:
        while self._heap and self._planned.get(self._heap[0].key) is not self._heap[0]:
            heapq.heappop(self._heap)
