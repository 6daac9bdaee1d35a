"""The executor's side of tenancy: a run's source and destination are checked again before any data moves.

The api checked them when they were written; DNS may have changed since, a replica set may have grown a
member, and a raw-argv command may predate the rule that only an admin may save one. So the run re-checks
the names (`shared.connection_rules`), and after connecting checks every server the MongoDB client
discovered: its addresses against the egress policy and the control server's, and its process id (from
`hello`) against the control servers' own, which catches any alias of the control server. The executor
holds no control client, so nothing in it is exempt: `ControlFence` judges every server again at each
socket connect, server selection and hello, members found later included.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pymongo import monitoring
from pymongo.errors import PyMongoError
from pymongo.server_description import ServerDescription
from syncjobs.shared.connection_rules import (
    ConnectionRules,
    TargetRefused,
    check_mongodb,
    check_url,
    refuse_control,
    tap_argv,
)
from syncjobs.shared.egress import EgressRefused, literal_ip, resolve, unwrap
from syncjobs.shared.mongo import Document
from syncjobs.shared.tenant_uri import TenantUri, check_pems

Roles = list[tuple[str, str]]  # (database, setting prefix) a client serves in the run
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
    file options the driver ever gets, naming files the executor wrote). A file is named by its content:
    an executor host's next run of the same config gets the same URI, so it reuses its kept client."""
    files = {}
    for name, pem in check_pems(config, prefix=prefix).items():
        path = _pem_directory() / f"{name}-{hashlib.sha256(pem.encode()).hexdigest()[:32]}.pem"
        if not path.exists():
            path.write_text(pem)
            path.chmod(0o600)
        files["tlsCAFile" if name == "tlsCAPem" else "tlsCertificateKeyFile"] = str(path)
    return tenant.uri(files)


@functools.cache
def _pem_directory() -> Path:
    """This process's own directory of PEM files (0700, removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix="syncjobs-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    return directory


def remove_pem_files() -> None:
    """Remove this process's PEM files now: a forked executor ends with `os._exit`, which runs no atexit."""
    if _pem_directory.cache_info().currsize:
        shutil.rmtree(_pem_directory(), ignore_errors=True)
        _pem_directory.cache_clear()


def canonical(addresses: frozenset[str]) -> set[str]:
    """Addresses as the connect guard and the control cluster name them: `::ffff:a.b.c.d` is `a.b.c.d`."""
    found = set()
    for address in addresses:
        ip = literal_ip(address)
        found.add(str(unwrap(ip)) if ip is not None else address)
    return found


async def check_connected(
    fence: ControlFence, client: Any, database: str, prefix: str, *, reached: bool = False
) -> None:
    """Connect and judge every server the client discovered, before anything is read or written. A server
    that cannot be reached or judged fails the run: nothing passes unchecked because it did not answer.
    `reached`: the client answered this check's ping already in this run (judged for another role)."""
    try:
        if not reached:
            await client.admin.command("ping")
    except PyMongoError as exc:
        raise TargetRefused(f"{prefix}uri", f"cannot reach the server to check it: {exc}") from None
    for description in client.topology_description.server_descriptions().values():
        await fence.judge_server(description, database, prefix)


