"""What a tenant's connection may name: hosts the egress policy allows, never the control database, taps
the operator installed. Checked when the api writes a source, destination or webhook (a 422 naming the
field) and again when the executor runs (DNS can change: the run fails naming the refused address).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from pymongo import uri_parser
from pymongo.errors import ConfigurationError, PyMongoError
from syncjobs.shared.egress import EgressPolicy, EgressRefused, check_host, resolve, unwrap
from syncjobs.shared.errors import Forbidden, ValidationFailed
from syncjobs.shared.mongo import Document
from syncjobs.shared.settings import Settings
from syncjobs.shared.tenant_uri import TenantUri, parse_tenant_uri

ANY_DATABASE = "*"
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})


class TargetRefused(ValidationFailed):
    """A connection a tenant configured names something it may not reach; `field` says which setting."""

    code = "target_refused"


@dataclass(frozen=True)
class ControlCluster:
    """The control database's server: every (address, port) of its seeds and replica-set members, and
    the process ids their `hello` reported (which identify a server whatever address reaches it)."""

    database: str
    addresses: frozenset[tuple[str, int]] = frozenset()
    process_ids: frozenset[str] = frozenset()
    other_databases: tuple[str, ...] = ()

    def database_allowed(self, name: str) -> bool:
        folded = name.lower()
        if folded == self.database.lower() or folded in SYSTEM_DATABASES:
            return False
        return ANY_DATABASE in self.other_databases or folded in {d.lower() for d in self.other_databases}


async def _addresses(hosts: list[tuple[str, int]]) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for host, port in hosts:
        found |= {(address, port) for address in await resolve(host, port)}
    return found


def _host_port(member: str) -> tuple[str, int]:
    host, _, port = member.rpartition(":")
    return host.strip("[]"), int(port or 27017)


async def discover_control_cluster(client: Any, settings: Settings) -> ControlCluster:
    """Resolve every server the control client knows and every member its `hello` names; note their
    process ids."""
    hello: Document = await client.admin.command("hello")
    descriptions = client.topology_description.server_descriptions().values()
    seeds = [(str(sd.address[0]), int(sd.address[1] or 27017)) for sd in descriptions]
    members = [_host_port(m) for key in ("hosts", "passives", "arbiters") for m in hello.get(key, [])]
    process_ids = {
        str(sd.topology_version["processId"])
        for sd in descriptions
        if sd.topology_version and "processId" in sd.topology_version
    }
    if isinstance(hello.get("topologyVersion"), dict):
        process_ids.add(str(hello["topologyVersion"].get("processId")))
    return ControlCluster(
        database=settings.database,
        addresses=frozenset(await _addresses(seeds + members)),
        process_ids=frozenset(process_ids),
        other_databases=settings.control_cluster_databases,
    )


class ControlClusterCache:
    """The control cluster as `client` discovers it, discovered again once `max_age_seconds` old: a worker
    hands it to every executor it starts, and members can be added to a replica set while it runs."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        *,
        max_age_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._known: tuple[float, ControlCluster] | None = None

    async def get(self) -> ControlCluster:
        now = self._clock()
        if self._known is None or now - self._known[0] >= self._max_age_seconds:
            self._known = (now, await discover_control_cluster(self._client, self._settings))
        return self._known[1]


@dataclass(frozen=True)
class ConnectionRules:
    egress: EgressPolicy
    control: ControlCluster
    taps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, control: ControlCluster) -> ConnectionRules:
        return cls(EgressPolicy.from_strings(settings.allowed_networks), control, settings.taps)


async def _seeds(tenant: TenantUri, prefix: str, *, at_run_time: bool) -> list[tuple[str, int]]:
    """The servers a URI names: its hosts, or for mongodb+srv those its SRV record names now."""
    if not tenant.srv:
        return tenant.nodes
    try:
        return list((await asyncio.to_thread(uri_parser.parse_uri, tenant.uri()))["nodelist"])
    except ConfigurationError as exc:
        if not at_run_time:
            return []  # its SRV record may not exist yet; the run checks again
        raise TargetRefused(f"{prefix}uri", f"not a usable MongoDB URI ({exc})") from None
    except (ValueError, PyMongoError) as exc:
        raise TargetRefused(f"{prefix}uri", f"not a usable MongoDB URI ({exc})") from None


async def check_mongodb(
    rules: ConnectionRules, uri: str, database: str, *, prefix: str = "config.", at_run_time: bool
) -> TenantUri:
    """Refuse a MongoDB source or destination whose URI goes beyond the allowlist (`shared.tenant_uri`),
    reaches a refused address or the control database; returns the URI as parsed, to be rebuilt."""
    tenant = parse_tenant_uri(uri, field=f"{prefix}uri")
    for host, port in await _seeds(tenant, prefix, at_run_time=at_run_time):
        try:
            addresses = await check_host(rules.egress, host, port, target=f"{host}:{port}", must_resolve=at_run_time)
        except EgressRefused as exc:
            raise TargetRefused(f"{prefix}uri", str(exc)) from None
        if any((str(unwrap(ip_address(address))), port) in rules.control.addresses for address in addresses):
            refuse_control(rules.control, database, prefix, f"{host}:{port}")
    return tenant


def refuse_control(control: ControlCluster, database: str, prefix: str, where: str) -> None:
    """On the control database's server: only explicitly allowed other databases are reachable."""
    if control.database_allowed(database):
        return
    if control.other_databases:
        raise TargetRefused(f"{prefix}database", f"{database!r} on the control database's server is not allowed")
    raise TargetRefused(f"{prefix}uri", f"{where} is the control database's server, which tenants may not use")


async def check_url(rules: ConnectionRules, url: str, *, field_name: str, at_run_time: bool) -> None:
    """Refuse an http(s) URL whose host resolves to a refused address; headers may not be smuggled in it."""
    if any(ch in url for ch in "\r\n\t\x00 "):
        raise TargetRefused(field_name, "a URL may not contain whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(field_name, "must be an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(field_name, "the URL's port is not a number") from None
    try:
        await check_host(rules.egress, parts.hostname, port, target=parts.hostname, must_resolve=at_run_time)
    except EgressRefused as exc:
        raise TargetRefused(field_name, str(exc)) from None


def tap_argv(rules: ConnectionRules, config: Mapping[str, Any], *, prefix: str = "config.") -> tuple[str, ...]:
    """The argv of the operator-installed tap a command source names."""
    name = config.get("tap")
    if not isinstance(name, str) or name not in rules.taps:
        known = ", ".join(sorted(rules.taps)) or "none are configured (SYNCJOBS_TAPS)"
        raise TargetRefused(f"{prefix}tap", f"unknown tap {name!r}; installed taps: {known}")
    return rules.taps[name]


def check_command(rules: ConnectionRules, config: Mapping[str, Any], *, is_admin: bool) -> None:
    """A command source names an installed tap; a raw argv is an admin's decision alone."""
    if "command" in config:
        if not is_admin:
            raise Forbidden(
                "only an admin token may give a command source a raw argv; name an installed tap instead",
                [{"field": "config.command", "message": "admin only"}],
            )
        return
    tap_argv(rules, config)
