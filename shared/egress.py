"""Where tenant-configured connections may go: the egress policy and the control database's server.

A pure policy (`EgressPolicy.refusal(ip)`) decides on one address: loopback, link-local, private, CGNAT,
unspecified, multicast and the cloud metadata addresses are refused unless `SYNCJOBS_ALLOWED_NETWORKS`
allows them. The checks apply it to what is actually connected to: `guarded_connector` makes aiohttp check
each address before it opens a socket to it (redirects included), and `guarded_loop_factory` refuses any
`sock_connect` of a process (PyMongo's and aiohttp's) to a refused address. `ControlServer`
answers "is this host:port the control database's server" after resolution.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused unless allowed; the metadata addresses are named so an error can say why.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
REFUSED_NETWORKS: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fc00::/7", "private"),
        ("ff00::/8", "multicast"),
        ("64:ff9b::/96", "NAT64"),
    )
)


class EgressRefused(Exception):
    """A tenant-configured connection would reach an address the policy refuses; the message names it."""

    def __init__(self, target: str, address: str, reason: str) -> None:
        super().__init__(f"{target} resolves to {address} ({reason}), which the egress policy refuses")
        self.target = target
        self.address = address
        self.reason = reason


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a malformed one is a ValueError naming it."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def unwrap(ip: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address it carries."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class EgressPolicy:
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_strings(cls, cidrs: Iterable[str]) -> EgressPolicy:
        return cls(parse_networks(cidrs))

    def refusal(self, address: str | IpAddress) -> str | None:
        """Why `address` is refused, or None when it may be connected to."""
        ip = unwrap(ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address)
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return None
        if ip in METADATA_ADDRESSES:
            return "cloud metadata"
        for network, why in REFUSED_NETWORKS:
            if ip.version == network.version and ip in network:
                return why
        return None

    def check(self, target: str, address: str) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise EgressRefused(target, address, reason)


def literal_ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now (empty when it does not resolve)."""
    if (ip := literal_ip(host)) is not None:
        return [str(ip)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


async def check_host(policy: EgressPolicy, host: str, port: int, *, target: str, must_resolve: bool) -> list[str]:
    """Refuse `host` if any of its addresses is refused; returns the addresses. A name that does not resolve
    is refused at run time (`must_resolve`) and let through at write time (DNS may not know it yet)."""
    addresses = await resolve(host, port)
    if not addresses and must_resolve:
        raise EgressRefused(target, host, "does not resolve")
    for address in addresses:
        policy.check(target, address)
    return addresses


def guarded_connector(policy: EgressPolicy) -> aiohttp.TCPConnector:
    """An aiohttp connector that checks each address it is about to connect to (resolved names, IP
    literals and every redirect alike, since aiohttp creates every socket through this factory)."""

    def socket_factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        policy.check(f"{address[0]}:{address[1]}", str(address[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    return aiohttp.TCPConnector(socket_factory=socket_factory)


@dataclass
class ConnectGuard:
    """Refuses `sock_connect` to an address the policy refuses, and asks `fence` (the executor's control
    fence) about every other: nothing is exempt, the executor process holds no control client."""

    policy: EgressPolicy
    fence: Callable[[str, int], Awaitable[None]] | None = None
    refused: list[EgressRefused] = field(default_factory=list)

    async def check(self, address: Any) -> None:
        if not isinstance(address, tuple) or len(address) < 2:
            return  # a unix socket
        ip, port = str(address[0]), int(address[1])
        reason = self.policy.refusal(ip)
        if reason is not None:
            refused = EgressRefused(f"{ip}:{port}", ip, reason)
            self.refused.append(refused)
            raise ConnectionRefusedError(errno.ECONNREFUSED, str(refused))
        if self.fence is not None:
            try:
                await self.fence(str(unwrap(ipaddress.ip_address(ip.split("%", 1)[0]))), port)
            except Exception as exc:  # the fence's refusal, as a refused connect to the driver
                raise ConnectionRefusedError(errno.ECONNREFUSED, str(exc)) from exc


def guarded_loop_factory(guard: ConnectGuard) -> Any:
    """An event loop factory whose loops check every outgoing TCP connection against `guard`."""

    class GuardedEventLoop(asyncio.SelectorEventLoop):
        async def sock_connect(self, sock: socket.socket, address: Any) -> None:
            await guard.check(address)
            await super().sock_connect(sock, address)

    return GuardedEventLoop
