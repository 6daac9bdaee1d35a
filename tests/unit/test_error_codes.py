"""The API's error codes: each domain error's `code` (derived from its class name unless it names another)."""

from __future__ import annotations

from syncjobs.api.context import MalformedBody
from syncjobs.shared import errors
from syncjobs.shared.connection_rules import TargetRefused
from syncjobs.shared.tenant_uri import UriRefused


def test_each_error_kind_answers_its_documented_code() -> None:
    codes = {
        errors.SyncjobsError: "error",
        errors.ArbitersRefused: "arbiters_refused",
        errors.NotFound: "not_found",
        errors.Conflict: "conflict",
        errors.ValidationFailed: "validation_error",
        errors.PreconditionFailed: "precondition_failed",
        errors.Unauthorized: "unauthorized",
        errors.Forbidden: "forbidden",
        errors.DatabaseUnavailable: "database_unavailable",
        errors.StaleLeader: "stale_leader",
        MalformedBody: "malformed_json",
        TargetRefused: "target_refused",
        UriRefused: "uri_refused",
    }
    assert {kind: kind.code for kind in codes} == codes


def test_a_refinement_keeps_its_kind_s_code() -> None:
    assert errors.InvalidCron("bad").code == errors.InvalidTimezone("bad").code == "validation_error"
    assert errors.InvalidCron("bad").details == [{"field": "schedule.cron", "message": "bad"}]
