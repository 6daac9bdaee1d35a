"""`syncjobs apply`'s pure parts: what counts as a change, how a file is read, how a table looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncjobs.apply import KINDS, load
from syncjobs.apply import _differs as differs
from syncjobs.client import ClientError, table
from syncjobs.demo import declaration


def test_only_the_fields_the_file_gives_are_compared_and_a_write_only_secret_is_unchanged() -> None:
    current = {"name": "j", "schedule": {"cron": "@hourly", "timezone": "UTC"}, "config": {"uri": "********"}}
    assert not differs({"name": "j", "schedule": {"cron": "@hourly"}}, current)
    assert not differs({"config": {"uri": "mongodb://elsewhere"}}, current)
    assert differs({"schedule": {"cron": "@daily"}}, current)
    assert differs({"enabled": False}, current)  # absent on the server: a change


def test_the_example_file_is_the_demos_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "mongodb://127.0.0.1:1/?directConnection=true"
    monkeypatch.setenv("SYNCJOBS_MONGODB_URI", uri)
    example = Path(__file__).resolve().parents[2] / "examples" / "jobs.yaml"
    assert load(str(example)) == declaration(uri)


def test_a_variable_that_is_not_set_or_an_unknown_section_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    unset = tmp_path / "unset.yaml"
    unset.write_text("# ${IN_A_COMMENT} is no value\nsources: [{name: s, config: {uri: '${NOT_SET_HERE}'}}]\n")
    with pytest.raises(ClientError, match=r"\$\{NOT_SET_HERE\} is not set"):
        load(str(unset))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("pipelines: []\n")
    with pytest.raises(ClientError, match="sources, destinations and jobs"):
        load(str(unknown))
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("jobs: [{schedule: {cron: '@hourly'}}]\n")
    with pytest.raises(ClientError, match="each with a name"):
        load(str(nameless))
    assert [key for key, _, _ in KINDS] == ["sources", "destinations", "jobs"]  # the order objects are made in


def test_a_table_aligns_columns_and_shows_none_as_a_dash() -> None:
    rendered = table([{"id": "1", "name": "alpha", "x": None}, {"id": "22", "name": "b", "x": 3}], ["id", "name", "x"])
    assert rendered.splitlines() == ["id  name   x", "1   alpha  -", "22  b      3"]
