"""The egress policy on single addresses: what is refused, why, and what an allowed network lets through."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from syncjobs.shared.egress import EgressPolicy, EgressRefused, HostUnresolved, check_host

REFUSED = {
    "127.0.0.1": "loopback",
    "127.9.9.9": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.31.255.255": "private",
    "192.168.0.1": "private",
    "fd12::1": "private",
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "169.254.169.254": "cloud metadata",
    "fd00:ec2::254": "cloud metadata",
    "100.64.0.1": "carrier-grade NAT",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "cloud metadata",
    "::ffff:10.0.0.1": "private",
    "::127.0.0.1": "loopback",
    "::ffff:0:127.0.0.1": "loopback",
    "2002:7f00:1::": "loopback",
    "64:ff9b::7f00:1": "loopback",
    "64:ff9b::808:808": "NAT64",
    "::8.8.8.8": "IPv4-compatible IPv6",
    "::ffff:8.8.8.8": "IPv4-mapped IPv6",
    "::ffff:0:8.8.8.8": "IPv4-translated IPv6",
    "2002:808:808::1": "6to4",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": "Teredo",
    "fec0::1": "site-local",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "2001:db8::1": "documentation",
    "198.18.0.1": "benchmarking",
    "2001:2::1": "benchmarking",
    "255.255.255.255": "reserved",
}


@pytest.mark.parametrize(("address", "reason"), REFUSED.items())
def test_internal_addresses_are_refused_by_default(address: str, reason: str) -> None:
    assert EgressPolicy().refusal(address) == reason
    with pytest.raises(EgressRefused, match=reason):
        EgressPolicy().check("target", address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1", "100.128.0.1"])
def test_public_addresses_pass(address: str) -> None:
    assert EgressPolicy().refusal(address) is None


def test_allowed_networks_let_exactly_their_addresses_through() -> None:
    policy = EgressPolicy.from_strings(["127.0.0.0/8", "10.20.0.0/16", "::1/128"])
    assert policy.refusal("127.0.0.1") is None and policy.refusal("::1") is None
    assert policy.refusal("::ffff:127.0.0.1") == "loopback"  # an embedded IPv4 is admitted only as itself
    assert EgressPolicy.from_strings(["::ffff:127.0.0.0/104"]).refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("10.20.3.4") is None
    assert policy.refusal("10.21.0.1") == "private"
    assert policy.refusal("169.254.169.254") == "cloud metadata"


def test_a_malformed_network_is_an_error() -> None:
    with pytest.raises(ValueError):
        EgressPolicy.from_strings(["10.0.0.0/33"])


def test_the_hosts_own_addresses_are_refused_even_when_public() -> None:
    policy = EgressPolicy(own=frozenset({ipaddress.ip_address("93.184.216.34")}))
    assert policy.refusal("93.184.216.34") == "this host's own address"
    assert EgressPolicy.from_strings(["93.184.216.34/32"]).refusal("93.184.216.34") is None


def test_a_name_that_does_not_resolve_says_so() -> None:
    with pytest.raises(HostUnresolved, match=r"^nowhere\.invalid does not resolve$"):
        asyncio.run(check_host(EgressPolicy(), "nowhere.invalid", 80, target="nowhere.invalid", must_resolve=True))
