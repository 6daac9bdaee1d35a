"""The run-time half of the tenancy checks: what got past the api (written before the rules, or whose DNS
changed since) fails the run naming the refused address, before any data moves."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from bson import ObjectId
from syncjobs.executor.guard import ControlFence, check_connected
from syncjobs.shared.clock import SystemClock
from syncjobs.shared.connection_rules import ConnectionRules, ControlCluster, TargetRefused
from syncjobs.shared.egress import EgressPolicy
from syncjobs.shared.mongo import Database, connect
from syncjobs.shared.settings import Settings
from syncjobs.shared.store.webhooks import WebhookInput, create_webhook
from syncjobs.shared.tap_isolation import NAMESPACE_ISOLATIONS, isolation
from syncjobs.worker.notifier import AlertEvent, DeliveryPolicy, announce

from tests.fixtures.executor_world import (
    connection_rules,
    make_job,
    make_tap_job,
    result_of,
    run_job,
    scratch_databases,
)
from tests.fixtures.local_http import serving
from tests.fixtures.security import SINGER_TAP_ARGV, TEST_TAP

PRODUCTION = {"allowed_networks": (), "control_cluster_databases": ()}


@dataclass
class Server:
    url: str = ""
    hits: list[str] = field(default_factory=list)


@pytest.fixture
async def internal_service() -> AsyncIterator[Server]:
    """An HTTP service on loopback that records each request; /hop redirects to 127.0.0.2."""
    state = Server()

    async def anything(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        if request.path == "/hop":
            raise web.HTTPFound(state.url.replace("127.0.0.1", "127.0.0.2") + "/secrets")
        return web.json_response([{"id": 1}])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    async with serving(app) as url:
        state.url = url
        yield state


async def test_a_raw_argv_no_admin_saved_never_runs(db: Database, mongo_uri: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    async with scratch_databases(mongo_uri, 1) as (dest,):
        config = {"command": ["sh", "-c", f"touch {marker}"]}
        _, job_id = await make_job(
            db, source_kind="command", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
        )
        code, events = await run_job(db, job_id)
        assert code == 1
        assert "source.config.command" in result_of(events)["error"]
        assert not marker.exists()
        await db.data_sources.update_one({}, {"$set": {"rawCommandByAdmin": True}})  # what an admin's save records
        await db.data_sources.update_one(
            {},
            {
                "$set": {
                    "config": {"command": list(SINGER_TAP_ARGV), "config": {"streams": {"rows": [{"id": 0, "seq": 0}]}}}
                }
            },
        )
        code, events = await run_job(db, job_id)
        assert code == 0, result_of(events)


async def test_an_unknown_tap_fails_the_run(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_job(
            db, source_kind="command", source_config={"tap": "gone"}, dest_uri=mongo_uri, dest_database=dest.name
        )
        code, events = await run_job(db, job_id)
        assert code == 1 and "source.config.tap" in result_of(events)["error"]


async def test_a_destination_on_the_control_server_fails_the_run_and_writes_nothing(
    db: Database, mongo_uri: str
) -> None:
    """The 'becoming admin' attack, as if DNS had changed after the api accepted the destination."""
    forged = {"streams": {"api_tokens": [{"id": "forged", "seq": 0, "workspaceId": None, "name": "admin"}]}}
    _, job_id = await make_job(
        db,
        source_kind="command",
        source_config={"tap": TEST_TAP, "config": forged},
        dest_uri=mongo_uri,
        dest_database=db.name,
        mode="incremental",
    )
    tokens_before = await db.api_tokens.find().to_list()
    for rules, expected in [
        (await connection_rules(db), "destination.config.database"),  # never the control database itself
        (await connection_rules(db, control_cluster_databases=()), "destination.config.uri"),
        (await connection_rules(db, **PRODUCTION), "127.0.0.1"),
    ]:
        code, events = await run_job(db, job_id, rules=rules)
        error = result_of(events)["error"]
        assert code == 1 and expected in error, error
        assert await db.api_tokens.find().to_list() == tokens_before


async def test_reading_the_control_database_fails_the_run(db: Database, mongo_uri: str) -> None:
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_job(
            db,
            source_kind="mongodb",
            source_config={"uri": mongo_uri.replace("127.0.0.1", "localhost"), "database": db.name},
            dest_uri=mongo_uri,
            dest_database=dest.name,
        )
        code, events = await run_job(db, job_id)
        assert code == 1 and "source.config.database" in result_of(events)["error"]
        assert await dest.list_collection_names() == []


async def test_a_server_known_only_by_its_process_id_is_still_the_control_server(db: Database, mongo_uri: str) -> None:
    """An alias no resolution would reveal (a NAT, a proxy): `hello`'s process id gives it away."""
    rules = await connection_rules(db, control_cluster_databases=())
    blind = ConnectionRules(rules.egress, ControlCluster(db.name, frozenset(), rules.control.process_ids))
    assert rules.control.process_ids
    client = connect(mongo_uri)
    try:
        with pytest.raises(TargetRefused, match="control database's server"):
            await check_connected(ControlFence(blind), client, "tenant", "destination.config.")
    finally:
        await client.close()


