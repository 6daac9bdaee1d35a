"""The change log's diff: client-visible fields only, secrets redacted."""

from __future__ import annotations

from syncjobs.shared.store.job_changes import field_changes


def test_changes_leave_out_server_fields_and_redact_secrets() -> None:
    old = {
        "name": "a",
        "nextRunAt": "x",
        "version": 1,
        "config": {"uri": "mongodb://u:p@h/", "db": "d"},
        "apiKey": "k1",
    }
    new = {
        "name": "b",
        "nextRunAt": "y",
        "version": 2,
        "config": {"uri": "mongodb://u:q@h/", "db": "d"},
        "apiKey": "k2",
    }
    assert field_changes(old, new) == [
        {"field": "apiKey", "old": "********", "new": "********"},
        {"field": "config", "old": {"uri": "********", "db": "d"}, "new": {"uri": "********", "db": "d"}},
        {"field": "name", "old": "a", "new": "b"},
    ]
    assert field_changes(old, old) == []
