"""Issue 21's attacks through the REST API with a workspace token, on the production-like policy with one
allowed tenant network (loopback here, where the control server also listens: the hardest case). Each is a
clear 4xx naming the field, and the control database is exactly as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.models import REDACTED
from syncjobs.shared.mongo import Database
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import data_sources
from syncjobs.shared.store.api_tokens import create_token

from tests.fixtures.security import LOOPBACK, production_policy
from tests.integration.test_api_helpers import ADMIN_TOKEN, Tenant, create, job_body, make_job
from tests.integration.test_security_api import refused

pytest_plugins = ["tests.integration.test_api_helpers"]


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return production_policy(settings).with_overrides(admin_token=ADMIN_TOKEN, allowed_networks=LOOPBACK)


def mongodb(uri: str, database: str = "tenant_data") -> dict[str, Any]:
    return {"name": "m", "kind": "mongodb", "config": {"uri": uri, "database": database}}


def port_of(mongo_uri: str) -> str:
    return mongo_uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]


@pytest.mark.parametrize("path", ["/data-sources", "/destinations"])
async def test_finding_2_timeouts_and_aliases_of_the_control_server_are_422(
    tenant: Tenant, db: Database, mongo_uri: str, path: str
) -> None:
    port = port_of(mongo_uri)
    error = await refused(tenant, db, path, mongodb("mongodb://tenant.example/?timeoutMS=6"), 422, "config.uri")
    assert "'timeoutMS' is not allowed" in error["message"]
    for alias in ("[::ffff:127.0.0.1]", "[::127.0.0.1]", "[::ffff:0:127.0.0.1]", "[64:ff9b::7f00:1]"):
        error = await refused(tenant, db, path, mongodb(f"mongodb://{alias}:{port}/"), 422, "config.uri")
        assert "egress policy" in error["message"], error


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("authMechanism=MONGODB-OIDC&authMechanismProperties=ENVIRONMENT:k8s", "authMechanism=MONGODB-OIDC"),
        ("authMechanismProperties=ENVIRONMENT:azure", "'authMechanismProperties'"),
        ("authMechanism=MONGODB-AWS", "authMechanism=MONGODB-AWS"),
        ("tls=true&tlsCAFile=/etc/passwd", "'tlsCAFile'"),
        ("tls=true&tlsCAFile=/no/such/file", "'tlsCAFile'"),
        ("tlsCertificateKeyFile=/etc/shadow", "'tlsCertificateKeyFile'"),
    ],
)
async def test_finding_3_driver_options_that_reach_the_workers_credentials_or_files_are_422(
    tenant: Tenant, db: Database, query: str, named: str
) -> None:
    error = await refused(tenant, db, "/destinations", mongodb(f"mongodb://tenant.example/?{query}"), 422, "config.uri")
    assert named in error["message"]
    assert "/etc" not in error["message"] and "/no/such" not in error["message"]  # no oracle of the files


async def test_finding_3_a_ca_is_pem_text_never_a_path(tenant: Tenant, db: Database) -> None:
    body = mongodb("mongodb://tenant.example/?tls=true")
    body["config"]["tlsCAPem"] = "/etc/ssl/certs/ca-certificates.crt"
    await refused(tenant, db, "/destinations", body, 422, "config.tlsCAPem")


@pytest.mark.parametrize(
    "uri", ["mongodb://%2Ftmp%2Fmongodb-27017.sock/", "mongodb://tenant.example,%2Frun%2Fmongod.sock/?replicaSet=rs"]
)
async def test_finding_9_a_unix_socket_member_is_422(tenant: Tenant, db: Database, uri: str) -> None:
    error = await refused(tenant, db, "/data-sources", mongodb(uri), 422, "config.uri")
    assert "Unix socket" in error["message"]


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[2002:7f00:1::]",
        "[64:ff9b::a00:1]",
        "[fec0::1]",
        "192.0.2.10",
        "198.18.0.1",
        "[2001:db8::1]",
    ],
)
async def test_finding_9_ipv4_in_ipv6_site_local_and_documentation_ranges_are_422(
    tenant: Tenant, db: Database, host: str
) -> None:
    body = {"name": "h", "kind": "http", "config": {"baseUrl": f"http://{host}/", "entities": {"a": {"path": "/a"}}}}
    error = await refused(tenant, db, "/data-sources", body, 422, "config.baseUrl")
    assert "egress policy" in error["message"]
    await refused(tenant, db, "/webhooks", {"url": f"http://{host}/hook"}, 422, "url")


SECRETS = ("pw-in-url", "q-secret", "custom-auth", "proxy-auth", "apim-key", "tap-pwd", "tap-phrase", "listed-1")


async def test_finding_6_secrets_are_sealed_by_default_and_never_shown(tenant: Tenant, db: Database) -> None:
    http = {
        "name": "crm",
        "kind": "http",
        "config": {
            "baseUrl": "https://user:pw-in-url@crm.example/api?api_key=q-secret",
            "headers": {
                "X-Custom-Auth": "custom-auth",
                "Proxy-Authorization": "proxy-auth",
                "Ocp-Apim-Subscription-Key": "apim-key",
                "Content-Type": "application/json",
            },
            "entities": {"a": {"path": "/a"}},
        },
    }
    tap = {
        "name": "tap",
        "kind": "command",
        "config": {
            "tap": "singer-test",
            "config": {"pwd": "tap-pwd", "passphrase": "tap-phrase", "keys": ["listed-1"], "start_date": "2026-01-01"},
        },
    }
    made = [await create(tenant.api, tenant.path("/data-sources"), body) for body in (http, tap)]
    assert made[0]["config"]["headers"]["Content-Type"] == "application/json"
    assert made[0]["config"]["baseUrl"] == REDACTED
    assert made[1]["config"]["config"]["start_date"] == "2026-01-01"
    reader = tenant.api.as_token(await create_token(db, ObjectId(tenant.id), "reader", scope="read"))
    for answer in (
        await reader.call("GET", tenant.path("/data-sources")),
        *[await reader.call("GET", tenant.path(f"/data-sources/{m['id']}")) for m in made],
    ):
        assert answer[0] == 200
        assert not [s for s in SECRETS if s in json.dumps(answer[1])], answer
    stored = json.dumps(await db.data_sources.find().to_list(), default=str)
    assert not [s for s in SECRETS if s in stored], stored


async def test_finding_6_a_kept_secret_is_not_sent_to_a_new_host(tenant: Tenant, db: Database) -> None:
    body = {
        "name": "crm",
        "kind": "http",
        "config": {
            "baseUrl": "https://crm.example/api",
            "headers": {"Authorization": "Bearer crm-secret"},
            "entities": {"a": {"path": "/a"}},
        },
    }
    made = await create(tenant.api, tenant.path("/data-sources"), body)
    item = f"/data-sources/{made['id']}"
    moved = {**made["config"], "baseUrl": "https://attacker.example/api"}
    error = await refused(tenant, db, item, {**body, "config": moved}, 422, "config.headers.Authorization", "PUT")
    assert "give this secret again" in error["message"]
    kept = {**made["config"], "baseUrl": "https://crm.example/v2"}  # same host: the secret may stay
    status, _ = await tenant.api.call("PUT", tenant.path(item), json={**body, "config": kept})
    assert status == 200
    given = {**moved, "headers": {"Authorization": "Bearer new-secret"}}
    status, _ = await tenant.api.call("PUT", tenant.path(item), json={**body, "config": given})
    assert status == 200


async def test_finding_8_entity_lists_are_bounded_at_write_time(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    ids = (setup.source["id"], setup.destination["id"])
    for entities, field in [
        ({"include": [f"c{i}" for i in range(1001)]}, "entities.include"),
        ({"exclude": [f"c{i}" for i in range(1001)]}, "entities.exclude"),
        ({"include": ["x" * 121]}, "entities.include.0"),
    ]:
        await refused(tenant, db, "/sync-jobs", job_body(*ids, name="big", entities=entities), 422, field)
    made = await create(
        tenant.api,
        tenant.path("/sync-jobs"),
        job_body(*ids, name="ok", entities={"include": ["x" * 120 for _ in range(1000)]}),
    )
    assert len(made["entities"]["include"]) == 1000


async def test_finding_8_a_nul_in_a_config_key_is_422(tenant: Tenant, db: Database) -> None:
    body = {"name": "n", "kind": "http", "config": {"baseUrl": "https://crm.example/", "entities": {"a\x00b": {}}}}
    error = await refused(tenant, db, "/data-sources", body, 422, "config")
    assert "NUL" in error["message"]


async def test_finding_8_disabling_a_job_skips_its_pending_runs(tenant: Tenant, db: Database) -> None:
    setup = await make_job(tenant)
    item = tenant.path(f"/sync-jobs/{setup.job['id']}")
    for _ in range(3):
        assert (await tenant.api.call("POST", item + "/run"))[0] == 202
    status, job = await tenant.api.call("POST", item + "/toggle", json={"enabled": False})
    assert status == 200 and job["enabled"] is False
    runs = await db.job_runs.find({"jobId": ObjectId(setup.job["id"])}).to_list()
    assert len(runs) == 3
    assert {(run["status"], run["error"]) for run in runs} == {("skipped", "skipped: the job is disabled")}


async def test_finding_6_a_webhook_url_with_credentials_is_sealed_and_never_shown(tenant: Tenant, db: Database) -> None:
    for url in ("https://hooks.example.com/in?token=hook-secret-1", "https://user:hook-secret-2@hooks.example.com/in"):
        made = await create(tenant.api, tenant.path("/webhooks"), {"url": url})
        assert made["url"] == REDACTED
    plain = await create(tenant.api, tenant.path("/webhooks"), {"url": "https://hooks.example.com/plain"})
    assert plain["url"] == "https://hooks.example.com/plain"
    status, listed = await tenant.api.call("GET", tenant.path("/webhooks"))
    assert status == 200 and "hook-secret" not in json.dumps(listed)
    assert "hook-secret" not in json.dumps(await db.webhooks.find().to_list(), default=str)


async def test_finding_6_a_get_edit_put_keeps_a_url_with_credentials(tenant: Tenant, db: Database) -> None:
    url = "https://user:pw-in-url@crm.example/api?api_key=q-secret"
    body = {"name": "crm", "kind": "http", "config": {"baseUrl": url, "entities": {"a": {"path": "/a"}}}}
    made = await create(tenant.api, tenant.path("/data-sources"), body)
    item = tenant.path(f"/data-sources/{made['id']}")
    status, replaced = await tenant.api.call("PUT", item, json={**body, "name": "crm2", "config": made["config"]})
    assert status == 200 and replaced["config"]["baseUrl"] == REDACTED
    stored = await data_sources.store.stored_config(db, ObjectId(tenant.id), ObjectId(made["id"]))
    assert stored["baseUrl"] == url
