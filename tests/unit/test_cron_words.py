"""The schedule preview's words: the same table the dashboard's own describeSchedule is held to."""

from __future__ import annotations

import pytest
from syncjobs.shared.cron_words import describe_cron

from tests.acceptance.test_dashboard import SCHEDULE_WORDS


@pytest.mark.parametrize(("schedule", "words"), SCHEDULE_WORDS.items())
def test_words_match_the_dashboard(schedule: tuple[str, str], words: str) -> None:
    assert describe_cron(*schedule) == words


def test_weekdays_by_name_and_an_unusual_expression_as_it_is() -> None:
    assert describe_cron("0 8 * * 1,3", "UTC") == "at 08:00 UTC on Monday, Wednesday"
    assert describe_cron("0 8 1-7 * 1", "UTC") == "cron 0 8 1-7 * 1 (UTC)"
    assert describe_cron("*/1 * * * *", "UTC") == "every minute"
