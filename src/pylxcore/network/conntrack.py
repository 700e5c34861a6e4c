"""Forgetting the connections of removed containers: their conntrack entries.

The kernel remembers each connection to, from or through a container
(conntrack), NAT included, for minutes after its last packet. When a
container is removed its address goes back to the pool: an entry left behind
would send a client's next packets (a UDP "connection" to a published port,
say) to whichever container gets the address next, or nowhere. So releasing
an address deletes every entry that names it.

ctnetlink spoken directly over a netlink socket (the standard library's
``AF_NETLINK``): a dump of the IPv4 table, then one delete for each entry
that names one of the addresses (pylxcore.network.nfnetlink; pyroute2's
``Conntrack`` does the same with ~20 ms more a call of asyncio machinery).
Entries live in the network namespace of the caller: the host's.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Callable, Iterable

from pylxcore.errors import LXCError
from pylxcore.network.netlink import ACK, DUMP, REQUEST, attrs
from pylxcore.network.nfnetlink import Socket

_CT_GET, _CT_DELETE = (1 << 8) | 1, (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*
_ORIG, _REPLY = 1, 2  # CTA_TUPLE_ORIG, CTA_TUPLE_REPLY


def _addresses(tuple_attr: bytes) -> set[str]:
    """The source and destination addresses of a CTA_TUPLE_* payload."""
    out = set()
    for kind, payload, _ in attrs(tuple_attr):
        if kind == 1:  # CTA_TUPLE_IP
            for k, value, _ in attrs(payload):
                if k in (1, 2) and len(value) == 4:  # CTA_IP_V4_SRC, CTA_IP_V4_DST
                    out.add(socket.inet_ntoa(value))
    return out


def forget(match: Callable[[str], bool], *, dry_run: bool = False) -> int:
    """Delete every IPv4 conntrack entry of the host that names an address
    ``match`` says yes to (its original or reply direction, source or
    destination); how many (with ``dry_run``: how many there are, none
    deleted). The kernel walks its whole table for a dump: ~10 ms with
    Debian's default 262144 buckets. Raises LXCError (no permission, no netlink)."""
    try:
        nl = Socket()
    except OSError as err:
        raise LXCError(f"cannot read the host's connection tracking: {err}", operation="network") from err
    try:
        doomed = []
        for payload in nl.request(_CT_GET, REQUEST | DUMP, b""):
            orig = None
            names: set[str] = set()
            for kind, value, whole in attrs(payload):
                if kind in (_ORIG, _REPLY):
                    names |= _addresses(value)
                    if kind == _ORIG:
                        orig = whole
            if orig is not None and any(match(a) for a in names):
                doomed.append(orig)
        if dry_run:
            return len(doomed)
        deleted = 0
        for orig in doomed:
            try:
                for _ in nl.request(_CT_DELETE, REQUEST | ACK, orig):
                    pass
                deleted += 1
            except OSError as err:
                if err.errno != errno.ENOENT:  # (gone meanwhile: what we wanted)
                    raise
        return deleted
    except OSError as err:
        if err.errno == errno.ENOENT:  # (conntrack is not loaded in this namespace: nothing to forget)
            return 0
        raise LXCError(f"cannot delete connection tracking entries: {err}", operation="network") from err
    finally:
        nl.close()


def forget_addresses(addresses: Iterable[str], *, dry_run: bool = False) -> int:
    """``forget`` the entries that name one of ``addresses``. Raises LXCError."""
    wanted = set(addresses)
    return forget(wanted.__contains__, dry_run=dry_run) if wanted else 0


def forget_strays(subnets: Iterable[str], allocated: Iterable[str], *, dry_run: bool = False) -> int:
    """``forget`` the entries that name an address of one of ``subnets`` but
    not one of ``allocated`` (the gateways count as allocated): those of
    containers that are gone. Raises LXCError."""
    nets = [ipaddress.IPv4Network(s) for s in subnets]
    keep = set(allocated)
    if not nets:
        return 0

    def stray(addr: str) -> bool:
        if addr in keep:
            return False
        ip = ipaddress.IPv4Address(addr)
        return any(ip in n and ip != n.network_address + 1 for n in nets)

    return forget(stray, dry_run=dry_run)
