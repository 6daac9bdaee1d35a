"""The API logs one event per request, by route template, and never a token or a secret."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from tests.integration.test_api_helpers import SOURCE_URI, Tenant, make_job

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_one_event_per_request_without_ids_tokens_or_secrets(tenant: Tenant) -> None:
    with capture_logs() as events:
        setup = await make_job(tenant)
        await tenant.api.call("GET", tenant.path(f"/sync-jobs/{setup.job['id']}"))
        await tenant.api.call("GET", tenant.path("/sync-jobs/nope"))
        await tenant.api.call("GET", "/healthz", token=None)
    requests = [event for event in events if event["event"] == "http_request"]
    assert [(e["method"], e["route"], e["status"]) for e in requests] == [
        ("POST", "/api/workspaces/{ws}/data-sources", 201),
        ("POST", "/api/workspaces/{ws}/destinations", 201),
        ("POST", "/api/workspaces/{ws}/sync-jobs", 201),
        ("GET", "/api/workspaces/{ws}/sync-jobs/{id}", 200),
        ("GET", "/api/workspaces/{ws}/sync-jobs/{id}", 404),
        ("GET", "/healthz", 200),
    ]
    assert {e["log_level"] for e in requests} == {"debug"}
    text = json.dumps(events, default=str)
    for leak in (tenant.token, SOURCE_URI, setup.job["id"]):
        assert leak not in text
