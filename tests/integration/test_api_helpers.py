"""Fixtures and helpers shared by the API tests: a real aiohttp server on the session's SecantusDB.

Imported by each tests/integration/test_api_*.py module (fixtures are plain imports, no conftest needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from bson import ObjectId
from syncjobs.api.app import create_app
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings
from syncjobs.shared.store.api_tokens import create_token

from tests.fixtures.fake_clock import FakeClock
from tests.fixtures.openapi_contract import OpenApiContract

ADMIN_TOKEN = "sjt_admin-token-for-tests"
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SOURCE_URI = "mongodb://reader:s3cret@source.example:27017/?authSource=admin"
DEST_URI = "mongodb://writer:pa55@dest.example:27017/"


@dataclass
class Api:
    """A test client that answers (status, parsed JSON body or None), and checks every answer against the
    server's `/api/openapi.json`: each API test is also a test of the document."""

    client: TestClient[web.Request, web.Application]
    token: str | None = ADMIN_TOKEN
    contracts: dict[str, OpenApiContract] = field(default_factory=dict, repr=False)  # one document, shared

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | IO[bytes] | None = None,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        token = self.token if token == "default" else token
        all_headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, json=json, data=data, headers=all_headers) as resp:
            raw = await resp.read()
            is_json = bool(raw) and resp.content_type == "application/json"
            body = await resp.json() if is_json else (raw.decode() if raw else None)
        (await self.contract()).check(method, path, resp.status, body, is_json=is_json)
        return resp.status, body

    async def contract(self) -> OpenApiContract:
        """The served OpenAPI document, read once (with the admin token: it needs one)."""
        if "document" not in self.contracts:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with self.client.get("/api/openapi.json", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                self.contracts["document"] = OpenApiContract(await resp.json())
        return self.contracts["document"]

    def as_token(self, token: str | None) -> Api:
        return Api(self.client, token, self.contracts)


@dataclass
class Tenant:
    """A workspace with its own token, and an Api acting with that token."""

    id: str
    token: str
    api: Api

    def path(self, tail: str = "") -> str:
        return f"/api/workspaces/{self.id}{tail}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_overrides(admin_token=ADMIN_TOKEN)


@pytest.fixture
async def api(aiohttp_client: Any, api_settings: Settings, clock: FakeClock, db: Database) -> Api:
    client = await aiohttp_client(create_app(api_settings, clock=clock))
    api = Api(client)
    await api.contract()  # read before the test's snapshots: the admin token's first use is recorded
    return api


async def make_tenant(api: Api, db: Database, name: str) -> Tenant:
    status, body = await api.call("POST", "/api/workspaces", json={"name": name})
    assert status == 201, body
    token = await create_token(db, ObjectId(body["id"]), f"{name} token")
    return Tenant(body["id"], token, api.as_token(token))


@pytest.fixture
async def tenant(api: Api, db: Database) -> Tenant:
    return await make_tenant(api, db, "acme")


@pytest.fixture
async def other_tenant(api: Api, db: Database) -> Tenant:
    return await make_tenant(api, db, "globex")


def source_body(name: str = "orders-db", **overrides: Any) -> dict[str, Any]:
    return {"name": name, "kind": "mongodb", "config": {"uri": SOURCE_URI, "database": "shop"}, **overrides}


def destination_body(name: str = "warehouse", **overrides: Any) -> dict[str, Any]:
    return {"name": name, "kind": "mongodb", "config": {"uri": DEST_URI, "database": "dw"}, **overrides}


def job_body(source_id: str, destination_id: str, name: str = "orders-hourly", **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "dataSourceId": source_id,
        "destinationDatabaseId": destination_id,
        "schedule": {"cron": "0 * * * *", "timezone": "UTC"},
        "syncMode": "incremental",
        "entities": {"include": ["orders"], "exclude": []},
        "enabled": True,
        "overlap": "skip",
        "timeoutSeconds": 600,
        "retry": {"maxAttempts": 3, "backoffSeconds": 10},
        **overrides,
    }


async def create(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = await api.call("POST", path, json=body)
    assert status == 201, created
    return created  # type: ignore[no-any-return]


@dataclass
class JobSetup:
    source: dict[str, Any]
    destination: dict[str, Any]
    job: dict[str, Any]


async def make_job(tenant: Tenant, **overrides: Any) -> JobSetup:
    source = await create(tenant.api, tenant.path("/data-sources"), source_body())
    destination = await create(tenant.api, tenant.path("/destinations"), destination_body())
    job = await create(tenant.api, tenant.path("/sync-jobs"), job_body(source["id"], destination["id"], **overrides))
    return JobSetup(source, destination, job)


async def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection: compared before and after a rejected request."""
    names = sorted(await db.list_collection_names())
    return {name: await db[name].find().sort("_id", 1).to_list() for name in names}