class ControlFence:
    """Refuses the control cluster to every tenant client of the run, whatever address or member the driver
    finds: at every socket connect (`check_socket`, from the event loop's guard), at every server selection
    (`selector`, a custom server selector: replica sets and sharded clusters, before any command is sent)
    and at every hello a monitor reads (`Listener`). A refusal anywhere trips the fence, which fails the
    run at once (`tripped`)."""

    def __init__(self, rules: ConnectionRules) -> None:
        self._rules = rules
        self._clients: list[tuple[Any, Roles]] = []
        self._resolved: dict[tuple[str, int], frozenset[str]] = {}
        self.refusal: TargetRefused | None = None
        self.tripped = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def client_options(self, roles: Roles) -> dict[str, Any]:
        """The options a tenant client is created with: this fence's selector and listener, judging for
        each of its `roles` ((database, setting prefix) pairs, added to as the run uses the client)."""
        return {"server_selector": self.selector(roles), "event_listeners": [self.Listener(self, roles)]}

    def watch(self, client: Any, roles: Roles) -> None:
        self._clients.append((client, roles))

    def unwatch(self, client: Any) -> None:
        self._clients = [(watched, roles) for watched, roles in self._clients if watched is not client]

    def trip(self, refusal: TargetRefused) -> TargetRefused:
        if self.refusal is None:
            self.refusal = refusal
            self._loop.call_soon_threadsafe(self.tripped.set)
        return refusal

    def is_control(self, description: ServerDescription, addresses: frozenset[str] | None = None) -> bool:
        control = self._rules.control
        version = description.topology_version or {}
        if "processId" in version and str(version["processId"]) in control.process_ids:
            return True
        port = int(description.address[1] or 27017)
        known = addresses if addresses is not None else self._addresses_now(description.address)
        return any((address, port) in control.addresses for address in canonical(known))

    def refuse(self, description: ServerDescription, roles: Roles) -> None:
        host, port = description.address
        try:
            for database, prefix in roles:
                refuse_control(self._rules.control, database, prefix, f"{host}:{port}")
        except TargetRefused as refused:
            raise self.trip(refused) from None

    async def judge_server(self, description: ServerDescription, database: str, prefix: str) -> None:
        host, port = description.address
        addresses = await self._resolve(host, int(port or 27017))  # none: never connected, or judged then
        for address in addresses:
            try:
                self._rules.egress.check(f"{host}:{port}", address)
            except EgressRefused as exc:
                raise self.trip(TargetRefused(f"{prefix}uri", str(exc))) from None
        if self.is_control(description, addresses):
            self.refuse(description, [(database, prefix)])

    def selector(self, roles: Roles) -> Callable[[list[ServerDescription]], list[ServerDescription]]:
        def select(descriptions: list[ServerDescription]) -> list[ServerDescription]:
            if self.refusal is not None:
                raise self.refusal
            for description in descriptions:
                if self.is_control(description):
                    self.refuse(description, roles)
            return descriptions

        return select

    async def check_socket(self, ip: str, port: int) -> None:
        """Before a socket to (ip, port) opens: refuse it when it is a control server's, or a server whose
        hello named a control process, for a client that may not use the control server's databases."""
        if self.refusal is not None:
            raise self.refusal
        claimed = False
        for client, roles in self._clients:
            for description in client.topology_description.server_descriptions().values():
                address = description.address
                resolved = canonical(await self._resolve(str(address[0]), int(address[1] or 27017)))
                if ip not in resolved or int(address[1] or 27017) != port:
                    continue
                claimed = True
                if self.is_control(description):
                    self.refuse(description, roles)
        if not claimed and (ip, port) in self._rules.control.addresses:
            raise self.trip(TargetRefused("uri", f"{ip}:{port} is the control database's server"))

    def _addresses_now(self, address: tuple[str, int | None]) -> frozenset[str]:
        host, port = str(address[0]), int(address[1] or 27017)
        if (ip := literal_ip(host)) is not None:
            return frozenset({str(ip)})
        if (host, port) not in self._resolved:  # resolved on its socket's connect; rarely first seen here
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError:
                infos = []
            self._resolved[(host, port)] = frozenset(str(info[4][0]) for info in infos)
        return self._resolved[(host, port)]

    async def _resolve(self, host: str, port: int) -> frozenset[str]:
        if (host, port) not in self._resolved:
            self._resolved[(host, port)] = frozenset(await resolve(host, port))
        return self._resolved[(host, port)]

    class Listener(monitoring.ServerListener):
        """Judges each hello a monitor reads (a member that appears later, a server whose process changed)."""

        def __init__(self, fence: ControlFence, roles: Roles) -> None:
            self._fence, self._roles = fence, roles

        def opened(self, event: monitoring.ServerOpeningEvent) -> None:
            pass

        def description_changed(self, event: monitoring.ServerDescriptionChangedEvent) -> None:
            if self._fence.is_control(event.new_description):
                with contextlib.suppress(TargetRefused):
                    self._fence.refuse(event.new_description, self._roles)

        def closed(self, event: monitoring.ServerClosedEvent) -> None:
            pass
