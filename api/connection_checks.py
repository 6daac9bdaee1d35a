"""Write-time checks of what a data source or destination connects to (shared.connection_rules): a 422
naming the field, or a 403 for a raw argv without an admin token; nothing is written when one fails."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from syncjobs.api.context import connection_rules, grant
from syncjobs.shared.connection_rules import TargetRefused, check_command, check_mongodb, check_url
from syncjobs.shared.tenant_uri import check_pems

RAW_COMMAND_MARK = "rawCommandByAdmin"
_CONTROL_CHARACTERS = frozenset(chr(c) for c in range(32)) | {"\x7f"}


def _check_headers(headers: Any) -> None:
    """Header names and values that would split a request (CR, LF, other controls) are refused."""
    if not isinstance(headers, dict):
        return
    for name, value in headers.items():
        if _CONTROL_CHARACTERS & set(str(name)) or _CONTROL_CHARACTERS & set(str(value)) - {"\t"}:
            raise TargetRefused(f"config.headers.{name}", "header names and values may not hold control characters")


async def vet_connection(request: web.Request, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check a source's or destination's (secrets included) config; returns the marks to store with it."""
    rules = connection_rules(request)
    if kind == "mongodb":
        await check_mongodb(rules, str(config.get("uri", "")), str(config.get("database", "")), at_run_time=False)
        check_pems(config)
    elif kind == "http":
        await check_url(rules, str(config.get("baseUrl", "")), field_name="config.baseUrl", at_run_time=False)
        _check_headers(config.get("headers"))
    elif kind == "command":
        is_admin = grant(request).is_admin
        check_command(rules, config, is_admin=is_admin)
        if "command" in config:
            return {RAW_COMMAND_MARK: True}
    return {}
