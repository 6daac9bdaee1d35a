"""SYNCJOBS_MAX_RUNS_PER_WORKSPACE: unset or 0 is unlimited; a negative or non-number value is refused."""

from __future__ import annotations

import pytest
from syncjobs.shared.settings import Settings, SettingsError


def test_max_runs_per_workspace_is_unlimited_unless_set() -> None:
    assert Settings.from_env({}).max_runs_per_workspace is None
    assert Settings.from_env({"SYNCJOBS_MAX_RUNS_PER_WORKSPACE": "0"}).max_runs_per_workspace is None
    assert Settings.from_env({"SYNCJOBS_MAX_RUNS_PER_WORKSPACE": "3"}).max_runs_per_workspace == 3


@pytest.mark.parametrize("raw", ["-1", "many"])
def test_a_bad_max_runs_per_workspace_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="SYNCJOBS_MAX_RUNS_PER_WORKSPACE"):
        Settings.from_env({"SYNCJOBS_MAX_RUNS_PER_WORKSPACE": raw})
