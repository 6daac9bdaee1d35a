"""The one way out for a tap: an HTTP proxy in the executor that applies the egress policy to every target.

A tap is another process, so the executor's own socket checks never see it. The tap is given this proxy as
`HTTP_PROXY` / `HTTPS_PROXY` (and, where the kernel allows, a network namespace where nothing else is
reachable: `executor/tap_fence.py`). `CONNECT host:port` (HTTPS) and absolute-form requests (plain HTTP)
are answered only after every address the host resolves to passed the policy, and the connection goes to
the checked address, so a DNS answer that changes in between changes nothing. A refusal is a 403 naming
the address and the reason, and is kept so the run's error can say what the tap tried.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from ipaddress import ip_address
from urllib.parse import urlsplit

from syncjobs.shared.egress import EgressPolicy, EgressRefused, HostUnresolved, check_host, unwrap

HEAD_LIMIT = 16 * 1024
PIPE_CHUNK = 64 * 1024


@dataclass
class EgressProxy:
    """Serve on a Unix socket (`unix_path`, for a tap in its own network namespace) or on loopback TCP."""

    policy: EgressPolicy
    control: frozenset[tuple[str, int]] = frozenset()  # the control database's servers: never, whatever the policy
    refused: list[str] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None

    async def start_unix(self, path: str) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=path)

    async def start_tcp(self) -> int:
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        try:
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            host, port = _target(method, target)
        except ValueError:
            await _answer(writer, 400, "not a proxy request")
            return
        try:
            addresses = await check_host(self.policy, host, port, target=host, must_resolve=True)
            if any((str(unwrap(ip_address(address))), port) in self.control for address in addresses):
                raise EgressRefused(host, addresses[0], "the control database's server")
        except HostUnresolved as exc:
            await _answer(writer, 502, str(exc))
            return
        except EgressRefused as exc:
            self.refused.append(str(exc))
            await _answer(writer, 403, str(exc))
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(addresses[0], port)
        except OSError as exc:
            await _answer(writer, 502, f"{host}:{port}: {exc.strerror or exc}")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            upstream_writer.write(head)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


def _target(method: str, target: str) -> tuple[str, int]:
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port)
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(target)
    return parts.hostname, parts.port or 80


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = reason.encode()
    writer.write(
        f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(PIPE_CHUNK):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
