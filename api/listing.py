"""Every paged list route is declared one way: a GET that answers `{"items": [...], "next": cursor|null}`.

The route's own function only finds the page (it reads `limit` and `after` with `page_request`, after any
check of its own, so a 403 or a 404 still comes before a bad `limit`'s 422); this module serialises it and
records the route's OpenAPI contract.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from syncjobs.api.context import PAGE_QUERY
from syncjobs.api.openapi import Handler, describe
from syncjobs.shared.models import Output

FoundPage = tuple[Sequence[Output], str | None]  # a page's items and the cursor of the next page (None: last)
FindPage = Callable[[web.Request], Awaitable[FoundPage]]


def paged_list(
    routes: web.RouteTableDef,
    path: str,
    summary: str,
    *,
    tag: str,
    listing: type[BaseModel],
    errors: tuple[int, ...] = (404, 422),
    query: dict[str, dict[str, Any]] | None = None,
) -> Callable[[FindPage], Handler]:
    """Declare `GET path` answering the page `find` returns, described by `listing` (items and next)."""

    def register(find: FindPage) -> Handler:
        async def list_page(request: web.Request) -> web.Response:
            items, next_page = await find(request)
            return web.json_response({"items": [item.to_json() for item in items], "next": next_page})

        list_page.__name__ = list_page.__qualname__ = find.__name__
        declared = describe(summary, tag=tag, response=listing, errors=errors, query=query or PAGE_QUERY)
        return routes.get(path)(declared(list_page))

    return register
