"""Where tenant-configured connections may go: the egress policy and the control database's server.

A pure policy (`EgressPolicy.refusal(ip)`) decides on one address by asking "is this a public unicast
address?": `ipaddress`'s `is_global`, plus explicit refusals of what it lets through (multicast, the IPv4
forms embedded in IPv6, site-local, documentation and benchmark ranges, cloud metadata) and of the host's
own interface addresses. `SYNCJOBS_ALLOWED_NETWORKS` is the only way to admit anything else. The checks
apply it to what is actually connected to: `guarded_connector` makes aiohttp check each address before it
opens a socket to it (redirects included), and `guarded_loop_factory` refuses any `sock_connect` of a
process (PyMongo's and aiohttp's) to a refused address.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused unless allowed; the metadata addresses are named so an error can say why.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
# Named reasons for the ranges an error should explain; anything else not `is_global` is "not public".
NAMED_NETWORKS: tuple[tuple[Network, str], ...] = tuple(
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
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("fc00::/7", "private"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2001:2::/48", "benchmarking"),
        ("100::/64", "discard-only"),
        # IPv4 carried inside IPv6: each reaches (or may reach) an IPv4 address the policy never sees.
        ("::ffff:0:0/96", "IPv4-mapped IPv6"),
        ("::ffff:0:0:0/96", "IPv4-translated IPv6"),
        ("::/96", "IPv4-compatible IPv6"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("2002::/16", "6to4"),
        ("2001::/32", "Teredo"),
    )
)

_EMBEDDING = tuple(ipaddress.ip_network(cidr) for cidr in ("::ffff:0:0:0/96", "::/96", "64:ff9b::/96"))


class EgressRefused(Exception):
    """A tenant-configured connection would reach an address the policy refuses; the message names it."""

    def __init__(self, target: str, address: str, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"{target} resolves to {address} ({reason}), which the egress policy refuses")
        self.target = target
        self.address = address
        self.reason = reason


class HostUnresolved(EgressRefused):
    """A name that does not resolve at run time: nothing to connect to, which is not an egress refusal."""

    def __init__(self, host: str) -> None:
        super().__init__(host, host, "does not resolve", f"{host} does not resolve")


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a malformed one is a ValueError naming it."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def unwrap(ip: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it carries: how a socket sees it."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def embedded_ipv4(ip: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, translated, compatible, NAT64, 6to4, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address) or int(ip) <= 1:
        return None
    if ip.ipv4_mapped is not None or ip.sixtofour is not None:
        return ip.ipv4_mapped or ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in network for network in _EMBEDDING):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@functools.cache
def host_addresses() -> frozenset[IpAddress]:
    """This host's own interface addresses (Linux /proc; empty elsewhere): a tenant may not reach a
    service listening on any of them, whatever range they are in."""
    found: set[IpAddress] = set()
    try:
        previous = ""
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            if "/32 host LOCAL" in line and previous:
                found.add(ipaddress.ip_address(previous))
            previous = line.split("-- ", 1)[1].strip() if "-- " in line else ""
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(ipaddress.IPv6Address(int(line.split()[0], 16)))
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(found)


def _named(ip: IpAddress) -> str | None:
    for network, why in NAMED_NETWORKS:
        if ip.version == network.version and ip in network:
            return why
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Public unicast addresses pass; anything else only if `allowed` holds it."""

    allowed: tuple[Network, ...] = ()
    own: frozenset[IpAddress] = field(default_factory=host_addresses)

    @classmethod
    def from_strings(cls, cidrs: Iterable[str]) -> EgressPolicy:
        return cls(parse_networks(cidrs))

    def refusal(self, address: str | IpAddress) -> str | None:
        """Why `address` is refused, or None when it may be connected to."""
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]")) if isinstance(address, str) else address
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return None
        return _not_public(ip) or ("this host's own address" if ip in self.own else None)

    def check(self, target: str, address: str) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise EgressRefused(target, address, reason)


def _not_public(ip: IpAddress) -> str | None:
    """Why `ip` is not a public unicast address (an embedded IPv4 is named when it is the reason)."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    inner = embedded_ipv4(ip)
    if inner is not None:
        return _not_public(inner) or _named(ip)
    named = _named(ip)
    if named is not None:
        return named
    return None if ip.is_global else "not a public unicast address"


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
    fails at run time (`must_resolve`, `HostUnresolved`) and passes at write time (DNS may not know it yet)."""
    addresses = await resolve(host, port)
    if not addresses and must_resolve:
        raise HostUnresolved(host)
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
