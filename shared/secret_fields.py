"""Which values of a connection config are secrets: all of them where secrets hide, unless the key is public.

Deciding by key name missed common secrets (`X-Custom-Auth`, `Ocp-Apim-Subscription-Key`, a tap's `pwd`, a
password in `baseUrl`, `?api_key=`), so the rule is by default: every header value except a short public
list, every value of a tap's config except a short public list, any URL that carries user-info or a query,
and still every value under a secret-looking key (lists and objects under it included). The same rule
seals on write, opens for the executor, and redacts in answers (`REDACTED`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from syncjobs.shared.errors import ValidationFailed
from syncjobs.shared.tenant_uri import UriRefused, parse_tenant_uri

REDACTED = "********"
SEALED_PREFIX = "fernet:"
PUBLIC_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "cache-control", "content-type", "user-agent"}
)
PUBLIC_TAP_KEYS = frozenset({"start_date", "end_date", "user_agent", "page_size", "streams_to_sync"})
_SECRET_KEY = re.compile(
    r"^(uri|auth|authorization|cookie|dsn)$|secret|password|passwd|pwd|passphrase|token|api[_-]?key|credential"
    r"|private[_-]?key|certificate[_-]?key",
    re.IGNORECASE,
)
_URL_WITH_SECRETS = re.compile(r"^(https?://[^/?#]*@|(https?://|/)[^?#]*\?[^#]*=)", re.IGNORECASE)
SCRUB_MIN_CHARS = 4  # shorter clear secrets are not searched for in error texts (they would match anywhere)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def is_secret_at(path: tuple[str, ...]) -> bool:
    """Is the value at `path` (keys from the config's top) a secret, whatever it holds?"""
    key = path[-1]
    if is_secret_key(key):
        return True
    if len(path) >= 2 and path[-2].lower() == "headers" and key.lower() not in PUBLIC_HEADERS:
        return True
    return len(path) == 2 and path[0] == "config" and key not in PUBLIC_TAP_KEYS  # a command source's tap config


def carries_secrets(value: str) -> bool:
    """A URL (or a path) with user-info or a query: sealed whole, since either may hold a credential."""
    return value.startswith(SEALED_PREFIX) or bool(_URL_WITH_SECRETS.match(value))


def map_secrets(config: Any, change: Callable[[Any], Any], *, strings_only: bool = True) -> Any:
    """`config` with `change` applied to every secret value (every string; every scalar without `strings_only`)."""
    return _walk(config, change, (), secret=False, strings_only=strings_only)


def _walk(value: Any, change: Callable[[Any], Any], path: tuple[str, ...], *, secret: bool, strings_only: bool) -> Any:
    if isinstance(value, dict):
        return {
            k: _walk(
                v, change, (*path, str(k)), secret=secret or is_secret_at((*path, str(k))), strings_only=strings_only
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, change, path, secret=secret, strings_only=strings_only) for item in value]
    if isinstance(value, str) and (secret or carries_secrets(value)):
        return change(value)
    if secret and not strings_only and value is not None:
        return change(value)
    return value


def redact(config: Any) -> Any:
    """Every secret value replaced by the marker, for answers."""
    return map_secrets(config, lambda _: REDACTED, strings_only=False)


def keep_secrets(new: Any, stored: Any) -> Any:
    """On a PUT, a redaction marker sent back means "keep what is stored", so GET-edit-PUT loses no secret."""
    if new == REDACTED:
        return stored
    if isinstance(new, dict) and isinstance(stored, dict):
        return {k: keep_secrets(v, stored.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(stored, list) and len(new) == len(stored):
        return [keep_secrets(n, s) for n, s in zip(new, stored, strict=True)]
    return new


def kept_fields(new: Any, path: tuple[str, ...] = ()) -> list[str]:
    """The dotted paths where `new` sends a redaction marker back."""
    if new == REDACTED:
        return [".".join(path)]
    if isinstance(new, dict):
        return [field for k, v in new.items() for field in kept_fields(v, (*path, str(k)))]
    if isinstance(new, list):
        return [field for item in new for field in kept_fields(item, path)]
    return []


def destination_of(kind: str, config: Mapping[str, Any]) -> Any:
    """Where a connection's secrets are sent: the URL's origin, the MongoDB hosts, or the tap."""
    if kind == "http":
        try:
            parts = urlsplit(str(config.get("baseUrl", "")))
            return (parts.scheme.lower(), parts.hostname, parts.port)
        except ValueError:
            return None
    if kind == "mongodb":
        try:
            return sorted(parse_tenant_uri(str(config.get("uri", ""))).nodes)
        except UriRefused:
            return None
    return config.get("tap"), config.get("command")


def check_kept_secrets(kind: str, new: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
    """A PUT that keeps a stored secret (sends `********` back) while changing where secrets go is a 422:
    the stored secret would be sent to a host its owner never gave it to."""
    kept = kept_fields(dict(new))
    if kept and destination_of(kind, keep_secrets(dict(new), dict(stored))) != destination_of(kind, stored):
        raise ValidationFailed(
            f"config.{kept[0]}",
            "the connection now goes elsewhere: give this secret again (a kept ******** is only sent where it was)",
        )


def secret_values(config: Any) -> list[str]:
    """The clear secrets of an opened config, longest first: what an error text must never echo."""
    found: list[str] = []
    map_secrets(config, found.append)
    for value in list(found):
        if value.startswith(("http://", "https://")):
            parts = urlsplit(value)
            found += [part for part in (parts.username, parts.password, parts.query) if part]
    return sorted({v for v in found if len(v) >= SCRUB_MIN_CHARS}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with each of `secrets` (and user-info in any URL) replaced by the marker."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return re.sub(r"(https?://)[^/\s@]*@", rf"\1{REDACTED}@", text)
