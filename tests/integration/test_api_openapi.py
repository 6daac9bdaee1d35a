"""The OpenAPI document describes every route the server registers, and every `$ref` in it resolves."""

from __future__ import annotations

import re
from typing import Any

from syncjobs.api.openapi import OPERATIONS

from tests.integration.test_api_helpers import Api

pytest_plugins = ["tests.integration.test_api_helpers"]

ISSUE_ROUTES = {
    ("get", "/healthz"),
    ("get", "/api/openapi.json"),
    ("post", "/api/workspaces"),
    ("get", "/api/workspaces/{ws}"),
    *{
        (method, f"/api/workspaces/{{ws}}/{kind}")
        for kind in ("data-sources", "destinations", "sync-jobs")
        for method in ("get", "post")
    },
    *{
        (method, f"/api/workspaces/{{ws}}/{kind}/{{id}}")
        for kind in ("data-sources", "destinations", "sync-jobs")
        for method in ("get", "put", "delete")
    },
    ("post", "/api/workspaces/{ws}/sync-jobs/{id}/toggle"),
    ("post", "/api/workspaces/{ws}/sync-jobs/{id}/run"),
    ("get", "/api/workspaces/{ws}/sync-jobs/{id}/status"),
    ("get", "/api/workspaces/{ws}/sync-jobs/{id}/runs"),
}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


async def test_every_registered_route_is_described(api: Api) -> None:
    status, doc = await api.call("GET", "/api/openapi.json")
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in api.client.app.router.routes()
        if route.method not in ("HEAD", "*") and route.resource is not None
    }
    described = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert registered == described
    assert ISSUE_ROUTES <= registered
    # Every JSON route declares its contract; only the dashboard's static files may go without.
    undeclared = sorted(
        f"{route.method} {route.resource.canonical}"
        for route in api.client.app.router.routes()
        if route.method != "HEAD"
        and route.handler not in OPERATIONS
        and route.resource
        and not route.resource.canonical.startswith("/dashboard")
    )
    assert undeclared == []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (method, path)
            assert operation["responses"], (method, path)
            if not path.startswith("/dashboard"):
                assert any(code.startswith("2") for code in operation["responses"]), (method, path)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


async def test_schemas_resolve_and_use_camel_case(api: Api) -> None:
    _, doc = await api.call("GET", "/api/openapi.json")
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    job_input = schemas["SyncJobInput"]
    assert {"name", "dataSourceId", "destinationDatabaseId", "schedule"} <= set(job_input["required"])
    assert job_input["additionalProperties"] is False
    assert {"nextRunAt", "lastRunAt", "lastStatus", "averageDurationMs", "createdAt"} <= set(
        schemas["SyncJob"]["properties"]
    )
    assert set(schemas["RunPage"]["properties"]) == {"runs", "next"}
    assert set(schemas["ErrorBody"]["properties"]) == {"error"}
    create = doc["paths"]["/api/workspaces/{ws}/sync-jobs"]["post"]
    assert set(create["responses"]) >= {"201", "400", "401", "409", "413", "422"}
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SyncJobInput"
    }
    for open_path in ("/healthz", "/metrics", "/dashboard/"):
        assert doc["paths"][open_path]["get"]["security"] == []


async def test_openapi_needs_a_token(api: Api) -> None:
    assert (await api.call("GET", "/api/openapi.json", token=None))[0] == 401