async def test_an_http_source_on_loopback_fails_the_run_without_a_request(
    db: Database, mongo_uri: str, internal_service: Server
) -> None:
    async with scratch_databases(mongo_uri, 1) as (dest,):
        config = {"baseUrl": internal_service.url, "entities": {"things": {"path": "/things"}}}
        _, job_id = await make_job(
            db, source_kind="http", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
        )
        production = await connection_rules(db, **PRODUCTION)
        code, events = await run_job(db, job_id, rules=production)
        assert code == 1 and "127.0.0.1" in result_of(events)["error"]
        assert internal_service.hits == []


async def test_a_redirect_to_a_refused_address_is_not_followed(
    db: Database, mongo_uri: str, internal_service: Server
) -> None:
    async with scratch_databases(mongo_uri, 1) as (dest,):
        config = {
            "baseUrl": internal_service.url,
            "entities": {"things": {"path": "/hop"}},
            "retry": {"maxAttempts": 1},
        }
        _, job_id = await make_job(
            db, source_kind="http", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
        )
        only_one_address = await connection_rules(db, allowed_networks=("127.0.0.1/32",))
        code, events = await run_job(db, job_id, rules=only_one_address)
        assert code == 1 and "127.0.0.2" in result_of(events)["error"], result_of(events)
        assert internal_service.hits == ["/hop"]


async def test_a_webhook_on_loopback_is_not_delivered(
    db: Database, settings: Settings, internal_service: Server
) -> None:
    ws = ObjectId()
    body = WebhookInput.model_validate({"url": internal_service.url + "/hook"})
    await create_webhook(db, ws, body, datetime.now(UTC))
    event = AlertEvent("alert.opened", "consecutive_failures", str(ObjectId()), {"text": "x"})
    await announce(db, ws, [event], DeliveryPolicy(attempts=3, first_backoff_seconds=0), EgressPolicy(), SystemClock())
    [delivery] = await db.webhook_deliveries.find().to_list()
    assert delivery["outcome"] == "failed" and delivery["attempts"] == 1
    assert "127.0.0.1" in delivery["error"] and "egress policy" in delivery["error"]
    assert internal_service.hits == []
    await announce(
        db, ws, [event], DeliveryPolicy(), EgressPolicy.from_strings(settings.allowed_networks), SystemClock()
    )
    assert internal_service.hits == ["/hook"]


async def test_a_uri_option_outside_the_allowlist_fails_the_run(db: Database, mongo_uri: str) -> None:
    """Stored before the allowlist (or written around the api): the executor rebuilds the URI and refuses."""
    with_timeout = f"{mongo_uri}{'&' if '?' in mongo_uri else '?'}timeoutMS=6"
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_job(
            db,
            source_kind="mongodb",
            source_config={"uri": mongo_uri, "database": dest.name},
            dest_uri=with_timeout,
            dest_database=dest.name,
        )
        code, events = await run_job(db, job_id)
        error = result_of(events)["error"]
        assert code == 1 and "destination.config.uri" in error and "'timeoutMS' is not allowed" in error, error
        assert await dest.list_collection_names() == []


async def test_a_run_error_never_echoes_the_sources_secrets(db: Database, mongo_uri: str) -> None:
    config = {
        "baseUrl": "http://user:pw-in-url@127.0.0.1:1/api",
        "headers": {"X-Custom-Auth": "custom-auth-1"},
        "entities": {"a": {"path": "/a?api_key=q-secret-1"}},
        "retry": {"maxAttempts": 1},
    }
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_job(
            db, source_kind="http", source_config=config, dest_uri=mongo_uri, dest_database=dest.name
        )
        code, events = await run_job(db, job_id)
    text = json.dumps(events)
    assert code == 1 and "127.0.0.1:1" in result_of(events)["error"], events
    assert not [s for s in ("pw-in-url", "q-secret-1", "custom-auth-1") if s in text], text


