"""The web dashboard: static files served from this package (a page, a style sheet, six scripts), no build step.

The page itself is open (no token); it signs in with a workspace token kept in the tab's sessionStorage and
calls the same REST API as any client, so it can show nothing the token could not read anyway.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()

_SCRIPTS = ("api.js", "words.js", "forms.js", "jobs.js", "job.js", "app.js")  # index.html loads them in this order
_FILES = {"index.html": "text/html", "style.css": "text/css", **dict.fromkeys(_SCRIPTS, "text/javascript")}
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


@routes.get("/dashboard/{name:[a-z]+\\.(?:js|css)}")
async def dashboard_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES:
        raise web.HTTPNotFound()
    return _asset(name)
