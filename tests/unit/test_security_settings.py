"""The tenancy settings as the environment gives them: taps, allowed networks, keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from syncjobs.shared.secrets import SecretKeyError, parse_keys
from syncjobs.shared.settings import Settings, SettingsError

from tests.fixtures.security import SECOND_SECRET_KEY, TEST_SECRET_KEY


def test_taps_come_from_a_file_and_the_variable_wins(tmp_path: Path) -> None:
    taps_file = tmp_path / "taps.json"
    taps_file.write_text(json.dumps({"tap-github": ["/opt/taps/tap-github"], "tap-csv": ["tap-csv", "--x"]}))
    env = {"SYNCJOBS_TAPS_FILE": str(taps_file), "SYNCJOBS_TAPS": json.dumps({"tap-csv": ["/usr/bin/tap-csv"]})}
    assert Settings.from_env(env).taps == {"tap-github": ("/opt/taps/tap-github",), "tap-csv": ("/usr/bin/tap-csv",)}
    assert Settings.from_env({}).taps == {}


@pytest.mark.parametrize("raw", ["[]", '{"t": []}', '{"t": "tap-csv"}', '{"t": [1]}', "not json"])
def test_malformed_taps_are_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="SYNCJOBS_TAPS"):
        Settings.from_env({"SYNCJOBS_TAPS": raw})


def test_networks_and_control_databases_are_lists() -> None:
    env = {"SYNCJOBS_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128", "SYNCJOBS_CONTROL_CLUSTER_DATABASES": "a,b"}
    settings = Settings.from_env(env)
    assert settings.allowed_networks == ("127.0.0.0/8", "::1/128")
    assert settings.control_cluster_databases == ("a", "b")
    with pytest.raises(SettingsError, match=r"10\.0\.0\.0/33"):
        Settings.from_env({"SYNCJOBS_ALLOWED_NETWORKS": "10.0.0.0/33"})


def test_secret_keys_are_checked() -> None:
    assert parse_keys(f"{TEST_SECRET_KEY}, {SECOND_SECRET_KEY}") == (TEST_SECRET_KEY, SECOND_SECRET_KEY)
    with pytest.raises(SecretKeyError, match="key 2"):
        parse_keys(f"{TEST_SECRET_KEY},short")