@pytest.fixture
async def service_on_127_0_0_2() -> AsyncIterator[Server]:
    """An HTTP service on 127.0.0.2, which the tests' rules below refuse (only 127.0.0.1 is allowed)."""
    state = Server()

    async def anything(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        return web.Response(text="internal secret")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    async with serving(app, "127.0.0.2") as url:
        state.url = url
        yield state


async def test_a_tap_reaches_the_network_only_through_the_egress_proxy(
    db: Database, mongo_uri: str, service_on_127_0_0_2: Server
) -> None:
    """Issue 21, finding 4: a tap given an internal URL reached it; now the proxy refuses it, and a tap
    that ignores the proxy and dials directly finds no route out of its network namespace."""
    rules = await connection_rules(db, allowed_networks=("127.0.0.1/32",))
    target = service_on_127_0_0_2.url
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, {"url": f"{target}/secrets"})
        code, events = await run_job(db, job_id, rules=rules)
        error = result_of(events)["error"]
        assert code == 1 and "egress proxy refused" in error and "127.0.0.2 (loopback)" in error, error
        if isolation() in NAMESPACE_ISOLATIONS:
            _, job_id = await make_tap_job(db, mongo_uri, dest, {"dial": target.removeprefix("http://")})
            code, events = await run_job(db, job_id, rules=rules)
            error = result_of(events)["error"]
            assert code == 1 and "tap cannot dial" in error, error
        assert service_on_127_0_0_2.hits == []
        assert await dest.list_collection_names() == []
        allowed = await connection_rules(db, allowed_networks=("127.0.0.0/8",))
        _, job_id = await make_tap_job(db, mongo_uri, dest, {"url": f"{target}/public"})
        code, events = await run_job(db, job_id, rules=allowed)
        assert code == 0, events
        assert set(service_on_127_0_0_2.hits) == {"/public"}  # through the proxy, which the policy now allows
        assert [doc["body"] async for doc in dest.fetched.find()] == ["internal secret"]


async def test_a_tap_gets_a_minimal_environment(db: Database, mongo_uri: str, tmp_path: Path) -> None:
    """Issue 21, finding 5 (the tap's half): none of the executor's settings reach the tap's environment."""
    env_file = tmp_path / "env.json"
    os.environ["SYNCJOBS_CANARY"] = "x"  # the executor's own environment holds SYNCJOBS_* settings
    try:
        async with scratch_databases(mongo_uri, 1) as (dest,):
            _, job_id = await make_tap_job(db, mongo_uri, dest, {"streams": {"s": []}, "envFile": str(env_file)})
            code, events = await run_job(db, job_id)
    finally:
        del os.environ["SYNCJOBS_CANARY"]
    assert code == 0, events
    names = set(json.loads(env_file.read_text()))
    assert not {name for name in names if name.startswith("SYNCJOBS_")}
    assert names <= {"PATH", "LANG", "HOME", "TMPDIR", "LC_CTYPE"} | {
        f"{p}_PROXY" for p in ("HTTP", "HTTPS", "ALL")
    } | {f"{p}_proxy" for p in ("http", "https", "all")}


async def test_a_tap_cannot_tunnel_to_the_control_server_through_the_proxy(db: Database, mongo_uri: str) -> None:
    """Even where loopback is allowed (the tests' rules), CONNECT to the control server's port is refused."""
    control = mongo_uri.split("//", 1)[1].split("/", 1)[0]
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, {"url": f"https://{control}/"})
        code, events = await run_job(db, job_id)
    error = result_of(events)["error"]
    assert code == 1 and "the control database's server" in error and "egress proxy refused" in error, error


async def test_without_a_namespace_a_tap_is_still_checked_through_the_proxy(
    db: Database, mongo_uri: str, service_on_127_0_0_2: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`proxy-only` (no namespace allowed): the proxy on loopback TCP still refuses what the policy refuses."""
    monkeypatch.setattr("syncjobs.executor.sources.command.isolation", lambda: "proxy-only")
    rules = await connection_rules(db, allowed_networks=("127.0.0.1/32",))
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, {"url": f"{service_on_127_0_0_2.url}/secrets"})
        code, events = await run_job(db, job_id, rules=rules)
    error = result_of(events)["error"]
    assert code == 1 and "egress proxy refused" in error and "127.0.0.2 (loopback)" in error, error
    assert service_on_127_0_0_2.hits == []
