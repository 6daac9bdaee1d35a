"""The CLI's side of the REST API: one client, one way to read a list, one wording for what is missing."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# What every client command reads, named in its --help.
CLIENT_ENVIRONMENT = (
    "SYNCJOBS_API (the base URL `syncjobs up` prints, no /api), SYNCJOBS_TOKEN (an API token), "
    "SYNCJOBS_WORKSPACE (a workspace id)"
)
SECRET_MARK = "********"


class ClientError(Exception):
    """Something the user fixes: a missing setting, an unreachable API, an error answer; one line."""


@dataclass(frozen=True)
class ApiClient:
    base_url: str
    token: str
    workspace: str | None = None

    @classmethod
    def from_options(
        cls,
        api: str | None,
        token: str | None,
        workspace: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ApiClient:
        env = os.environ if env is None else env
        base_url = (api or env.get("SYNCJOBS_API") or "").rstrip("/")
        if not base_url:
            raise ClientError("no API: set SYNCJOBS_API (the base URL `syncjobs up` prints) or pass --api")
        if base_url.endswith("/api"):
            base_url = base_url.removesuffix("/api")  # the routes add it
        value = token or env.get("SYNCJOBS_TOKEN") or ""
        if not value:
            raise ClientError("no token: set SYNCJOBS_TOKEN (the admin token `syncjobs up` prints) or pass --token")
        return cls(base_url, value, workspace or env.get("SYNCJOBS_WORKSPACE") or None)

    def ws(self, tail: str = "") -> str:
        """The path of a workspace route; one wording when no workspace is given."""
        if not self.workspace:
            raise ClientError(missing_workspace())
        return f"/api/workspaces/{urllib.parse.quote(self.workspace, safe='')}{tail}"

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        request = urllib.request.Request(
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            with error:
                raise ClientError(f"{method} {path}: {error.code} {_error_message(error.read())}") from None
        except OSError as error:
            reason = getattr(error, "reason", error)  # a URLError wraps the socket's error
            raise ClientError(
                f"the API at {self.base_url} does not answer ({reason}); is `syncjobs up` running?"
            ) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ClientError(
                f"{self.base_url} answered {path} with something else than JSON; is it syncjobs?"
            ) from None

    def items(self, path: str, *, cursor: str = "after", limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list, page after page: `{items, next}` (or the run list's `{runs, next}`, or a bare
        `{items}`), passing `next` back as `cursor`; stops after `limit` items when given."""
        count, token = 0, None
        while True:
            joiner = "&" if "?" in path else "?"
            page = self.call("GET", path + (f"{joiner}{cursor}={urllib.parse.quote(token)}" if token else ""))
            for item in page.get("items", page.get("runs", [])):
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            token = page.get("next")
            if not token:
                return

    def find(self, collection: str, reference: str) -> dict[str, Any]:
        """An object of a workspace collection (`sync-jobs`, `data-sources`, ...) by id or by name."""
        for item in self.items(self.ws(f"/{collection}")):
            if reference in (item["id"], item["name"]):
                return item
        raise ClientError(f"no {collection.rstrip('s').replace('-', ' ')} named or with id {reference!r}")


def missing_workspace() -> str:
    return "no workspace: set SYNCJOBS_WORKSPACE (the workspace id `syncjobs up` prints) or pass --workspace"


def _error_message(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")[:200]


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Left-aligned columns under their names; None shows as `-`."""
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    lines = [columns, *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)
