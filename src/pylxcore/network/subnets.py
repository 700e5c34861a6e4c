"""Choosing subnets and addresses. Pure: what the host uses is passed in.

A network's subnet must collide with nothing the host routes or has an
address in (its LAN, a VPN, another engine's bridges), or the containers'
traffic would go to the wrong place. Candidates are the /24s of
10.89.0.0/16 (as podman's), then of 172.29.0.0/16.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from pylxcore.errors import Conflict, SpecError

IPv4Network = ipaddress.IPv4Network

CANDIDATE_POOLS = ("10.89.0.0/16", "172.29.0.0/16")


def parse_subnet(value: object, key: str = "subnet") -> IPv4Network:
    """An IPv4 subnet given as "10.1.2.0/24": room for a gateway and at least
    one container (a /29 or larger). Raises SpecError."""
    try:
        net = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
    except ValueError:
        net = None
    if not isinstance(net, IPv4Network) or net.prefixlen > 29 or net.prefixlen < 8:
        raise SpecError(f"expected an IPv4 subnet from /8 to /29 like '10.1.2.0/24', got {value!r}", key=key)
    return net


def overlapping(net: IPv4Network, used: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first of ``used`` that overlaps ``net``, else None."""
    for u in used:
        if net.overlaps(u):
            return u
    return None


def pick(used: Iterable[IPv4Network]) -> IPv4Network:
    """A free /24 from the candidate pools. Raises Conflict when none is left."""
    used = list(used)
    for pool in CANDIDATE_POOLS:
        for net in ipaddress.IPv4Network(pool).subnets(new_prefix=24):
            if overlapping(net, used) is None:
                return net
    raise Conflict(
        f"no free subnet left in {', '.join(CANDIDATE_POOLS)}: give one with subnet=", name="subnet"
    )


def check_free(net: IPv4Network, used: Iterable[IPv4Network]) -> None:
    """Raises Conflict when ``net`` overlaps something in ``used``."""
    clash = overlapping(net, used)
    if clash is not None:
        raise Conflict(f"subnet {net} overlaps {clash}, which is in use on this host", name=str(net))


def gateway(net: IPv4Network) -> str:
    """The bridge's own address in ``net``: its first host address."""
    return str(net.network_address + 1)


def free_address(net: IPv4Network, taken: Iterable[str]) -> str:
    """The lowest address of ``net`` that is not the gateway or ``taken``.
    Raises Conflict when the subnet is full."""
    skip = set(taken) | {gateway(net)}
    for host in net.hosts():
        if str(host) not in skip:
            return str(host)
    raise Conflict(f"network subnet {net} has no free address left", name=str(net))


def chosen_address(net: IPv4Network, value: object, taken: Iterable[str], key: str = "ip") -> str:
    """``value``, an address asked for in ``net``: one of its hosts, not its
    gateway. Raises SpecError (not an address of ``net``), Conflict (taken)."""
    try:
        ip = ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        ip = None
    if ip is None or ip not in net or ip in (net.network_address, net.broadcast_address):
        example = gateway(net)[:-1] + "9"
        raise SpecError(f"expected an address of subnet {net} like {example}, got {value!r}", key=key)
    if str(ip) == gateway(net):
        raise Conflict(f"address {ip} is the gateway of subnet {net}", name=str(ip))
    if str(ip) in set(taken):
        raise Conflict(f"address {ip} is already taken on subnet {net}", name=str(ip))
    return str(ip)
