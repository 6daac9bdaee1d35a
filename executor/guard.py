"""The executor's side of tenancy: a run's source and destination are checked again before any data moves.

The api checked them when they were written; DNS may have changed since, a replica set may have grown a
member, and a raw-argv command may predate the rule that only an admin may save one. So the run re-checks
the names (`shared.connection_rules`), and after connecting checks every server the MongoDB client
discovered: its addresses against the egress policy and the control server's, and its process id (from
`hello`) against the control servers' own, which catches any alias of the control server. In the executor
process every TCP connect goes through `shared.egress.ConnectGuard` as well.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymongo import monitoring
from pymongo.errors import PyMongoError
from syncjobs.shared.connection_rules import (
    ConnectionRules,
    TargetRefused,
    check_mongodb,
    check_url,
    refuse_control,
    tap_argv,
)
from syncjobs.shared.egress import ConnectGuard, EgressRefused, resolve
from syncjobs.shared.mongo import Document
from syncjobs.shared.tenant_uri import TenantUri, check_pems

SOURCE = "source.config."
DESTINATION = "destination.config."


async def runnable_source_config(rules: ConnectionRules, source: Document) -> dict[str, Any]:
    """The source config to run, after the run-time checks: a tap's name becomes the operator's argv."""
    kind, config = source.get("kind"), dict(source.get("config") or {})
    if kind == "mongodb":
        uri, database = str(config.get("uri", "")), str(config.get("database", ""))
        tenant = await check_mongodb(rules, uri, database, prefix=SOURCE, at_run_time=True)
        config["uri"] = runnable_uri(tenant, config, prefix=SOURCE)
    elif kind == "http":
        await check_url(rules, str(config.get("baseUrl", "")), field_name=f"{SOURCE}baseUrl", at_run_time=True)
    elif kind == "command":
        if "tap" in config:
            config["command"] = list(tap_argv(rules, config, prefix=SOURCE))
        elif source.get("rawCommandByAdmin") is not True:
            raise TargetRefused(
                f"{SOURCE}command", "a raw argv runs only if an admin saved this data source; name an installed tap"
            )
    return config


async def check_destination(rules: ConnectionRules, config: Mapping[str, Any]) -> str:
    """The destination's URI as the run connects to it, rebuilt from the allowlist after the checks."""
    uri, database = str(config.get("uri", "")), str(config.get("database", ""))
    tenant = await check_mongodb(rules, uri, database, prefix=DESTINATION, at_run_time=True)
    return runnable_uri(tenant, config, prefix=DESTINATION)


def runnable_uri(tenant: TenantUri, config: Mapping[str, Any], *, prefix: str) -> str:
    """The rebuilt URI, with the PEMs the config gives written to files of this process's own (the only
    file options the driver ever gets, naming files the executor wrote)."""
    files = {}
    for name, pem in check_pems(config, prefix=prefix).items():
        path = Path(tempfile.mkdtemp(prefix="syncjobs-tls-")) / f"{name}.pem"
        path.write_text(pem)
        path.chmod(0o600)
        atexit.register(shutil.rmtree, path.parent, True)
        files["tlsCAFile" if name == "tlsCAPem" else "tlsCertificateKeyFile"] = str(path)
    return tenant.uri(files)


async def check_connected(rules: ConnectionRules, client: Any, database: str, prefix: str) -> None:
    """Connect and check every server the client discovered, before anything is read or written (a client
    already connected, checked for another role, is not asked again)."""
    descriptions = client.topology_description.server_descriptions().values()
    if not any(description.is_server_type_known for description in descriptions):
        try:
            await client.admin.command("ping")
        except PyMongoError:
            return  # unreachable: the run fails on its first real operation, with the driver's own message
    for description in client.topology_description.server_descriptions().values():
        host, port = description.address
        where = f"{host}:{port}"
        version = description.topology_version or {}
        if str(version.get("processId")) in rules.control.process_ids:
            refuse_control(rules.control, database, prefix, where)
        for address in await resolve(host, port):
            try:
                rules.egress.check(where, address)
            except EgressRefused as exc:
                raise TargetRefused(f"{prefix}uri", str(exc)) from None
            if (address, port) in rules.control.addresses:
                refuse_control(rules.control, database, prefix, where)


class ControlMembers(monitoring.ServerListener):
    """Lets the executor's own control client reach every member of the control replica set through the
    connect guard: each server it opens is exempted, resolved, as it appears."""

    def __init__(self, guard: ConnectGuard) -> None:
        self._guard = guard

    def opened(self, event: monitoring.ServerOpeningEvent) -> None:
        exempt_host(self._guard, *event.server_address)

    def description_changed(self, event: monitoring.ServerDescriptionChangedEvent) -> None:
        pass

    def closed(self, event: monitoring.ServerClosedEvent) -> None:
        pass


def exempt_host(guard: ConnectGuard, host: str, port: int | None) -> None:
    port = port or 27017
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return
    guard.exempt |= {(str(info[4][0]), port) for info in infos}
