"""The web dashboard: three static files served from this package, no build step.

The page itself is open (no token); it signs in with a workspace token kept in the tab's sessionStorage and
calls the same REST API as any client, so it can show nothing the token could not read anyway.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()

_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
# Everything the page loads comes from this origin; no inline script, no third-party anything.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


def _asset(name: str) -> web.Response:
    body = resources.files(__package__).joinpath(name).read_bytes()
    return web.Response(body=body, content_type=_FILES[name], charset="utf-8", headers=_HEADERS)


@routes.get("/dashboard")
async def dashboard_root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard/")


@routes.get("/dashboard/")
async def dashboard_page(request: web.Request) -> web.Response:
    return _asset("index.html")


@routes.get("/dashboard/{name:app\\.js|style\\.css}")
async def dashboard_asset(request: web.Request) -> web.Response:
    return _asset(request.match_info["name"])
