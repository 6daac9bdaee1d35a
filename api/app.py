"""The API process: an aiohttp application over the shared store, stateless so it scales out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from syncjobs.api import (
    admin_tokens,
    connections,
    dashboard,
    fires,
    history,
    holds,
    me,
    monitoring,
    runs,
    sync_jobs,
    tokens,
    webhooks,
    workspaces,
)
from syncjobs.api.auth import auth_middleware
from syncjobs.api.context import CLOCK_KEY, DB_KEY, MAX_BODY_BYTES, RULES_KEY, SETTINGS_KEY
from syncjobs.api.errors import error_middleware
from syncjobs.api.openapi import describe, openapi_document
from syncjobs.api.schemas import Health, HealthDetails
from syncjobs.shared.clock import Clock, SystemClock
from syncjobs.shared.connection_rules import ConnectionRules, discover_control_cluster
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import check_replica_set, close_client, connect, ensure_indexes
from syncjobs.shared.secrets import install_keys
from syncjobs.shared.settings import Settings
from syncjobs.shared.store.api_tokens import register_environment_admin_token
from syncjobs.shared.tap_isolation import isolation

log = get_logger(__name__)

# How long SIGTERM waits for requests in flight before cancelling them (one waiting on an unreachable
# database's server selection included): the api stops within 2 s, database or not.
SHUTDOWN_REQUESTS_SECONDS = 0.5
IN_FLIGHT_KEY = web.AppKey("in_flight", dict[asyncio.Task[Any], asyncio.Future[None]])

ROUTE_TABLES = (
    me.routes,
    workspaces.routes,
    tokens.routes,
    admin_tokens.routes,
    connections.data_source_routes,
    connections.destination_routes,
    sync_jobs.routes,
    runs.routes,
    fires.routes,
    history.routes,
    holds.routes,
    monitoring.routes,
    webhooks.routes,
    dashboard.routes,
)


async def _database(app: web.Application) -> AsyncIterator[None]:
    """Connect, make sure indexes exist and the configured admin token is registered, learn the control
    server's addresses (tenants may not use it); close on exit."""
    settings = app[SETTINGS_KEY]
    client = connect(settings.require_mongodb_uri())
    db = client[settings.database]
    try:
        await check_replica_set(client, allow_arbiters=settings.allow_arbiters)
        await ensure_indexes(db, settings.run_retention_days)
        if settings.admin_token and not await register_environment_admin_token(db, settings.admin_token):
            log.warning("admin_token_revoked", hint="SYNCJOBS_ADMIN_TOKEN was revoked: set a new one")
        app[RULES_KEY] = ConnectionRules.from_settings(settings, await discover_control_cluster(client, settings))
        app[DB_KEY] = db
        log.info("api_database_ready", database=settings.database)
        yield
    finally:
        await close_client(client)


@web.middleware
async def in_flight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keeps each request's task, so shutdown can cancel the ones that outlast SHUTDOWN_REQUESTS_SECONDS."""
    task = asyncio.current_task()
    assert task is not None
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    in_flight = request.app[IN_FLIGHT_KEY]
    in_flight[task] = finished
    try:
        return await handler(request)
    finally:
        in_flight.pop(task, None)
        finished.set_result(None)


async def _end_requests(app: web.Application) -> None:
    """On shutdown: a short grace for requests in flight, then they are cancelled (aiohttp's own shutdown
    would wait twice its timeout for a handler stuck on server selection)."""
    in_flight = app[IN_FLIGHT_KEY]
    if in_flight:
        await asyncio.wait(list(in_flight.values()), timeout=SHUTDOWN_REQUESTS_SECONDS)
    for task in list(in_flight):
        task.cancel()


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One event per request, by route template (no ids in it): at debug, a server error at warning."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects, which the error middleware lets through
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        emit = log.warning if status >= 500 else log.debug  # a console at info shows what went wrong only
        emit(
            "http_request",
            method=request.method,
            route=resource.canonical if resource else request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )


@describe("Liveness and database reachability (no token)", tag="meta", response=Health)
async def healthz(request: web.Request) -> web.Response:
    await request.app[DB_KEY].command("ping")
    details = HealthDetails(tap_isolation=await asyncio.to_thread(isolation))
    return web.json_response(Health(status="ok", details=details).to_json())


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """The application; refuses to exist without a secret key (SecretKeyError), since it stores secrets."""
    install_keys(settings.secret_keys)
    middlewares = [in_flight_middleware, access_log_middleware, error_middleware, auth_middleware]
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[IN_FLIGHT_KEY] = {}
    app.on_shutdown.append(_end_requests)
    app[SETTINGS_KEY] = settings
    app[CLOCK_KEY] = clock or SystemClock()
    app.cleanup_ctx.append(_database)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/openapi.json", openapi_document)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    return app


def run(settings: Settings) -> None:
    """`syncjobs api`: serve until SIGINT / SIGTERM."""
    log.info("api_starting", host=settings.api_host, port=settings.api_port)
    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_REQUESTS_SECONDS,
    )
