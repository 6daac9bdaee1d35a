"""A paginated JSON API as a data source: each configured entity is an endpoint.

Retries 429 and 5xx answers (and dropped connections) with exponential backoff, waiting at least what
`Retry-After` asks. Header values are secrets: they are sent, never logged or put in an error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import aiohttp
from syncjobs.executor.sources import Batch, Record, SourceError
from syncjobs.shared.egress import EgressPolicy, EgressRefused, guarded_connector
from syncjobs.shared.retry import Backoff
from syncjobs.shared.secret_fields import scrub

Sleep = Callable[[float], Awaitable[None]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_WAIT_SECONDS = 300.0
MAX_PAGES = 1_000_000
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_READ_TIMEOUT_SECONDS = 30.0


def dig(body: Any, path: str | None) -> Any:
    """The value at a dotted path (`data.items`) of a decoded JSON body; the body itself for no path."""
    value = body
    for part in (path or "").split("."):
        if not part:
            continue
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds: either a number of seconds or an HTTP date."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HttpSource:
    """Reads `config.entities` from `config.baseUrl`."""

    def __init__(
        self, config: Mapping[str, Any], *, sleep: Sleep = asyncio.sleep, egress: EgressPolicy | None = None
    ) -> None:
        try:
            self._base_url = str(config["baseUrl"])
            self._entities: Mapping[str, Mapping[str, Any]] = config["entities"]
        except KeyError as missing:
            raise SourceError(f"http source config lacks {missing.args[0]!r}") from None
        self._headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        retry = config.get("retry") or {}
        self._max_attempts = int(retry.get("maxAttempts", DEFAULT_MAX_ATTEMPTS))
        self._backoff = Backoff(float(retry.get("backoffSeconds", DEFAULT_BACKOFF_SECONDS)), jitter=True)
        self._timeout = aiohttp.ClientTimeout(
            total=float(config.get("timeoutSeconds", 60)),
            sock_read=float(config.get("readTimeoutSeconds", DEFAULT_READ_TIMEOUT_SECONDS)),
        )
        self._max_bytes = min(  # a tenant may lower the bound, never raise it
            int(config.get("maxResponseBytes", DEFAULT_MAX_RESPONSE_BYTES)), DEFAULT_MAX_RESPONSE_BYTES
        )
        self._sleep = sleep
        self._egress = egress  # checked on every address connected to, redirects included
        self._session: aiohttp.ClientSession | None = None

    async def list_entities(self) -> list[str]:
        return list(self._entities)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = guarded_connector(self._egress) if self._egress else None
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout, connector=connector)
        return self._session

    async def get_json(self, url: str, params: Mapping[str, Any]) -> tuple[Any, Mapping[str, str]]:
        """GET with retries; returns the decoded body and the response headers."""
        shown = scrub(url.split("?", 1)[0], [])  # never the query nor user-info: either may hold a secret
        for attempt in range(1, self._max_attempts + 1):
            wait = self._backoff.seconds(attempt)
            try:
                async with self._client().get(url, params=dict(params)) as response:
                    if response.status in RETRY_STATUSES and attempt < self._max_attempts:
                        asked = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
                        if asked is not None:
                            wait = asked
                        await self._sleep(min(wait, MAX_WAIT_SECONDS))
                        continue
                    if response.status >= 400:
                        raise SourceError(f"GET {shown}: HTTP {response.status}")
                    return json.loads(await self._body(response, shown)), response.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt >= self._max_attempts:
                    raise SourceError(f"GET {shown}: {type(exc).__name__} after {_attempts(attempt)}") from None
                await self._sleep(min(wait, MAX_WAIT_SECONDS))
            except EgressRefused as exc:
                raise SourceError(f"GET {shown}: {exc}") from None
            except ValueError:
                raise SourceError(f"GET {shown}: the answer is not JSON") from None
        raise SourceError(f"GET {shown}: still failing after {_attempts(self._max_attempts)}")

    async def _body(self, response: aiohttp.ClientResponse, shown: str) -> bytes:
        """The answer's bytes, streamed and refused past `maxResponseBytes`: an endless or huge body fails
        the run instead of growing the executor's memory."""
        too_big = SourceError(f"GET {shown}: the answer is larger than maxResponseBytes ({self._max_bytes})")
        if (response.content_length or 0) > self._max_bytes:
            raise too_big
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self._max_bytes:
                raise too_big
        return bytes(body)

    async def read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        spec = self._entities.get(entity)
        if spec is None or "path" not in spec:
            raise SourceError(f"http entity {entity!r} has no `path`")
        id_field = str(spec.get("idField", "id"))
        cursor_field = spec.get("cursorField") if incremental else None
        params: dict[str, Any] = dict(spec.get("params") or {})
        if incremental and cursor is not None and spec.get("cursorParam"):
            params[str(spec["cursorParam"])] = cursor
        newest = cursor
        pages = _Pagination(spec.get("pagination") or {}, params)
        url = urljoin(self._base_url.rstrip("/") + "/", str(spec["path"]).lstrip("/"))
        for _ in range(MAX_PAGES):
            body, headers = await self.get_json(url, pages.params)
            raw = dig(body, spec.get("recordsPath"))
            if not isinstance(raw, list):
                raise SourceError(f"{entity}: no list of records at recordsPath {spec.get('recordsPath')!r}")
            records = [_with_id(item, id_field, entity) for item in raw]
            if cursor_field:
                newest = _newest(newest, records, str(cursor_field), entity)
            next_url = pages.advance(url, body, headers, len(records))
            if next_url is None:
                # The cursor is saved only after the last page: an API need not sort by cursorField.
                yield Batch(records, newest if cursor_field else None)
                return
            yield Batch(records)
            url = next_url
        raise SourceError(f"{entity}: more than {MAX_PAGES} pages")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Pagination:
    """Where the next page is: a page number, a `next` link (body or Link header) or a cursor token."""

    def __init__(self, spec: Mapping[str, Any], params: dict[str, Any]) -> None:
        self.kind = spec.get("type")
        self.spec = spec
        self.params = params
        if self.kind == "page":
            self.params[spec.get("pageParam", "page")] = int(spec.get("startPage", 1))
            if spec.get("sizeParam") and spec.get("pageSize"):
                self.params[spec["sizeParam"]] = int(spec["pageSize"])
        elif self.kind not in (None, "next", "cursor"):
            raise SourceError(f"unknown pagination type {self.kind!r}")

    def advance(self, url: str, body: Any, headers: Mapping[str, str], count: int) -> str | None:
        """The URL of the next page (params updated in place), or None after the last one."""
        if self.kind == "page":
            size = self.spec.get("pageSize")
            if count == 0 or (size and count < int(size)):
                return None
            name = self.spec.get("pageParam", "page")
            self.params[name] += 1
            return url
        if self.kind == "next":
            link = dig(body, self.spec["nextPath"]) if self.spec.get("nextPath") else _link_next(headers)
            if not link or count == 0:
                return None
            self.params.clear()  # a next link carries its own query string
            return urljoin(url, str(link))
        if self.kind == "cursor":
            token = dig(body, self.spec.get("tokenPath", "nextCursor"))
            if token in (None, "") or count == 0:
                return None
            self.params[self.spec.get("cursorParam", "cursor")] = token
            return url
        return None


def _link_next(headers: Mapping[str, str]) -> str | None:
    for part in headers.get("Link", "").split(","):
        if 'rel="next"' in part or "rel=next" in part:
            return part.split(";", 1)[0].strip().strip("<>")
    return None


def _with_id(item: Any, id_field: str, entity: str) -> Record:
    if not isinstance(item, dict):
        raise SourceError(f"{entity}: a record is not a JSON object")
    if id_field not in item:
        raise SourceError(f"{entity}: a record has no {id_field!r} field (set idField)")
    return {"_id": item[id_field], **item}


def _newest(current: Any, records: list[Record], field: str, entity: str) -> Any:
    values = [r[field] for r in records if r.get(field) is not None]
    if current is not None:
        values.append(current)
    try:
        return max(values) if values else current
    except TypeError:
        raise SourceError(f"{entity}: cursorField {field!r} mixes types") from None


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"
