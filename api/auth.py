"""Bearer-token authentication, before any handler runs.

Every route needs a token except the open ones (health, metrics, the dashboard page). For a route under
`/api/workspaces/{ws}` the grant must cover that workspace, and the workspace must exist: a foreign or
unknown workspace is a 404, so a token never learns whether another workspace's ids exist.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from syncjobs.api.context import CLOCK_KEY, DB_KEY, GRANT_KEY, WORKSPACE_PARAM, workspace_id
from syncjobs.shared.errors import Forbidden, Unauthorized
from syncjobs.shared.store.api_tokens import TokenGrant, record_use, resolve_token
from syncjobs.shared.store.workspaces import get_workspace

OPEN_PATHS = ("/healthz", "/metrics", "/dashboard")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_open(path: str) -> bool:
    """The dashboard's page and assets are open: it signs in with a token and then calls the API."""
    return path in OPEN_PATHS or path.startswith("/dashboard/")


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


def require_admin(request: web.Request) -> TokenGrant:
    grant = request[GRANT_KEY]
    if not grant.is_admin:
        raise Forbidden("an admin token is required")
    return grant


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_open(request.path):
        return await handler(request)
    db = request.app[DB_KEY]
    now = request.app[CLOCK_KEY].now()
    grant = await resolve_token(db, bearer_token(request), now)
    if grant is None:
        raise Unauthorized("unknown, revoked or expired token")
    if grant.read_only and request.method not in READ_METHODS:
        raise Forbidden("this token has the read scope: it may only GET")
    request[GRANT_KEY] = grant
    if WORKSPACE_PARAM in request.match_info:
        ws = workspace_id(request)
        if grant.is_admin:
            await get_workspace(db, ws)
    response = await handler(request)
    if response.status < 400:
        await record_use(db, grant, now)
    return response
